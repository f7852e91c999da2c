"""Settings: every one an environment variable `KEFU_<NAME>`; passed in, never global."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

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

    # -- cluster (with KEFU_BROKER_URL); see docs/cluster.md
    broker_prefix: str = "kefu:"  # Redis key prefix: one per deployment sharing a Redis
    lease_ttl: float = Field(default=5.0, gt=0)  # leader lease; failover takes about this long
    node_ttl: float = Field(default=5.0, gt=0)  # heartbeat TTL: a silent node is dropped after it
    event_stream_maxlen: int = Field(default=100_000, ge=100)  # lifecycle events kept in Redis
    log_level: str = "warning"

    def signing_secret(self) -> str:
        """KEFU_SECRET, or a key generated once and kept beside the database (mode 600)."""
        if self.secret:
            return self.secret
        path = self.secret_file()
        if path.exists():
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

    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]
