"""agent/twin."""
