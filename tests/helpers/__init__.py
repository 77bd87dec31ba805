"""Test helpers shared by the broker, interop and MQTT 5 suites.

- ``broker.BrokerProcess``: a real broker (mqttfast, or Debian's mosquitto when
  ``MQTTFAST_TEST_BROKER=mosquitto``) on a free 127.0.0.1 port, as a subprocess.
- ``rawclient.RawClient``: a blocking raw-socket MQTT client built on
  ``mqttfast.codec`` for packet-exact end-to-end tests.

Import as ``from tests.helpers.broker import BrokerProcess`` (run pytest as
``python3 -m pytest`` from the repository root so the root is on sys.path).
"""

from .broker import BrokerProcess, free_port, mosquitto_mode

__all__ = ["BrokerProcess", "free_port", "mosquitto_mode"]
