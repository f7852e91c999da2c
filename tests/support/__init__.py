"""Helpers shared by the test folders: clients, server processes, real services.

* `client`: a frame-checking WebSocket client and the accounts/tokens of the tests;
* `servers`: `kefu serve` in a subprocess (`Server`) and its fixtures;
* `services`: the real PostgreSQL and Redis the cluster and store tests use;
* `proxy`: a TCP proxy that can cut a service off and bring it back.

Test folders import from here, never from each other.
"""
