"""Shared pieces of the robustness tests: broker memory, $SYS reads, the
well-behaved client that must keep working while hostile peers do their worst,
and raising the open-file limit."""

from __future__ import annotations

import resource
import threading
import time
from typing import Any

from tests.helpers.rawclient import RawClient


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` s; ``peak`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = rss_kib(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self.stopped.wait(self.interval)

    def stop(self) -> int:
        self.stopped.set()
        self.join(5)
        return self.peak


def sys_value(port: int, name: str, timeout: float = 5.0, client_id: str = "") -> str:
    """The retained value of ``$SYS/broker/<name>`` (as published at the last interval)."""
    with RawClient(port) as c:
        c.connect(client_id)
        c.subscribe(f"$SYS/broker/{name}")
        pub = c.recv_publish(timeout)
        return pub.payload.decode()


def wait_sys(port: int, name: str, pred: Any, timeout: float = 6.0) -> str:
    """Poll ``$SYS/broker/<name>`` until ``pred(value)``; the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = sys_value(port, name)
    while not pred(value) and time.monotonic() < deadline:
        time.sleep(0.3)
        value = sys_value(port, name)
    return value


def raise_nofile(want: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit toward ``want`` (up to the hard
    limit, raising the hard limit too when allowed, e.g. as root); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


class GoodClient(threading.Thread):
    """A well-behaved pair of clients exchanging QoS 1 messages in a loop: the
    publisher waits for each PUBACK, the subscriber for each message (in order,
    acknowledged). ``check()`` fails on any loss, reordering, error, or a round
    trip slower than ``stall`` seconds, and when too few round trips happened."""

    def __init__(self, port: int, name: str, stall: float = 5.0) -> None:
        super().__init__(daemon=True, name=f"good-{name}")
        self.topic = f"good/{name}"
        self.stall = stall
        self.sub = RawClient(port, connect_timeout=10)
        self.sub.connect(f"good-sub-{name}", timeout=10)
        self.sub.subscribe((self.topic, 1), timeout=10)
        self.pub = RawClient(port, connect_timeout=10)
        self.pub.connect(f"good-pub-{name}", timeout=10)
        self.stop_evt = threading.Event()
        self.rounds = 0
        self.max_rtt = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_evt.is_set():
                t0 = time.monotonic()
                payload = str(self.rounds).encode()
                self.pub.publish(self.topic, payload, qos=1, timeout=self.stall + 5)
                got = self.sub.recv_publish(timeout=self.stall + 5)
                assert got.topic == self.topic and got.payload == payload and got.qos == 1, (
                    f"expected {payload!r} on {self.topic}, got {got!r} (loss or reordering)"
                )
                self.max_rtt = max(self.max_rtt, time.monotonic() - t0)
                self.rounds += 1
                self.stop_evt.wait(0.005)
        except BaseException as exc:  # reported by check()
            self.error = exc

    def check(self, more_rounds: int = 3) -> None:
        """Wait for ``more_rounds`` further round trips (the broker still serves after
        whatever the test did), stop, and assert."""
        target = self.rounds + more_rounds
        deadline = time.monotonic() + self.stall + 5
        while self.rounds < target and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop_evt.set()
        self.join(self.stall + 15)
        assert not self.is_alive(), "the well-behaved client is stuck"
        for c in (self.sub, self.pub):
            c.disconnect(wait=0.5)
        if self.error is not None:
            raise AssertionError(
                f"well-behaved client failed after {self.rounds} round trips: {self.error!r}"
            ) from self.error
        assert self.rounds >= target, f"only {self.rounds} QoS 1 round trips: stalled"
        assert self.max_rtt < self.stall, (
            f"a QoS 1 round trip took {self.max_rtt:.2f} s (stall limit {self.stall} s)"
        )
