"""The heartbeat and ack faults both simulated twins share (the TLS twin,
:class:`sim.twin.server.SimTwin`, and the MQTT twin, :class:`sim.twin.mqtt.MqttTwin`).

A mixin: the twin reads ``sending``, ``healthy``, ``delay_ms``, ``paused()``,
``ack_every`` and ``acking`` where it makes heartbeats and acks; what ``delay_ms`` means is
the twin's (the TLS twin lengthens each interval, the MQTT twin holds every publish).
"""

from __future__ import annotations

import time


class Faults:
    """Fault switches; call :meth:`init_faults` in ``__init__``."""

    sending: bool
    healthy: bool
    delay_ms: float
    ack_every: int
    acking: bool
    _pause_until: float

    def init_faults(self) -> None:
        self.sending = True
        self.healthy = True
        self.delay_ms = 0.0
        self.ack_every = 1
        self.acking = True
        self._pause_until = 0.0

    def stop_heartbeats(self) -> None:
        self.sending = False

    def resume(self) -> None:
        """Heartbeats on again (undoes stop_heartbeats and a pause in progress)."""
        self.sending = True
        self._pause_until = 0.0

    def set_delay(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("delay must be >= 0 ms")
        self.delay_ms = ms

    def pause(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("pause must be >= 0 s")
        self._pause_until = time.monotonic() + seconds

    def paused(self) -> bool:
        return time.monotonic() < self._pause_until

    def set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy

    def set_ack(self, every: int = 1, on: bool = True) -> None:
        """Ack telemetry when ``every`` records advanced the frontier; ``on=False`` never."""
        if every < 1:
            raise ValueError("ack every must be >= 1")
        self.ack_every = every
        self.acking = on
