"""twinguard: a fail-safe control agent that runs beside a PLC."""

__version__ = "0.1.0"
