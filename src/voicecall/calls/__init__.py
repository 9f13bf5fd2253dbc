"""Call model, normalized events, the pure state machine and the call service."""
