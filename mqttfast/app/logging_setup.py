"""Log output: where it goes, how it looks, and keeping it readable under load.

* Format: human-readable lines (default) or JSON lines (``--log-format json``).
  JSON lines carry ``ts``, ``level``, ``logger``, ``msg`` and every structured
  field the caller passed with ``extra=`` (``client_id``, ``peer``, ``reason``,
  ``reason_code`` ...), so a log shipper can filter on them without parsing text.
  Payloads are never put into log records by the broker.
* Destinations (``logging.destinations``, mosquitto ``log_dest``): ``stderr``,
  ``stdout``, ``syslog`` (``logging.syslog_address``, ``syslog_facility``; mosquitto
  ``log_facility N`` is ``localN``) and ``file:PATH`` (a WatchedFileHandler, so
  logrotate can move the file).
* ``logging.timestamp`` / ``timestamp_format`` (mosquitto ``log_timestamp`` /
  ``log_timestamp_format``): text lines with or without a timestamp, in strftime
  format (local time, as mosquitto).
* ``logging.connection_messages`` (default true, as mosquitto): the connect and
  disconnect lines of clients; off, they are dropped.
* Aggregation: repeated events of one kind (connect timeouts, refused
  connections, malformed packets) make at most one line per kind per
  ``logging.aggregate_interval`` (1 s): the first event of a quiet period is
  logged as it comes, the rest of the interval is counted and summed up in one
  line ("... 57 more connect timeouts in the last 1.0 s"). This is a logging
  filter keyed on the core's message formats, so no call site in the core changes
  and the hot path pays nothing when nothing goes wrong.
* The ``websockets`` library's own lines ("connection open", "opening handshake
  failed" with a traceback) are not passed on below debug level: the transport
  logs one line of its own per refused handshake.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TEXT_FORMAT_NO_TIME = "%(levelname)s %(name)s: %(message)s"
SYSLOG_FORMAT = "mqttfast[%(process)d]: %(levelname)s %(name)s: %(message)s"

# The core's and the transport's message formats, by kind of event. A test
# (tests/ops/test_logging.py) provokes each kind through a real broker, so a changed
# format string shows up there.
CONNECTION_MESSAGES = frozenset(
    {
        "client %s connected from %s (v%d, clean=%s, keepalive=%d)",
        "client %s disconnected (reason 0x%02X)",
        "client %s (%s) connection lost",
        "client %s (%s): keep alive timeout; closing",
        "client %s: taken over by %s",
    }
)
AGGREGATED_KINDS: dict[str, str] = {
    "connection %s: no CONNECT within %.1f s; closing": "connect timeouts",
    "connection %s client %r refused: %s (0x%02X)": "refused connections",
    "login failed for client %r user %r from %s (reason 0x%02X)%s": "failed logins",
    "login from %s refused: too many failed logins (retry in %.0fs)": "rate-limited logins",
    "connection %s: bad CONNECT: %s; closing": "malformed packets",
    "client %s (%s): protocol violation: %s (0x%02X); closing": "malformed packets",
    "connection %s: decoder failure %r; closing": "malformed packets",
    "websocket %s: text frame; closing": "malformed packets",
    "websocket %s: handshake refused (%d %s, path %r)": "refused websocket handshakes",
    "websocket %s: bad handshake: %s": "refused websocket handshakes",
}


def structured_fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in structured_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Text lines; ``timestamp_format`` (strftime, local time) replaces asctime's."""

    def __init__(self, timestamp: bool = True, timestamp_format: str | None = None) -> None:
        super().__init__(TEXT_FORMAT if timestamp else TEXT_FORMAT_NO_TIME)
        self.timestamp_format = timestamp_format

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if self.timestamp_format:
            return time.strftime(self.timestamp_format, time.localtime(record.created))
        return super().formatTime(record, datefmt)


def make_formatter(
    fmt: str, timestamp: bool = True, timestamp_format: str | None = None
) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt != "text":
        raise ValueError(f"unknown log format {fmt!r} (text or json)")
    return TextFormatter(timestamp, timestamp_format)


class _Kind:
    __slots__ = ("window_end", "count", "last", "timer", "started")

    def __init__(self) -> None:
        self.window_end: float | None = None  # None: quiet, the next event is logged
        self.count = 0  # events held back in this window
        self.last: logging.LogRecord | None = None
        self.timer: threading.Timer | None = None
        self.started = 0.0


