"""Hardware profiles: the TOML description of one board and one PLC, parsed into frozen data."""

from agent.profile.model import *  # noqa: F403
