"""What agents use: the `voice_call` tool (schema and dispatcher)."""
