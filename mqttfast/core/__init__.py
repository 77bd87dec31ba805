"""The socket-free broker core. See docs/architecture.md ("Core <-> transport seam")."""

from .broker import Broker, FakeClock
from .connection import Connection
from .hooks import AuthStep, Hooks
from .message import Message
from .router import LocalRouter, Router
from .settings import BrokerSettings

__all__ = ["Broker", "BrokerSettings", "Connection", "FakeClock", "Hooks", "AuthStep",
           "LocalRouter", "Router", "Message"]
