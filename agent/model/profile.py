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


class TwinLossPolicy(enum.Enum):
    """What an output does when the twin's authority over it ends (a shed, not a hazard,
    except SAFE). Applied only on a REMOTE -> LOCAL shed: before the twin drove an output
    there is nothing to undo."""

    HOLD = "hold"  # keeps what the PLC holds now: nothing written
    LOCAL = "local"  # ramps at max_rate to the output's local_value
    RELEASE = "release"  # handed back to the PLC program: [plc_remote] at local_value
    SAFE = "safe"  # the twin's loss is a hazard: FAILSAFE (latched), the safe set


class ReturnPolicy(enum.Enum):
    """How the twin regains authority after a shed (FOUNDATION Fieldbus' normal return and
    no return)."""

    AUTO = "auto"  # after return_holdoff_s of continuous healthy heartbeats
    MANUAL = "manual"  # only after an operator's ack (button or `twinguard ack`)


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
    on_twin_loss: TwinLossPolicy = TwinLossPolicy.HOLD
    local_value: float | None = None  # required for TwinLossPolicy.LOCAL, within limits

    @property
    def words(self) -> int:
        return self.dtype.words

    def same_raw(self, a: float, b: float) -> bool:
        """``a`` and ``b`` (engineering units) land on the same raw step of the register:
        writing one where the PLC holds the other changes nothing (float32: only if equal)."""
        if self.dtype is DataType.FLOAT32 or self.scale == 0:
            return a == b
        return round((a - self.offset) / self.scale) == round((b - self.offset) / self.scale)


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


PLC_REMOTE = "plc_remote"
"""The name under which ``[plc_remote]``'s flag is written, read and confirmed like an
output (no ``[[outputs]]`` may use it while the profile has a ``[plc_remote]``)."""


@dataclass(frozen=True)
class PlcRemote:
    """The PLC program's "remote enabled" flag (``[plc_remote]``, optional).

    At ``remote_value`` the PLC program takes its outputs from the registers the agent
    writes; at ``local_value`` it runs its own local control (bumpless, from what the
    outputs hold). The agent writes ``remote_value`` when it takes authority and with every
    safe set (a hazard is acted on whatever mode the PLC is in), and ``local_value`` when it
    hands the outputs back (a shed of a ``release`` output, the end of a hazard).
    """

    table: Table  # COIL or HOLDING
    address: int
    unit_id: int
    remote_value: int
    local_value: int

    @property
    def output(self) -> Output:
        """The flag as a writable point (name :data:`PLC_REMOTE`), so that it is encoded,
        acknowledged and read back exactly like an output; its safe value is remote."""
        bit = self.table is Table.COIL
        return Output(
            name=PLC_REMOTE, table=self.table, address=self.address,
            dtype=DataType.BOOL if bit else DataType.UINT16, word_order=WordOrder.BIG,
            scale=1.0, offset=0.0, unit="", minimum=0.0, maximum=1.0 if bit else 65535.0,
            max_rate=None, safe_value=float(self.remote_value),
            failsafe=FailsafePolicy.SAFE_VALUE, unit_id=self.unit_id,
        )


@dataclass(frozen=True)
class AuthoritySettings:
    """``[authority]``: how the twin regains authority after a shed."""

    return_policy: ReturnPolicy = ReturnPolicy.AUTO
    return_holdoff_s: float = 10.0


class Scheduling(enum.Enum):
    """``[realtime] scheduling``: how the loop and the native watchdog thread are scheduled."""

    FIFO = "fifo"  # SCHED_FIFO at loop_priority / watchdog_priority (asked at start)
    OTHER = "other"  # the kernel's normal time sharing: nothing is asked


RT_PRIORITY_MAX = 49
"""The highest ``[realtime]`` priority: PREEMPT_RT kernels run their interrupt threads at 50,
and the NIC's and UART's ones carry the agent's own Modbus frames."""


MEMLOCK_LIMIT_MIB = 256
"""The ``RLIMIT_MEMLOCK`` the generated systemd unit grants for ``lock_memory`` (its reasons:
``agent.config.systemd_unit``); the agent locks about 40 MiB."""


@dataclass(frozen=True)
class RealtimeSettings:
    """``[realtime]``: real-time scheduling and locked memory (``agent.io.realtime``).

    ``watchdog_priority > loop_priority``: the native watchdog thread must preempt a loop
    thread that spins with the GIL held. Both in 1..:data:`RT_PRIORITY_MAX`.
    """

    scheduling: Scheduling = Scheduling.FIFO
    loop_priority: int = 40
    watchdog_priority: int = 45
    lock_memory: bool = True


class CommFallback(enum.Enum):
    """What the simulated PLC does when its communication watchdog expires."""

    LOCAL = "local"  # its program takes over (remote disabled)
    SAFE = "safe"  # the outputs' safe values (a dumb I/O coupler)


@dataclass(frozen=True)
class SimProgram:
    """``[sim.program]``: the simulated PLC's own program, a PI temperature loop on the
    heater around a local setpoint (the operator HMI's), cooling at a fixed value."""

    setpoint: float  # degC, the local setpoint at start
    kp: float  # heater % per degC of error
    ki: float  # heater % per degC-second
    cooling: float  # cooling output under local control, in its engineering units
    comm_fallback: CommFallback


@dataclass(frozen=True)
class SimBinding:
    """Which signals and outputs the simulated tank plant drives (``[sim]``, optional)."""

    temperature: tuple[str, ...]
    pressure: tuple[str, ...]
    heater: str
    cooling: str
    program: SimProgram | None = None  # None: a dumb I/O coupler (safe values on comm loss)


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
    plc_remote: PlcRemote | None = None
    authority: AuthoritySettings = AuthoritySettings()
    realtime: RealtimeSettings = RealtimeSettings()

    @property
    def writes(self) -> tuple[Output, ...]:
        """Every point the agent may ever write: the outputs, then [plc_remote]'s flag."""
        flag = () if self.plc_remote is None else (self.plc_remote.output,)
        return self.outputs + flag

    @property
    def twin_loss_is_hazard(self) -> bool:
        """Some output's ``on_twin_loss`` is ``safe``: in active mode the twin's
        supervision is a protection layer, and its loss drives FAILSAFE."""
        return any(o.on_twin_loss is TwinLossPolicy.SAFE for o in self.outputs)

    def signal(self, name: str) -> Signal:
        """The signal called ``name``; KeyError if the profile has none."""
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def output(self, name: str) -> Output:
        """The writable point called ``name`` (an output, or :data:`PLC_REMOTE`); KeyError
        if the profile has none."""
        for o in self.writes:
            if o.name == name:
                return o
        raise KeyError(name)

    def group(self, name: str) -> Group:
        """The group called ``name``; KeyError if the profile has none."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)
