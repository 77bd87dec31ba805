"""mqttfast: an MQTT 3.1/3.1.1/5.0 broker for Python with a native-accelerated codec."""

__version__ = "0.1.0"
