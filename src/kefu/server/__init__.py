"""The asyncio side: app, runtime, connections, gateway, REST."""
