"""Client processes read line by line (mosquitto_sub, node MQTT.js scripts ...): the
helper lives with the broker-process helper in tests/helpers; re-exported here for the
interop tests."""

from tests.helpers.lineprocess import LineProcess, require_program

__all__ = ["LineProcess", "require_program"]
