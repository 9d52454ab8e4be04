"""The live network: IoT telemetry over MQTT kept as a network view to decide on.

``telemetry`` parses and validates messages (the original project's ``iot/devices/...``
payloads, and our topology topic); ``view`` keeps the latest report per node in this
process or in Redis and takes snapshots; ``ingest`` applies messages to a view and
counts what it drops; ``mqtt`` is the paho-mqtt subscriber and publisher; ``network``
puts them together for the MqttIngest deployment; ``devices`` publishes telemetry from
the simulator. No Ray Serve here.
"""
