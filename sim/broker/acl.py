"""The mosquitto ACL of a twinguard fleet (design notes FLEET.md 7.8), as text for
``acl_file``.

The broker runs with ``require_certificate true`` and ``use_identity_as_username true``:
a client's user name is its certificate's CN, so an edge node (CN = ``device_id`` =
Sparkplug ``edge_node_id``) is bound to its own topics by ``%u`` patterns:

=============  ==================================================================
edge node      write ``spBv1.0/+/{NBIRTH,NDEATH,NDATA}/%u``,
               ``spBv1.0/+/{DBIRTH,DDATA,DDEATH}/%u/+``;
               read its own ``spBv1.0/+/NCMD/%u``, ``spBv1.0/+/DCMD/%u/+``,
               ``spBv1.0/STATE/+``, ``twinguard/v1/<host>/hb``, ``…/<host>/info``
               and its own ``twinguard/v1/<group>/%u/config``
host user      (``twin-host``) the only writer of ``spBv1.0/STATE/<host>``, NCMD and
               DCMD in ``<group>``, the heartbeat, info and the config topics; reads
               ``spBv1.0/#`` and ``twinguard/v1/#``
bridge users   (a plant broker's bridge, by its certificate's CN) read what a bridge
               carries ``in`` and write what it carries ``out`` (:mod:`sim.broker.conf`)
=============  ==================================================================

Anything not granted is refused. Measured with Debian's mosquitto 2.0.11: a QoS 1
PUBLISH outside the grants gets PUBACK 0x87 Not authorized (MQTT 5) and reaches nobody; a
SUBSCRIBE outside them is granted in the SUBACK (the ``acl_file`` checks read access when
a message is delivered, not at SUBSCRIBE) and delivers nothing. ``pattern`` lines apply to
every user (the host's own ``%u`` topics included, which it never uses); mosquitto warns
at start-up about those without ``%u`` (the shared topics), which is expected. Messages a
bridge brings in are not checked against the plant broker's ACL (the site broker checked
them). This module imports nothing of the agent.
"""

from __future__ import annotations

from collections.abc import Sequence

HOST_USER = "twin-host"
NODE_WRITE = ("NBIRTH", "NDEATH", "NDATA")
DEVICE_WRITE = ("DBIRTH", "DDATA", "DDEATH")


def hb_topic(host_id: str) -> str:
    """The signed heartbeat fan-out topic of host ``host_id``."""
    return f"twinguard/v1/{host_id}/hb"


def info_topic(host_id: str) -> str:
    return f"twinguard/v1/{host_id}/info"


def state_topic(host_id: str) -> str:
    return f"spBv1.0/STATE/{host_id}"


def config_topic(group_id: str, device_id: str) -> str:
    """The retained desired-configuration topic of one device."""
    return f"twinguard/v1/{group_id}/{device_id}/config"


def node_topic(group_id: str, kind: str, device_id: str) -> str:
    """``spBv1.0/<group>/<kind>/<device>`` (NBIRTH, NDATA, NDEATH, NCMD)."""
    return f"spBv1.0/{group_id}/{kind}/{device_id}"


def inbound_topics(group_id: str, host_id: str) -> tuple[str, ...]:
    """What flows host → edge nodes (a bridge carries these ``in``)."""
    return (hb_topic(host_id), info_topic(host_id), "spBv1.0/STATE/+",
            f"spBv1.0/{group_id}/NCMD/+", f"spBv1.0/{group_id}/DCMD/+/+",
            config_topic(group_id, "+"))


def outbound_topics(group_id: str) -> tuple[str, ...]:
    """What flows edge nodes → host (a bridge carries these ``out``)."""
    return (*(f"spBv1.0/{group_id}/{k}/+" for k in NODE_WRITE),
            *(f"spBv1.0/{group_id}/{k}/+/+" for k in DEVICE_WRITE))


def acl_text(group_id: str, host_id: str, *, host_user: str = HOST_USER,
             bridge_users: Sequence[str] = ()) -> str:
    """The ACL file for Sparkplug group ``group_id`` served by host ``host_id``; see the
    module docstring. ValueError for an id that is empty or holds ``/ + #`` or space."""
    for name, value in (("group_id", group_id), ("host_id", host_id),
                        ("host_user", host_user), *(("bridge user", b) for b in bridge_users)):
        if not value or any(c in value for c in "/+# \t\n"):
            raise ValueError(f"{name} {value!r} is not a single MQTT topic level")
    lines = [
        f"# twinguard fleet ACL: Sparkplug group {group_id!r}, host {host_id!r}.",
        "# User names are certificate CNs (use_identity_as_username true);",
        "# an edge node's CN is its device_id. Anything not granted here is refused.",
        "",
        "# every edge node: its own birth, data and death ...",
        *(f"pattern write spBv1.0/+/{k}/%u" for k in NODE_WRITE),
        *(f"pattern write spBv1.0/+/{k}/%u/+" for k in DEVICE_WRITE),
        "# ... its own commands, the host's STATE, heartbeat and info, its own config",
        "pattern read spBv1.0/+/NCMD/%u",
        "pattern read spBv1.0/+/DCMD/%u/+",
        "pattern read spBv1.0/STATE/+",
        f"pattern read {hb_topic(host_id)}",
        f"pattern read {info_topic(host_id)}",
        f"pattern read {config_topic(group_id, '%u')}",
        "",
        "# the host: the only writer of STATE, commands, heartbeat, info and config",
        f"user {host_user}",
        f"topic write {state_topic(host_id)}",
        f"topic write spBv1.0/{group_id}/NCMD/+",
        f"topic write spBv1.0/{group_id}/DCMD/+/+",
        f"topic write {hb_topic(host_id)}",
        f"topic write {info_topic(host_id)}",
        f"topic write {config_topic(group_id, '+')}",
        "topic read spBv1.0/#",
        "topic read twinguard/v1/#",
    ]
    for user in bridge_users:
        lines += ["", "# a plant broker's bridge: host -> nodes in, nodes -> host out",
                  f"user {user}",
                  *(f"topic read {t}" for t in inbound_topics(group_id, host_id)),
                  *(f"topic write {t}" for t in outbound_topics(group_id))]
    return "\n".join(lines) + "\n"
