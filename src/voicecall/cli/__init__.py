"""The `voicecall` command line."""
