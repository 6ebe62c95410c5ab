"""A real mosquitto broker for the fleet transport's tests, CI and benchmarks.

* :mod:`sim.broker.binary`: the binary (system, or Debian's package unpacked into a cache;
  ``python -m sim.broker fetch``);
* :mod:`sim.broker.acl` and :mod:`sim.broker.conf`: the ACL and mosquitto.conf of a fleet
  broker (FLEET.md 7.8), also written out as ``examples/``;
* :mod:`sim.broker.pki`: CA, broker and client certificates (:mod:`agent.io.pki`);
* :mod:`sim.broker.process`: :class:`Broker` (one process on loopback: start, stop, freeze,
  thaw, kill, /proc figures) and :class:`BridgedPair` (plant broker bridged to a site broker);
* :mod:`sim.broker.probe`: :class:`Probe`, a blocking MQTT 5 client that records what it
  receives (needs the ``fleet`` extra: paho-mqtt).
"""

from sim.broker.binary import BrokerBinary, BrokerUnavailable, fetch, locate
from sim.broker.process import BridgedPair, Broker, BrokerError, free_port

__all__ = ["BridgedPair", "Broker", "BrokerBinary", "BrokerError", "BrokerUnavailable",
           "fetch", "free_port", "locate"]
