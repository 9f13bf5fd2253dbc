"""A local Telnyx look-alike for offline tests (see simulator.py)."""
