"""The fleet transport's topic and metric names: the contract between the agent's
``FleetLink`` and any twin (the sim twin included). See ``WIRE.md`` beside this module.

Pure strings; the Sparkplug topics themselves come from ``agent.protocol.sparkplug.topic``
(which needs protobuf), so this module can be imported on the default TLS link too.
"""

from __future__ import annotations

NAMESPACE = "twinguard/v1"

# metrics an agent births (NBIRTH, name + alias) and then sends by alias (NDATA)
M_HELLO = "twinguard/hello"  # Bytes: msgpack of the AgentHello wire map (NBIRTH only)
M_RESUME = "twinguard/resume"  # UInt64: the spool resumes after this seq (NDATA; NBIRTH: last)
M_STATUS = "twinguard/status"  # Bytes: msgpack of the Status wire map
M_STATE = "twinguard/state"  # String: Status.state, for generic hosts
M_MODE = "twinguard/mode"  # String: Status.mode
M_AUTHORITY = "twinguard/authority"  # String: Status.authority
M_SPOOL_SEQ = "twinguard/spool/seq"  # UInt64: a telemetry record's seq ...
M_SPOOL_PREV = "twinguard/spool/prev"  # UInt64: ... the record before it in the spool
M_RECORD = "twinguard/record"  # Bytes: msgpack of the Telemetry wire map (full fidelity)
M_RESULT = "twinguard/result"  # Bytes: msgpack of a RecommendResult / ConfigResult wire map
# metrics a twin sends in NCMD
M_CMD = "twinguard/cmd"  # Bytes: a signed envelope (agent.protocol.fleet.envelope) to us
# ("Node Control/Rebirth" is agent.protocol.sparkplug.REBIRTH)

BIRTH_METRICS = (M_HELLO, M_RESUME, M_STATUS, M_STATE, M_MODE, M_AUTHORITY, M_SPOOL_SEQ,
                 M_SPOOL_PREV, M_RECORD, M_RESULT)


def heartbeat_topic(host_id: str) -> str:
    """The fan-out heartbeat topic: signed Heartbeat/Bye envelopes to ``"*"``, QoS 0."""
    return f"{NAMESPACE}/{host_id}/hb"


def config_topic(group: str, device_id: str) -> str:
    """The retained desired-configuration topic: one signed ``twinguard-bundle/1``, QoS 1."""
    return f"{NAMESPACE}/{group}/{device_id}/config"
