"""Hardware profiles: the TOML description of one board and one PLC, parsed into frozen data.

Public API::

    load_profile(ref: str | Path | None) -> Profile               read + parse (None: sim-tank)
    parse_profile(data: Mapping[str, Any], source: str) -> Profile  the pure parser
    list_profiles() -> list[str]                                   shipped profile names
    with_connection(profile, *, tcp=None, rtu=None) -> Profile      override the PLC link

Every failure raises ``agent.errors.ProfileError`` listing all problems found.
"""

from agent.profile.load import DEFAULT_PROFILE, list_profiles, load_profile, with_connection
from agent.profile.model import (
    Board,
    DataType,
    FailsafePolicy,
    Group,
    Output,
    Parity,
    PlcConnection,
    PlcWatchdog,
    Profile,
    Recovery,
    RecoveryPolicy,
    RtuLink,
    SafeDirection,
    Signal,
    SimBinding,
    Table,
    TcpLink,
    Timing,
    Trip,
    TripCondition,
    Voting,
    WordOrder,
)
from agent.profile.parse import parse_profile

__all__ = [  # noqa: RUF022 - grouped: functions, then the model
    "DEFAULT_PROFILE", "list_profiles", "load_profile", "parse_profile", "with_connection",
    "Board", "DataType", "FailsafePolicy", "Group", "Output", "Parity", "PlcConnection",
    "PlcWatchdog", "Profile", "Recovery", "RecoveryPolicy", "RtuLink", "SafeDirection",
    "Signal", "SimBinding", "Table", "TcpLink", "Timing", "Trip", "TripCondition", "Voting",
    "WordOrder",
]
