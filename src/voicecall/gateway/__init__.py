"""The gateway: composition root, control API (methods, server, client) and readiness checks."""
