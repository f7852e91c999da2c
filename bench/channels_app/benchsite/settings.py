"""Settings of the (c) baseline: what a team would build with Django Channels.

Kept to the documented defaults except where noted. Everything that differs
per run comes from the environment (set by bench/run.py).
"""

import os

SECRET_KEY = os.environ.get("BENCH_SECRET", "bench-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["daphne", "channels", "chat"]
ROOT_URLCONF = "benchsite.urls"
ASGI_APPLICATION = "benchsite.asgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DJANGO_DB", "/tmp/kefu-bench-channels.db"),
        # Not the defaults, and in (c)'s favour: kefu runs SQLite in WAL mode
        # with synchronous=NORMAL, so (c) does too, and keeps its connection
        # (the default CONN_MAX_AGE=0 reopens SQLite around every ORM call).
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        "CONN_MAX_AGE": None,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # socket_timeout=None: redis-py 8 defaults to 5 s, which breaks the
            # layer's blocking BZPOPMIN (django/channels_redis#422)
            "hosts": [
                {
                    "address": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                    "socket_timeout": None,
                }
            ],
            "prefix": os.environ.get("BENCH_REDIS_PREFIX", "asgi"),
            # The default capacity (100) is per Redis key, and all the sockets of
            # one daphne process share one key: past 100 queued messages,
            # group_send drops messages silently. Raised so that (c) loses none.
            "capacity": 100000,
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
