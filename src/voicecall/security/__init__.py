"""Request limits and webhook authenticity helpers shared by every carrier."""
