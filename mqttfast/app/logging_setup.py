"""Log output: human-readable lines (default) or JSON lines (``--log-format json``).

JSON lines carry ``ts``, ``level``, ``logger``, ``msg`` and every structured field
the caller passed with ``extra=`` (``client_id``, ``peer``, ``reason``,
``reason_code`` ...), so a log shipper can filter on them without parsing text.
Payloads are never put into log records by the broker.
"""

from __future__ import annotations

import json
import logging
import time

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt != "text":
        raise ValueError(f"unknown log format {fmt!r} (text or json)")
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """One stderr handler on the root logger, replacing any previous one."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(fmt))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Change the level at run time (SIGHUP reload)."""
    logging.getLogger().setLevel(getattr(logging, level.upper()))


__all__ = [
    "JsonFormatter",
    "configure_logging",
    "make_formatter",
    "set_level",
    "structured_fields",
    "TEXT_FORMAT",
]
