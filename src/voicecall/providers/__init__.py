"""Carrier adapters behind one interface (`Provider`); the rest of the system never names a carrier."""
