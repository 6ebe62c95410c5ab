"""The fleet transport's own messages (MQTT 5 through an untrusted broker, FLEET.md §7).

``envelope``: every twin -> agent message that can change control or delete data, signed
(Ed25519) and bound to (host, recipient, epoch, seq); ``topics``: twinguard's own topic
namespace beside Sparkplug's. Sans-IO: bytes in, frozen data out.
"""
