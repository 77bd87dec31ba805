"""CPU time and RSS of a process and its descendants, from /proc (Linux; elsewhere: None).

A broker can be several processes (``--workers N`` runs a supervisor, its workers and a
nats-server), so the figures are summed over the whole tree under each given pid.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_KB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) // 1024


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # Fields after the command name, which may itself contain spaces and parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def tree(roots: list[int]) -> list[int]:
    """The roots and every live descendant."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return list(roots)
    for name in entries:
        if name.isdigit():
            f = _stat(int(name))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(name))
    out: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(roots: list[int]) -> float | None:
    """User + system CPU seconds of the live tree (None when nothing can be read)."""
    total = 0
    seen = False
    for pid in tree(roots):
        f = _stat(pid)
        if f is not None:
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15 of stat)
            seen = True
    return total / _TICK if seen else None


def rss_kb(roots: list[int]) -> int | None:
    """Resident set size of the live tree in KiB."""
    total = 0
    seen = False
    for pid in tree(roots):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE_KB
            seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total if seen else None
