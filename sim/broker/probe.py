"""A blocking MQTT 5 client for tests and tools: paho-mqtt 2.x (``CallbackAPIVersion.
VERSION2``) on its own network thread, recording everything it receives.

    with Probe(broker.port, broker.pki.client_context("sim-tank-01"), "dev") as probe:
        probe.subscribe("spBv1.0/plant/NCMD/sim-tank-01")   # -> [reason code values]
        probe.publish("spBv1.0/plant/NDATA/sim-tank-01", b"x", qos=1)   # -> PUBACK code
        probe.wait_message("spBv1.0/STATE/twin", timeout_s=5)

Every wait has a deadline and raises :class:`ProbeError` saying what did not happen.
Reason codes are returned as ints (0x00 success, 0x87 Not authorized, ...). Needs the
``fleet`` extra (paho-mqtt).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

WAIT_S = 10.0


class ProbeError(RuntimeError):
    """The broker did not do what the probe waited for (in time)."""


@dataclass(frozen=True)
class Received:
    """One PUBLISH the probe received, with its monotonic arrival time and its MQTT 5
    Message Expiry Interval as the broker forwarded it (what is left of it; None: none)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    t: float
    expiry_s: int | None = None


def expiring(seconds: int) -> Properties:
    """PUBLISH properties with a Message Expiry Interval (the heartbeat's 1 s, FLEET.md 7.2)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = seconds
    return props


class Probe:
    """Connects in ``__init__`` (ProbeError if the broker refuses the connection or the
    TLS handshake fails); ``close()`` disconnects. ``tls`` None connects without TLS
    (to be refused by a fleet broker)."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, client_id: str, *,
                 host: str = "127.0.0.1", keepalive: int = 10, timeout_s: float = WAIT_S,
                 will: tuple[str, bytes, int, bool] | None = None) -> None:
        self.client_id = client_id
        self._cond = threading.Condition()
        self.received: list[Received] = []
        self._pubacks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self.connect_code: int | None = None
        self.disconnected_at: float | None = None
        self.disconnect_code: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if tls is not None:
            self.client.tls_set_context(tls)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=will[2], retain=will[3])
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        try:
            self.client.connect(host, port, keepalive=keepalive, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"{client_id}: cannot connect to {host}:{port}: {exc}") from exc
        self.client.loop_start()
        try:
            self._wait(lambda: self.connect_code is not None or self.disconnected_at is not None,
                       timeout_s, "CONNACK")
            if self.connect_code != 0:
                raise ProbeError(f"{client_id}: connection refused (CONNACK "
                                 f"{self.connect_code}, disconnect {self.disconnect_code})")
        except ProbeError:
            self.close()
            raise

    # --- callbacks (paho's network thread) ---------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    rc: ReasonCode, props: Properties | None) -> None:
        with self._cond:
            self.connect_code = rc.value
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       rc: ReasonCode, props: Properties | None) -> None:
        with self._cond:
            self.disconnected_at = time.monotonic()
            self.disconnect_code = rc.value
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            expiry = getattr(msg.properties, "MessageExpiryInterval", None)
            self.received.append(Received(msg.topic, bytes(msg.payload), msg.qos,
                                          bool(msg.retain), time.monotonic(), expiry))
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties) -> None:
        with self._cond:
            self._pubacks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], props: Properties | None) -> None:
        with self._cond:
            self._subacks[mid] = [c.value for c in codes]
            self._cond.notify_all()

    # --- waiting -----------------------------------------------------------------------

    def _wait(self, cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not (got := cond()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProbeError(f"{self.client_id}: no {what} within {timeout_s} s")
                self._cond.wait(left)
            return got

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = WAIT_S) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; its reason codes (granted QoS or an error)."""
        rc, mid = self.client.subscribe(topic, qos=qos)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise ProbeError(f"{self.client_id}: subscribe {topic}: {mqtt.error_string(rc)}")
        codes: list[int] = self._wait(lambda: self._subacks.get(mid), timeout_s,
                                      f"SUBACK for {topic}")
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False,
                properties: Properties | None = None, timeout_s: float = WAIT_S) -> int | None:
        """PUBLISH; for QoS 1 wait for the PUBACK and return its reason code, for QoS 0
        return None once paho has written it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain,
                                   properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ProbeError(f"{self.client_id}: publish {topic}: {mqtt.error_string(info.rc)}")
        if qos == 0:
            self._wait(info.is_published, timeout_s, f"write of {topic}")
            return None
        code: int = self._wait(lambda: self._pubacks.get(info.mid, -1) + 1, timeout_s,
                               f"PUBACK for {topic}") - 1
        return code

    def messages(self, topic: str | None = None) -> list[Received]:
        """What arrived so far (on ``topic`` only, when given)."""
        with self._cond:
            return [m for m in self.received if topic is None or m.topic == topic]

    def wait_message(self, topic: str, timeout_s: float = WAIT_S, *,
                     since: float = 0.0) -> Received:
        """The first message on ``topic`` that arrived at or after ``since``."""
        got: Received = self._wait(
            lambda: next((m for m in self.received if m.topic == topic and m.t >= since),
                         None), timeout_s, f"message on {topic}")
        return got

    def wait_disconnect(self, timeout_s: float = WAIT_S) -> float:
        """When (monotonic) the connection was lost or closed."""
        at: float = self._wait(lambda: self.disconnected_at, timeout_s, "disconnect")
        return at

    def drop(self, timeout_s: float = WAIT_S) -> None:
        """End the TCP connection without a DISCONNECT (as a crashed client does): the
        broker publishes the Will. Returns once paho has seen the connection gone."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # ssl.SSLSocket too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.wait_disconnect(timeout_s)
        self.client.loop_stop()

    def close(self) -> None:
        """Disconnect (if still connected) and stop the network thread."""
        if self.disconnected_at is None:
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
