"""Durable state (issue 5): the SQLite backend of the core's Storage seam.

``open_storage(mode, data_dir)`` returns the backend for a persistence mode:

* ``strict`` (default of the CLI; ``on`` is an alias): every change is
  committed (fsync) before the bytes of the same event-loop turn are written,
  so nothing acknowledged is lost by a crash or power cut.
* ``relaxed``: committed every ``interval`` seconds (1 s); a crash loses at
  most that window of acknowledged state.
* ``off``: :class:`mqttfast.core.storage.MemoryStorage`, nothing kept.

The data directory holds ``mqttfast.db`` (+ its ``-wal``/``-shm`` files while
open) and ``mqttfast.lock``; one broker per directory. Default directory:
``./mqttfast-data`` relative to the working directory (as mosquitto's
``persistence_location``), so brokers started in different directories
never share state.
"""

from __future__ import annotations

from mqttfast.core.storage import MemoryStorage, Storage

from .schema import APPLICATION_ID, SCHEMA_VERSION, PersistenceError

DEFAULT_DATA_DIR = "mqttfast-data"
MODES = ("strict", "relaxed", "off")
MODE_ALIASES = {"on": "strict", "true": "strict", "false": "off", "none": "off"}


def open_storage(
    mode: str,
    data_dir: str = DEFAULT_DATA_DIR,
    interval: float = 1.0,
    on_error: str = "stop",
    window: float | None = None,
) -> Storage:
    """The storage for ``mode``; PersistenceError when the data cannot be used.

    The returned storage carries its whole durability policy, the strict group-commit
    window (``window`` s, default 2 ms) included: it installs it on the transport's
    output itself (``Storage.bind_output``), whichever path starts the broker.
    ``on_error``: "stop" (exit at once) or "degrade" (serve on, not persisting)
    when a commit fails."""
    mode = MODE_ALIASES.get(mode, mode)
    if mode == "off":
        return MemoryStorage()
    if mode not in MODES:
        raise PersistenceError(f"unknown persistence mode {mode!r} (strict, relaxed or off)")
    from .store import GROUP_COMMIT_WINDOW, ON_ERROR, SQLiteStorage

    if on_error not in ON_ERROR:
        raise PersistenceError(f"unknown persistence.on_error {on_error!r} (stop or degrade)")
    return SQLiteStorage(
        data_dir, mode, interval, GROUP_COMMIT_WINDOW if window is None else window, on_error
    )


__all__ = [
    "open_storage",
    "PersistenceError",
    "DEFAULT_DATA_DIR",
    "MODES",
    "MODE_ALIASES",
    "APPLICATION_ID",
    "SCHEMA_VERSION",
]
