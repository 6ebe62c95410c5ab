"""Test-only fault injection: make the agent's own Python hang for real, on a signal.

OFF unless ``TWINGUARD_FAULT_INJECTION=1`` is in the environment when the agent starts
(:func:`install_from_env` is a no-op otherwise, and says nothing). When on, it logs a loud
warning and installs two signal handlers on the main thread (the thread of the event loop):

==========  ===========================================================================
SIGUSR2     **GIL held**: a catastrophic regex, ``re.match(r"(a+)+$", "a" * N + "b")``,
            runs in C inside ``_sre`` without ever releasing the GIL, so no other Python
            thread runs either (the pure-Python watchdog cannot fire; the native one can).
            ``N`` from ``TWINGUARD_HANG_N``; else calibrated at install time so the hang
            lasts about ``TWINGUARD_HANG_S`` seconds (default 3.0) on this machine.
SIGUSR1     **loop blocked, GIL released**: ``time.sleep(TWINGUARD_BLOCK_S)`` (default 3.0)
            inside the handler, so the event loop makes no progress but other threads run.
            With ``TWINGUARD_BLOCK_AT=decision`` the handler only arms the block, which
            then happens at the runtime's next :func:`checkpoint`: right after a tick's
            decision and before its writes (the stall a stale write would come from).
==========  ===========================================================================

Both handlers return afterwards and the agent carries on (unless a watchdog ``_exit``\\ s
it meanwhile). Handlers are installed with :func:`signal.signal`, not the event loop's
``add_signal_handler``: the hang starts at the next bytecode boundary of the main thread,
wherever the loop happens to be (inside a tick or waiting for the next one).

A bad value in one of the variables raises :class:`ValueError` from :func:`install_from_env`
(the agent refuses to start: a test that asked for fault injection must get it exactly).
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

ENV_ENABLE = "TWINGUARD_FAULT_INJECTION"
ENV_HANG_N = "TWINGUARD_HANG_N"
ENV_HANG_S = "TWINGUARD_HANG_S"
ENV_BLOCK_S = "TWINGUARD_BLOCK_S"
ENV_BLOCK_AT = "TWINGUARD_BLOCK_AT"
BLOCK_AT = ("signal", "decision")
DEFAULT_HANG_S = 3.0
DEFAULT_BLOCK_S = 3.0
CALIBRATION_N = 18  # ~10 ms here; each extra "a" doubles the time
MAX_N = 40

_PATTERN = re.compile(r"(a+)+$")


def catastrophic_match(n: int) -> bool:
    """Run the exponential regex on ``"a" * n + "b"`` (holds the GIL throughout); False."""
    return _PATTERN.match("a" * n + "b") is not None


def hang_n_for(seconds: float, calibration_n: int = CALIBRATION_N) -> int:
    """The N that makes :func:`catastrophic_match` last about ``seconds`` on this machine.

    Times one match at ``calibration_n`` and extrapolates (the time doubles per step).
    ValueError for a non-positive or non-finite ``seconds``.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"hang duration must be a positive number of seconds, got {seconds!r}")
    runs = []
    for _ in range(3):  # the fastest of three: a cold first run or a busy core only slows
        t0 = time.perf_counter()
        catastrophic_match(calibration_n)
        runs.append(time.perf_counter() - t0)
    base = max(min(runs), 1e-6)
    steps = math.log2(seconds / base)
    return max(1, min(MAX_N, calibration_n + round(steps)))


@dataclass(frozen=True)
class FaultInjection:
    """What the installed handlers do: the regex size and the loop-blocking sleep."""

    hang_n: int
    block_s: float
    block_at: str = "signal"  # one of BLOCK_AT


_armed: dict[str, float] = {}  # "block": seconds to block at the next checkpoint()


def checkpoint() -> None:
    """The runtime's stall point between a decision and its write: blocks the loop once
    (GIL released) when SIGUSR1 armed it under ``TWINGUARD_BLOCK_AT=decision``; otherwise
    returns at once (one global read: cheap on the hot path)."""
    if not _armed:
        return
    seconds = _armed.pop("block")
    log.warning("FAULT INJECTION: blocking the loop for %.3f s between a decision and its "
                "write", seconds)
    time.sleep(seconds)
    log.warning("FAULT INJECTION: loop block over")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={text!r}: expected a positive number of seconds")
    return value


def settings_from_env(env: Mapping[str, str]) -> FaultInjection | None:
    """The fault injection asked for by ``env``, or None when it is off; ValueError if bad."""
    flag = env.get(ENV_ENABLE, "").strip()
    if flag in ("", "0"):
        return None
    if flag != "1":
        raise ValueError(f"{ENV_ENABLE}={flag!r}: expected 1 (on) or 0 / unset (off)")
    n_text = env.get(ENV_HANG_N, "").strip()
    if n_text:
        try:
            hang_n = int(n_text)
        except ValueError:
            raise ValueError(f"{ENV_HANG_N}={n_text!r}: expected an integer") from None
        if not 1 <= hang_n <= MAX_N:
            raise ValueError(f"{ENV_HANG_N}={n_text!r}: expected 1..{MAX_N}")
    else:
        hang_n = hang_n_for(_number(env, ENV_HANG_S, DEFAULT_HANG_S))
    block_at = env.get(ENV_BLOCK_AT, "").strip() or "signal"
    if block_at not in BLOCK_AT:
        raise ValueError(f"{ENV_BLOCK_AT}={block_at!r}: expected one of {', '.join(BLOCK_AT)}")
    return FaultInjection(hang_n=hang_n, block_s=_number(env, ENV_BLOCK_S, DEFAULT_BLOCK_S),
                          block_at=block_at)


def install(settings: FaultInjection) -> None:
    """Install the SIGUSR2 (GIL hang) and SIGUSR1 (blocked loop) handlers; main thread only."""

    def hang(signum: int, frame: FrameType | None) -> None:
        log.warning("FAULT INJECTION: SIGUSR2, holding the GIL (regex N=%d)", settings.hang_n)
        t0 = time.monotonic()
        catastrophic_match(settings.hang_n)
        log.warning("FAULT INJECTION: GIL hang over after %.3f s", time.monotonic() - t0)

    def block(signum: int, frame: FrameType | None) -> None:
        if settings.block_at == "decision":
            _armed["block"] = settings.block_s
            return
        log.warning("FAULT INJECTION: SIGUSR1, blocking the loop for %.3f s", settings.block_s)
        time.sleep(settings.block_s)
        log.warning("FAULT INJECTION: loop block over")

    signal.signal(signal.SIGUSR2, hang)
    signal.signal(signal.SIGUSR1, block)
    log.warning(
        "FAULT INJECTION ENABLED (%s=1): SIGUSR2 holds the GIL (N=%d), SIGUSR1 blocks the "
        "loop for %.3f s. Never run a plant like this.",
        ENV_ENABLE, settings.hang_n, settings.block_s,
    )


def install_from_env(env: Mapping[str, str] | None = None) -> FaultInjection | None:
    """Install the handlers if ``TWINGUARD_FAULT_INJECTION=1``; the settings used, or None."""
    settings = settings_from_env(os.environ if env is None else env)
    if settings is not None:
        install(settings)
    return settings
