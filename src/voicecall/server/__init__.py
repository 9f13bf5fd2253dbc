"""ASGI apps: the public webhook server and the loopback control API."""
