"""ASGI entry point of the (c) baseline: two WebSocket routes, as kefu has."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from chat.consumers import UserConsumer, WaiterConsumer  # noqa: E402
from django.urls import path  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                path("v1/ws/connect/user", UserConsumer.as_asgi()),
                path("v1/ws/connect/waiter", WaiterConsumer.as_asgi()),
            ]
        ),
    }
)
