"""mqttfast: an MQTT 3.1/3.1.1/5.0 broker for Python with a native-accelerated codec."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Loaded on first use, so ``import mqttfast.codec`` stays light (no asyncio, no core).
_LAZY = {"Broker": "mqttfast.embed", "Plugin": "mqttfast.plugins.base"}

if TYPE_CHECKING:
    from mqttfast.embed import Broker
    from mqttfast.plugins.base import Plugin


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mqttfast' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Broker", "Plugin", "__version__"]
