"""agent/modbus."""
