"""The twin protocol (``PROTOCOL.md``): ``frames`` (length-prefixed msgpack maps) and
``schema`` (each message's fields and their strict decoding; the messages themselves are
``agent.model.messages``)."""
