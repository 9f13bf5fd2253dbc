"""The lowest layer: small helpers every other layer may use (the clock, ASGI types, the shape
of an inbound webhook request). It imports nothing from the rest of `voicecall`."""