class BrokerLogFilter(logging.Filter):
    """connection_messages and the per-kind aggregation. One instance is shared by
    every handler: a record is decided once (the last decision is remembered)."""

    def __init__(self, connection_messages: bool = True, interval: float = 1.0) -> None:
        super().__init__()
        self.connection_messages = connection_messages
        self.interval = interval
        self.kinds: dict[str, _Kind] = {}
        self.lock = threading.Lock()
        self._last: tuple[logging.LogRecord | None, bool] = (None, True)

    def filter(self, record: logging.LogRecord) -> bool:
        last, decision = self._last
        if record is last:
            return decision
        decision = self._decide(record)
        self._last = (record, decision)
        return decision

    def _decide(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not isinstance(msg, str) or getattr(record, "_aggregate", False):
            return True
        if msg in CONNECTION_MESSAGES:
            return self.connection_messages
        kind = AGGREGATED_KINDS.get(msg)
        if kind is None or self.interval <= 0:
            return True
        now = time.monotonic()
        with self.lock:
            st = self.kinds.get(kind)
            if st is None:
                st = self.kinds[kind] = _Kind()
            if st.window_end is None or (now >= st.window_end and st.count == 0):
                st.window_end = now + self.interval  # a quiet period ends: log this one
                st.started = now
                return True
            st.count += 1
            st.last = record
            if st.timer is None:
                st.timer = threading.Timer(max(0.0, st.window_end - now), self._flush, (kind,))
                st.timer.daemon = True
                st.timer.start()
            return False

    def _flush(self, kind: str) -> None:
        with self.lock:
            st = self.kinds[kind]
            st.timer = None
            count, last, started = st.count, st.last, st.started
            st.count, st.last = 0, None
            now = time.monotonic()
            # Still busy: the next window starts now, its events summed up at its end.
            st.window_end, st.started = (now + self.interval, now) if count else (None, now)
        if count and last is not None:
            self.emit_summary(kind, count, now - started, last)

    def emit_summary(self, kind: str, count: int, seconds: float, last: logging.LogRecord) -> None:
        logger = logging.getLogger(last.name)
        logger.log(
            last.levelno,
            "%d more %s in the last %.1f s (last: %s)",
            count,
            kind,
            seconds,
            last.getMessage(),
            extra={"_aggregate": True, "event_kind": kind, "count": count},
        )

    def close(self) -> None:
        """Report what is held back now (at exit) and stop the timers."""
        for kind, st in list(self.kinds.items()):
            if st.timer is not None:
                st.timer.cancel()
                self._flush(kind)


_FACILITIES = {"daemon", "user"} | {f"local{i}" for i in range(8)}
_current_filter: BrokerLogFilter | None = None


def check_settings(settings: Any) -> list[str]:
    """Errors in the [logging] keys this module interprets (``logging.<key>: ...``)."""
    errors = []
    dests = getattr(settings, "destinations", ["stderr"])
    for i, dest in enumerate(dests):
        ok = isinstance(dest, str) and (
            dest in ("stderr", "stdout", "syslog") or (dest.startswith("file:") and dest[5:])
        )
        if not ok:
            errors.append(
                f"logging.destinations[{i}]: expected stderr, stdout, syslog or file:PATH, "
                f"got {dest!r}"
            )
    facility = getattr(settings, "syslog_facility", "daemon")
    if facility not in _FACILITIES:
        errors.append(
            f"logging.syslog_facility: expected daemon, user or local0..local7, got {facility!r}"
        )
    return errors


class SyslogHandler(logging.handlers.SysLogHandler):
    """A syslog that is down costs its lines, not a traceback per line on stderr: one
    line says so (as syslog(3), which mosquitto uses, the broker keeps running)."""

    reported = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.reported:
            self.reported = True
            err = sys.exc_info()[1]
            print(
                f"mqttfast: syslog at {self.address} unreachable ({err}); "
                "its log lines are lost until it is back",
                file=sys.stderr,
            )


def _syslog_address(address: str) -> str | tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and not address.startswith("/"):
        return host, int(port)
    return address


def _handler(dest: str, facility: str, syslog_address: str = "/dev/log") -> logging.Handler:
    if dest == "stderr":
        return logging.StreamHandler(sys.stderr)
    if dest == "stdout":
        return logging.StreamHandler(sys.stdout)
    if dest == "syslog":
        code = logging.handlers.SysLogHandler.facility_names[facility]
        try:
            return SyslogHandler(_syslog_address(syslog_address), facility=code)
        except OSError as err:
            raise ValueError(
                f"logging.syslog_address: cannot reach syslog at {syslog_address}: "
                f"{err.strerror or err}"
            ) from None
    path = dest[len("file:") :]
    try:
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as err:
        raise ValueError(f"logging.destinations: cannot open {path}: {err.strerror}") from None


def configure_logging(level: str = "info", fmt: str = "text", settings: Any = None) -> None:
    """Handlers on the root logger for ``settings`` (a LoggingConfig; None = stderr
    only), replacing any previous ones. Raises ValueError naming the key."""
    global _current_filter
    errors = check_settings(settings) if settings is not None else []
    if errors:
        raise ValueError("; ".join(errors))
    dests = list(getattr(settings, "destinations", ["stderr"]))
    facility = getattr(settings, "syslog_facility", "daemon")
    log_filter = BrokerLogFilter(
        getattr(settings, "connection_messages", True),
        float(getattr(settings, "aggregate_interval", 1.0)),
    )
    address = getattr(settings, "syslog_address", "/dev/log")
    handlers = [_handler(d, facility, address) for d in dests]  # may raise before any change
    timestamp = bool(getattr(settings, "timestamp", True))
    tformat = getattr(settings, "timestamp_format", None)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    if _current_filter is not None:
        _current_filter.close()
    for dest, handler in zip(dests, handlers, strict=True):
        if dest == "syslog" and fmt == "text":
            handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
        else:
            handler.setFormatter(make_formatter(fmt, timestamp, tformat))
        handler.addFilter(log_filter)
        root.addHandler(handler)
    if not handlers:
        root.addHandler(logging.NullHandler())
    _current_filter = log_filter
    set_level(level)


def set_level(level: str) -> None:
    """Change the level at run time (SIGHUP reload)."""
    value = getattr(logging, level.upper())
    logging.getLogger().setLevel(value)
    # The websockets library's own INFO/ERROR lines (with tracebacks for bad handshakes)
    # would repeat what the transport logs in one line; they stay for debugging.
    logging.getLogger("websockets").setLevel(
        logging.DEBUG if value <= logging.DEBUG else logging.CRITICAL
    )


def flush_aggregated() -> None:
    """At exit: log the counts still held back."""
    if _current_filter is not None:
        _current_filter.close()


__all__ = [
    "AGGREGATED_KINDS",
    "BrokerLogFilter",
    "CONNECTION_MESSAGES",
    "JsonFormatter",
    "TextFormatter",
    "check_settings",
    "configure_logging",
    "flush_aggregated",
    "make_formatter",
    "set_level",
    "structured_fields",
    "TEXT_FORMAT",
]
