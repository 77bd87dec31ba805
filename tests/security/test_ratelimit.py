"""Failed-login limiter: burst, exponential back-off, forgiveness, bounded memory."""

from __future__ import annotations

import pytest

from mqttfast.core.rate_limit import LoginRateLimiter, source_key

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw) -> tuple[LoginRateLimiter, Clock]:
    clock = Clock()
    return LoginRateLimiter(clock=clock, **kw), clock


def test_burst_then_exponential_backoff_capped() -> None:
    rl, clock = make(burst=3, base_delay=1.0, max_delay=8.0, forgive_per_second=0.0)
    assert [rl.record_failure("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.allowed("a")
    assert rl.record_failure("a") == 1.0
    assert not rl.allowed("a") and rl.retry_after("a") == 1.0
    clock.now += 1.0
    assert rl.allowed("a")
    delays = [rl.record_failure("a") for _ in range(5)]
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert rl.blocked_attempts == 1


def test_sources_are_independent() -> None:
    rl, _ = make(burst=1, forgive_per_second=0.0)
    rl.record_failure("a")
    rl.record_failure("a")
    assert not rl.allowed("a")
    assert rl.allowed("b")


def test_failures_are_forgiven_over_time() -> None:
    rl, clock = make(burst=2, forgive_per_second=0.5)
    rl.record_failure("a")
    rl.record_failure("a")
    clock.now += 4.0  # both failures leaked away
    assert rl.record_failure("a") == 0.0
    assert rl.record_failure("a") == 0.0
    assert rl.record_failure("a") > 0.0


def test_success_does_not_reset_unless_configured() -> None:
    rl, _ = make(burst=1, forgive_per_second=0.0)
    rl.record_failure("a")
    rl.record_success("a")
    assert rl.record_failure("a") > 0.0
    rl2, _ = make(burst=1, forgive_per_second=0.0, reset_on_success=True)
    rl2.record_failure("a")
    rl2.record_success("a")
    assert rl2.record_failure("a") == 0.0


def test_memory_is_bounded_and_blocked_sources_survive_eviction_pressure() -> None:
    rl, _ = make(burst=1, max_entries=100, forgive_per_second=0.0, max_delay=3600)
    rl.record_failure("attacker")
    rl.record_failure("attacker")  # blocked; the flood below only counts
    for i in range(10_000):
        rl2_key = f"10.0.{i // 256}.{i % 256}"
        rl.record_failure(rl2_key)
    assert len(rl) <= 100
    assert rl.evictions >= 9_900
    assert not rl.allowed("attacker")  # eviction prefers unblocked entries


def test_prune_drops_forgiven_entries() -> None:
    rl, clock = make(burst=5, forgive_per_second=1.0)
    for key in ("a", "b", "c"):
        rl.record_failure(key)
    clock.now += 10
    assert rl.prune() == 3 and len(rl) == 0


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        LoginRateLimiter(base_delay=0)
    with pytest.raises(ValueError):
        LoginRateLimiter(max_entries=0)


@pytest.mark.parametrize(
    "host, key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/mqttfast.sock", "/run/mqttfast.sock"),
        (None, "<local>"),
    ],
)
def test_source_key(host, key) -> None:
    assert source_key(host) == key
