"""sim/plc."""
