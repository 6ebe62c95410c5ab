"""sim/bench."""
