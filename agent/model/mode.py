"""The twin's control authority: shadow (advise only) or active (write within limits).

Chosen by the agent configuration (``mode``; promotion to active needs two approvers, see
``agent.config.roles``), held by the safety state machine (``agent.core.safety``), shown by
the status snapshot and the LEDs.
"""

from __future__ import annotations

import enum


class Mode(enum.Enum):
    """Control authority: SHADOW only logs what it would write; ACTIVE writes."""

    SHADOW = "shadow"
    ACTIVE = "active"
