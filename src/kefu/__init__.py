"""kefu: a self-hosted customer-service chat server."""

__version__ = "0.1.0"
