"""Settings: every one an environment variable `KEFU_<NAME>`; passed in, never global."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # `.env` in the working directory too; the environment wins over it
    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore", env_file=".env")

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///./kefu.db"
    broker_url: str = ""
    secret: str = Field(default="", repr=False)
    node_id: int = Field(default=0, ge=0, lt=1024)

    max_users_per_waiter: int = Field(default=5, ge=1)
    idle_timeout: float = Field(default=600.0, gt=0)
    idle_grace: float = Field(default=60.0, ge=0)
    max_text_chars: int = Field(default=4096, ge=1)
    max_frame_bytes: int = Field(default=65536, ge=256)
    max_image_chars: int = 2048
    allowed_origins: str = ""
    resume_grace: float = Field(default=60.0, ge=0)
    auth_timeout: float = Field(default=10.0, gt=0)
    token_ttl: int = Field(default=86400, gt=0)

    rate_limit: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=40, ge=1)
    max_user_sockets: int = Field(default=5, ge=1)
    max_auth_failures: int = Field(default=5, ge=1)
    send_queue_size: int = Field(default=1024, ge=1)
    sqlite_synchronous: str = Field(default="NORMAL", pattern="^(NORMAL|FULL)$")
    legacy_text_field: bool = False  # also send `payload.message` beside `text` (old clients)
    retention_days: int = Field(default=0, ge=0)  # closed conversations older are purged; 0: never
    retention_interval: float = Field(default=3600.0, gt=0)  # seconds between retention's checks

    # -- exposure to the internet (SECURITY.md)
    trusted_proxies: str = ""  # IPs / CIDR networks whose X-Forwarded-For is believed
    metrics_allow: str = ""  # IPs / CIDR networks that may GET /metrics (empty: anyone)
    max_header_bytes: int = Field(default=16384, ge=1024)  # request line + headers, in total
    max_headers: int = Field(default=100, ge=8)
    handshake_timeout: float = Field(default=10.0, gt=0)  # to send a whole request head
    max_unauthenticated: int = Field(default=4096, ge=1)  # chat sockets before `auth`, in all
    max_unauthenticated_per_address: int = Field(default=256, ge=1)  # ... and per client address
    login_max_failures: int = Field(default=10, ge=1)  # per username and per address ...
    login_window: float = Field(default=300.0, gt=0)  # ... within this many seconds
    password_workers: int = Field(default=2, ge=1)  # threads that check passwords (argon2)
    password_queue: int = Field(default=16, ge=1)  # checks waiting for them; beyond: HTTP 503
    webhook_allow_private: bool = False  # webhooks to loopback/private addresses (tests, LANs)
    webhook_retry_base: float = Field(default=10.0, gt=0)  # first retry after ~this, doubling

    # -- cluster (with KEFU_BROKER_URL); see docs/cluster.md
    broker_prefix: str = "kefu:"  # Redis key prefix: one per deployment sharing a Redis
    lease_ttl: float = Field(default=5.0, gt=0)  # leader lease; failover takes about this long
    node_ttl: float = Field(default=5.0, gt=0)  # heartbeat TTL: a silent node is dropped after it
    event_stream_maxlen: int = Field(default=100_000, ge=100)  # lifecycle events kept in Redis
    log_level: str = Field(default="warning", pattern="^(?i:debug|info|warning|error|critical)$")
    log_format: str = Field(default="text", pattern="^(text|json)$")  # json: one object per line
    transport: str = Field(default="auto", pattern="^(auto|fast|plain)$")  # chat sockets

    def signing_secret(self) -> str:
        """KEFU_SECRET, or a key generated once and kept beside the database (mode 600)."""
        if self.secret:
            return self.secret
        path = self.secret_file()
        if path.exists():
            _make_private(path)
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key

    def secret_file(self) -> Path:
        url = self.database_url
        if url.startswith("sqlite:///"):
            db = Path(url.removeprefix("sqlite:///"))
            return db.with_name(db.name + ".secret")
        return Path("kefu.secret")

    @field_validator("trusted_proxies", "metrics_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        from kefu.server.proxies import parse

        parse(value)  # a typo must stop the server, not silently trust nobody
        return value

    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]


def _make_private(path: Path) -> None:
    """An existing key file others may read is made 0600 (it signs every token)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o600)
        logging.getLogger("kefu.settings").warning(
            "%s was readable by others (mode %o); made it 0600", path, mode
        )
