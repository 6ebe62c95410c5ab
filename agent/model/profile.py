"""The hardware profile as frozen data: what one board and one PLC look like.

A profile is parsed once (``agent.config.profile.parse``) into these classes and never changes
afterwards; every other part of the agent reads it. Engineering values are always
``raw * scale + offset``; limits, ranges, rates and safe values are in engineering units.

Addresses are zero-based protocol addresses (what goes on the wire), not the 4xxxx/3xxxx
"register numbers" some PLC manuals print.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Table(enum.Enum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def writable(self) -> bool:
        """Only coils and holding registers can be written by a Modbus master."""
        return self in (Table.COIL, Table.HOLDING)

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(enum.Enum):
    """How a value is laid out in one or more 16-bit registers (or one bit)."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def words(self) -> int:
        """Number of registers (or bits, for BOOL) the value occupies."""
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1


class WordOrder(enum.Enum):
    """Order of the two registers of a 32-bit value (bytes within a register are big-endian)."""

    BIG = "big"  # high word first (Modicon convention, "ABCD")
    LITTLE = "little"  # low word first ("CDAB", common on Schneider/some couplers)


class Parity(enum.Enum):
    NONE = "N"
    EVEN = "E"
    ODD = "O"


class SafeDirection(enum.Enum):
    """Which side of a measurement is the conservative one to believe when channels disagree."""

    HIGH = "high"
    LOW = "low"


class FailsafePolicy(enum.Enum):
    """What an output does in the safe state."""

    SAFE_VALUE = "safe_value"  # written at once
    HOLD_LAST = "hold_last"  # keeps the last value written by the agent (safe value if none)
    RAMP = "ramp"  # moves to the safe value at the output's max rate


class TripCondition(enum.Enum):
    ABOVE = "above"  # voted value > limit
    BELOW = "below"  # voted value < limit
    BAD = "bad"  # group quality BAD


class RecoveryPolicy(enum.Enum):
    MANUAL = "manual"  # leave FAILSAFE only on an explicit ack (button, `twinguard ack`)
    AUTO = "auto"  # leave FAILSAFE after `holdoff_s` of continuous health


@dataclass(frozen=True)
class Board:
    """The Pi-side hardware. GPIO pins are BCM numbers; paths are device or sysfs files."""

    name: str
    led_green: int | None
    led_amber: int | None
    led_red: int | None
    reset_button: int | None
    reset_hold_s: float
    serial_device: str | None
    hw_watchdog: str | None  # e.g. /dev/watchdog; fed by the native watchdog while healthy
    fault_led: str | None  # sysfs file the native watchdog writes on a hang
    fault_led_value: str  # bytes written to fault_led on a hang (e.g. "1")


@dataclass(frozen=True)
class TcpLink:
    host: str
    port: int


@dataclass(frozen=True)
class RtuLink:
    device: str
    baudrate: int
    parity: Parity
    stopbits: int
    bytesize: int


@dataclass(frozen=True)
class PlcConnection:
    link: TcpLink | RtuLink
    unit_id: int
    timeout_s: float  # per request
    retries: int  # extra attempts per request before the reading is BAD
    reconnect_min_s: float  # first reconnect delay; doubles up to reconnect_max_s, with jitter
    reconnect_max_s: float


@dataclass(frozen=True)
class Signal:
    """One measured channel in the PLC's register map."""

    name: str
    table: Table
    address: int
    dtype: DataType
    word_order: WordOrder
    scale: float
    offset: float
    unit: str
    low: float  # plausible range, engineering units; outside it the channel is excluded
    high: float
    unit_id: int

    @property
    def words(self) -> int:
        return self.dtype.words


@dataclass(frozen=True)
class Voting:
    """M-out-of-N: at least ``m`` of the ``n`` channels must agree for a GOOD vote."""

    m: int
    n: int

    def __str__(self) -> str:
        return f"{self.m}oo{self.n}"


@dataclass(frozen=True)
class Group:
    """Redundant channels measuring one quantity, voted into one value."""

    name: str
    signals: tuple[str, ...]
    voting: Voting
    min_healthy: int  # below this many healthy channels the group is BAD
    safe_direction: SafeDirection
    discrepancy: float  # channels further apart than this disagree (engineering units)
    max_age_s: float  # a reading older than this is stale
    max_rate: float | None  # units per second; faster changes exclude the channel
    stuck_after_s: float | None  # frozen this long while peers move: stuck
    required: bool  # a BAD vote of a required group forces the safe state


@dataclass(frozen=True)
class Output:
    """A register or coil the agent may write. Nothing else is ever written."""

    name: str
    table: Table
    address: int
    dtype: DataType
    word_order: WordOrder
    scale: float
    offset: float
    unit: str
    minimum: float
    maximum: float
    max_rate: float | None  # units per second; None = unlimited
    safe_value: float
    failsafe: FailsafePolicy
    unit_id: int

    @property
    def words(self) -> int:
        return self.dtype.words


@dataclass(frozen=True)
class Trip:
    """A local rule that forces the safe state whatever the twin says."""

    name: str
    group: str
    condition: TripCondition
    limit: float | None  # None only for TripCondition.BAD


@dataclass(frozen=True)
class PlcWatchdog:
    """The PLC's own communication watchdog (as on WAGO/Beckhoff couplers).

    The agent changes ``heartbeat_address`` (holding) every complete cycle. If it stops
    changing for the PLC's timeout, the PLC applies its fallback outputs by itself and
    latches ``fault_address`` (discrete input). The timeout configured in the PLC is read
    from ``timeout_address`` (holding, milliseconds) and must equal ``expected_timeout_ms``.
    Writing 1 to ``reset_address`` (coil), when given, clears the latch.
    """

    heartbeat_address: int
    timeout_address: int
    expected_timeout_ms: int
    fault_address: int | None
    reset_address: int | None
    unit_id: int


@dataclass(frozen=True)
class Timing:
    poll_period_s: float
    heartbeat_timeout_s: float  # twin heartbeat silent this long: LOST
    heartbeat_late_s: float  # silent this long: LATE (warning only)
    watchdog_deadline_s: float  # native watchdog fires if a complete tick is this late

    @property
    def io_budget_s(self) -> float:
        """PLC I/O time one tick may spend so that complete ticks stay within the watchdog
        deadline: deadline >= poll period + I/O + computing, with 80 % of the slack for I/O."""
        return max(0.0, self.watchdog_deadline_s - self.poll_period_s) * 0.8


@dataclass(frozen=True)
class Recovery:
    policy: RecoveryPolicy
    holdoff_s: float  # continuous health needed before leaving FAILSAFE


@dataclass(frozen=True)
class SimBinding:
    """Which signals and outputs the simulated tank plant drives (``[sim]``, optional)."""

    temperature: tuple[str, ...]
    pressure: tuple[str, ...]
    heater: str
    cooling: str


@dataclass(frozen=True)
class Profile:
    source: str  # file the profile came from (for messages)
    board: Board
    plc: PlcConnection
    signals: tuple[Signal, ...]
    groups: tuple[Group, ...]
    outputs: tuple[Output, ...]
    trips: tuple[Trip, ...]
    plc_watchdog: PlcWatchdog
    timing: Timing
    recovery: Recovery
    require_native_watchdog: bool
    sim: SimBinding | None

    def signal(self, name: str) -> Signal:
        """The signal called ``name``; KeyError if the profile has none."""
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def output(self, name: str) -> Output:
        """The output called ``name``; KeyError if the profile has none."""
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)

    def group(self, name: str) -> Group:
        """The group called ``name``; KeyError if the profile has none."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)
