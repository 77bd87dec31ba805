"""The broker process: dropping root privileges (``process.user``) and the pid file
(``process.pid_file``), in mosquitto 2's order.

:func:`start_process` runs right after the configuration is read and before
anything else opens or creates a file: started as root with a ``user``, the
process first becomes that user (its supplementary groups included), then
writes the pid file, so that the log file, the data directory and the pid file
are all created by, and owned by, the unprivileged user. Without root the
``user`` setting has nothing to do (mosquitto: the same).

The pid file holds the process id and a newline; it is removed at exit when it
still holds this process's id.
"""

from __future__ import annotations

import atexit
import codecs
import importlib
import logging
import os
import pwd

log = logging.getLogger("mqttfast")

# What the broker imports after start-up, imported while still root: the Python
# installation may be readable by root only (a pyenv under /root), and a module or
# codec looked up after the switch would then fail. Plug-ins are imported later
# from their own paths, which must be readable by the user.
PRELOAD_MODULES = (
    "concurrent.futures.thread",  # the persistence writer thread (imported lazily)
    "ctypes",  # cli.short_sched_slice, called after the drop
    "mqttfast.app.persistence.store",
    "asyncio",
    "gc",
    "json",
    "logging.handlers",
    "secrets",
    "sqlite3",
    "ssl",
    "uuid",
    "http.server",
    "urllib.parse",
    "mqttfast.app.admin",
    "mqttfast.app.bridge",
    "mqttfast.app.config",
    "mqttfast.app.logging_setup",
    "mqttfast.app.metrics",
    "mqttfast.app.persistence",
    "mqttfast.app.security.acl",
    "mqttfast.app.security.auth",
    "mqttfast.app.security.hooks",
    "mqttfast.app.security.passwords",
    "mqttfast.app.security.ratelimit",
    "mqttfast.app.security.tls",
    "mqttfast.codec",
    "mqttfast.core.broker",
    "mqttfast.core.hooks",
    "mqttfast.embed",
    "mqttfast.plugins.runtime",
    "mqttfast.transport.server",
)
PRELOAD_CODECS = ("ascii", "utf-8", "latin-1", "idna", "utf-16", "utf-32")


def preload() -> None:
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:  # an optional part (e.g. no admin): not fatal here
            log.debug("preload %s: %s", name, err)
    for codec in PRELOAD_CODECS:
        codecs.lookup(codec)


class ProcessError(Exception):
    """A setting that cannot be applied; the message names the key."""


def drop_privileges(user: str | None) -> str | None:
    """Become ``user`` when running as root. Returns a line to log, or None."""
    if os.geteuid() != 0:
        return None
    if not user:
        return None
    if user == "root":
        return "process.user is root: privileges kept"
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ProcessError(f"process.user: no such user {user!r}") from None
    preload()
    try:
        os.initgroups(user, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as err:
        raise ProcessError(f"process.user: cannot become {user!r}: {err.strerror}") from None
    os.environ["HOME"] = entry.pw_dir
    return f"running as user {user} (uid {entry.pw_uid}, gid {entry.pw_gid})"


def write_pid_file(path: str | None) -> None:
    if not path:
        return
    pid = os.getpid()
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(f"{pid}\n")
    except OSError as err:
        raise ProcessError(f"process.pid_file: cannot write {path}: {err.strerror}") from None

    def remove() -> None:
        try:
            with open(path, encoding="ascii") as fh:
                if fh.read().strip() != str(pid):
                    return  # another process's file now
            os.unlink(path)
        except OSError:
            pass

    atexit.register(remove)


def start_process(user: str | None, pid_file: str | None) -> str | None:
    """Privileges first, then the pid file (mosquitto 2's order). Raises ProcessError."""
    note = drop_privileges(user)
    write_pid_file(pid_file)
    return note


__all__ = ["ProcessError", "drop_privileges", "start_process", "write_pid_file"]
