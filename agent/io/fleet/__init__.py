"""The fleet transport's I/O (issue 15, FLEET.md §7): ``link`` (:class:`FleetLink`, the
twin through an MQTT 5 broker, needs the ``twinguard[fleet]`` extra: aiomqtt, protobuf)
and ``bdseq`` (the persisted Sparkplug bdSeq). Nothing outside the fleet transport imports
``link``; the runtime imports it only when ``[twin] transport = "mqtt"``.
"""
