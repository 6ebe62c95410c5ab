"""sim/twin."""
