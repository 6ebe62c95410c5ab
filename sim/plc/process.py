"""The heated-tank process model: pure, ``now`` passed in, no clocks, no I/O.

Temperature follows first-order dynamics::

    dT/dt = K_HEAT * heater% - (K_LOSS + K_COOL * cooling%) * (T - AMBIENT)

so the steady state is ``AMBIENT + K_HEAT * h / (K_LOSS + K_COOL * c)``: about 65 degC at
heater 40 % / cooling 20 % (time constant ~33 s), and toward ambient at the safe state
(heater 0 % / cooling 100 %, time constant ~9 s). Pressure follows temperature::

    P = 1 bar + K_PRESSURE * (T - AMBIENT)

Each sensor channel reads the true value plus its own seeded Gaussian noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

AMBIENT_C = 20.0
INITIAL_C = 25.0
K_HEAT = 0.03375  # degC/s per % heater
K_LOSS = 0.01  # 1/s natural loss toward ambient
K_COOL = 0.001  # 1/s per % cooling valve
K_PRESSURE = 0.05  # bar per degC above ambient
TEMP_NOISE_SIGMA = 0.05  # degC; the temperature group tolerates 3 degC
PRESSURE_NOISE_SIGMA = 0.0025  # bar; the pressure group tolerates 0.3 bar
MAX_STEP_S = 0.5  # integrate long gaps in sub-steps of at most this


@dataclass(frozen=True)
class TankState:
    """True process values at time ``t``."""

    t: float
    temperature: float
    pressure: float


def pressure_of(temperature: float) -> float:
    """Tank pressure (bar) at ``temperature`` (degC)."""
    return 1.0 + K_PRESSURE * (temperature - AMBIENT_C)


class TankModel:
    """A heated tank. ``step(now, heater, cooling)`` advances it; percent inputs are clamped."""

    def __init__(self, now: float, temperature: float = INITIAL_C) -> None:
        self._t = now
        self._temp = temperature

    @property
    def state(self) -> TankState:
        return TankState(self._t, self._temp, pressure_of(self._temp))

    def step(self, now: float, heater_pct: float, cooling_pct: float) -> TankState:
        """Advance to ``now``, inputs held since the last step; a past ``now`` is a no-op."""
        h = min(100.0, max(0.0, heater_pct))
        c = min(100.0, max(0.0, cooling_pct))
        remaining = now - self._t
        while remaining > 0:
            dt = min(remaining, MAX_STEP_S)
            dtemp = K_HEAT * h - (K_LOSS + K_COOL * c) * (self._temp - AMBIENT_C)
            self._temp += dtemp * dt
            remaining -= dt
        self._t = max(self._t, now)
        return self.state


class ChannelNoise:
    """Per-channel Gaussian noise, reproducible from one seed (channel order matters)."""

    def __init__(self, seed: int, channels: tuple[str, ...]) -> None:
        self._rngs = {name: random.Random(f"{seed}:{i}:{name}") for i, name in enumerate(channels)}

    def sample(self, channel: str, sigma: float) -> float:
        """One noise sample for ``channel``; KeyError for an unknown channel (a bug)."""
        if sigma <= 0:
            return 0.0
        return self._rngs[channel].gauss(0.0, sigma)
