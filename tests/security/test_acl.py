"""ACL files in mosquitto's format: cases from mosquitto.conf(5) and aclfile.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqttfast.app.security.acl import AclFile, AclParseError

pytestmark = pytest.mark.timeout(30)

# mosquitto's aclfile.example, as shipped with the broker.
ACLFILE_EXAMPLE = """\
# This affects access control for clients with no username.
topic read $SYS/#

# This only affects clients with username "roger".
user roger
topic foo/bar

# This affects all clients.
pattern write $SYS/broker/connection/%c/state
"""


@pytest.fixture
def example() -> AclFile:
    return AclFile.parse(ACLFILE_EXAMPLE, "aclfile.example")


def test_lines_before_any_user_apply_to_anonymous_clients(example: AclFile) -> None:
    assert example.can_receive("c1", None, "$SYS/broker/uptime")
    assert example.can_subscribe("c1", None, "$SYS/#")
    assert not example.can_publish("c1", None, "$SYS/broker/uptime")  # read only
    assert not example.can_receive("c1", None, "foo/bar")  # roger's topic


def test_user_block_applies_to_that_user_only(example: AclFile) -> None:
    # `topic foo/bar` without an access word is readwrite.
    assert example.can_publish("c1", "roger", "foo/bar")
    assert example.can_receive("c1", "roger", "foo/bar")
    assert not example.can_publish("c1", "roger", "foo/baz")
    # The anonymous block does not apply to a named user...
    assert not example.can_receive("c1", "roger", "$SYS/broker/uptime")
    # ...and a username without a block gets only the patterns.
    assert not example.can_receive("c1", "someone", "foo/bar")


def test_pattern_with_client_id_applies_to_all_clients(example: AclFile) -> None:
    for user in (None, "roger", "someone"):
        assert example.can_publish("bridge-7", user, "$SYS/broker/connection/bridge-7/state")
        assert not example.can_publish("bridge-7", user, "$SYS/broker/connection/other/state")
        # write-only pattern: reading needs the anonymous `topic read $SYS/#` line
        readable = user is None
        assert (
            example.can_receive("bridge-7", user, "$SYS/broker/connection/bridge-7/state")
            is readable
        )


def test_pattern_with_username() -> None:
    # mosquitto.conf(5): "pattern write sensor/%u/data"
    acl = AclFile.parse("pattern write sensor/%u/data\npattern read devices/%c/#\n")
    assert acl.can_publish("c1", "fred", "sensor/fred/data")
    assert not acl.can_publish("c1", "fred", "sensor/joe/data")
    assert not acl.can_publish("c1", None, "sensor/%u/data")  # %u skipped without a username
    assert not acl.can_publish("c1", None, "sensor//data")
    assert acl.can_receive("c1", None, "devices/c1/temp")
    assert acl.can_receive("c1", None, "devices/c1")  # '#' includes the parent level
    assert acl.can_subscribe("c1", "fred", "devices/c1/#")
    assert not acl.can_subscribe("c1", "fred", "devices/c2/#")
    # A wider filter is accepted because part of it is readable; what it may deliver is
    # decided per message, so other clients' topics never arrive.
    assert acl.can_subscribe("c1", "fred", "devices/#")
    assert not acl.can_receive("c1", "fred", "devices/c2/temp")


def test_dangerous_ids_get_no_pattern_access() -> None:
    acl = AclFile.parse("pattern readwrite clients/%c/#\npattern readwrite users/%u/#\n")
    assert acl.can_publish("ok", "ok", "clients/ok/x")
    for bad in ("+", "#", "a/b", "x+y"):
        assert not acl.can_publish(bad, None, f"clients/{bad}/x")
        assert not acl.can_publish("ok", bad, f"users/{bad}/x")
        assert not acl.can_publish("ok", bad, "clients/ok/x")  # all patterns off, not just %u


def test_client_named_dollar_sys_gets_no_sys_access_from_patterns() -> None:
    acl = AclFile.parse("pattern readwrite %c/#\n")
    assert acl.can_publish("dev1", None, "dev1/x")
    assert not acl.can_receive("$SYS", None, "$SYS/broker/uptime")
    assert not acl.can_subscribe("$SYS", None, "$SYS/#")


def test_deny_takes_precedence_over_readwrite() -> None:
    # From mosquitto's own ACL tests: readwrite topic/global/# + deny topic/global/except.
    acl = AclFile.parse("topic readwrite topic/global/#\ntopic deny topic/global/except\n")
    assert acl.can_publish("c", None, "topic/global/x")
    assert not acl.can_publish("c", None, "topic/global/except")
    assert not acl.can_receive("c", None, "topic/global/except")
    # The wildcard subscription is allowed; the denied topic is filtered on delivery.
    assert acl.can_subscribe("c", None, "topic/global/#")
    assert not acl.can_subscribe("c", None, "topic/global/except")


def test_deny_order_in_file_does_not_matter() -> None:
    acl = AclFile.parse("topic deny a/secret\ntopic readwrite a/#\n")
    acl2 = AclFile.parse("topic readwrite a/#\ntopic deny a/secret\n")
    for a in (acl, acl2):
        assert a.can_publish("c", None, "a/open")
        assert not a.can_publish("c", None, "a/secret")


def test_pattern_deny_beats_user_grant() -> None:
    """Stricter than mosquitto (which checks user rules before pattern denies)."""
    acl = AclFile.parse("pattern deny private/%c\nuser u\ntopic readwrite private/#\n")
    assert acl.can_publish("other", "u", "private/mine")
    assert not acl.can_publish("mine", "u", "private/mine")


def test_deny_covering_a_wildcard_subscription_refuses_it() -> None:
    acl = AclFile.parse("topic read a/#\ntopic deny a/+/secret/#\n")
    assert not acl.can_subscribe("c", None, "a/+/secret/#")
    assert not acl.can_subscribe("c", None, "a/b/secret/x")
    assert acl.can_subscribe("c", None, "a/b/#")
    assert not acl.can_receive("c", None, "a/b/secret/x")
    assert acl.can_receive("c", None, "a/b/public")


def test_sys_topics_need_an_explicit_dollar_rule() -> None:
    acl = AclFile.parse("topic readwrite #\n")
    assert acl.can_publish("c", None, "any/topic")
    assert acl.can_subscribe("c", None, "#")
    assert not acl.can_receive("c", None, "$SYS/broker/uptime")
    assert not acl.can_subscribe("c", None, "$SYS/#")
    assert not acl.can_subscribe("c", None, "$SYS/broker/uptime")
    acl = AclFile.parse("topic readwrite #\ntopic read $SYS/broker/#\n")
    assert acl.can_receive("c", None, "$SYS/broker/uptime")
    assert acl.can_subscribe("c", None, "$SYS/broker/#")
    assert acl.can_subscribe("c", None, "$SYS/#")  # overlaps the granted part
    assert not acl.can_receive("c", None, "$SYS/other")
    assert not acl.can_publish("c", None, "$SYS/broker/uptime")


def test_leading_wildcard_filter_does_not_reach_dollar_rules() -> None:
    acl = AclFile.parse("topic read $SYS/broker/load\n")
    # [MQTT-4.7.2-1]: '+/broker/load' and '#' cannot deliver '$SYS/...' topics.
    assert not acl.can_subscribe("c", None, "+/broker/load")
    assert not acl.can_subscribe("c", None, "#")
    assert acl.can_subscribe("c", None, "$SYS/+/load")


@pytest.mark.parametrize(
    "filt, allowed",
    [
        ("a/+/c", True),
        ("a/b/c", True),
        ("a/#", True),
        ("+/+/c", True),
        ("#", True),
        ("a/b", False),
        ("b/#", False),
        ("a/+/d", False),
        ("a/b/c/d", False),
    ],
)
def test_wildcard_subscribe_checked_as_read_overlap(filt: str, allowed: bool) -> None:
    acl = AclFile.parse("topic read a/+/c\n")
    assert acl.can_subscribe("c", None, filt) is allowed


def test_write_only_grants_no_subscribe() -> None:
    acl = AclFile.parse("topic write out/#\n")
    assert acl.can_publish("c", None, "out/1")
    assert not acl.can_subscribe("c", None, "out/#")
    assert not acl.can_receive("c", None, "out/1")


def test_invalid_subscription_filter_refused() -> None:
    acl = AclFile.parse("topic read #\n")
    assert not acl.can_subscribe("c", None, "a/#/b")
    assert not acl.can_subscribe("c", None, "a+")
    assert not acl.can_subscribe("c", None, "")


def test_user_blocks_merge_and_unknown_users_are_denied() -> None:
    acl = AclFile.parse("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic write z\n")
    assert acl.can_receive("1", "a", "x") and acl.can_publish("1", "a", "z")
    assert not acl.can_receive("1", "a", "y")
    assert not acl.can_receive("1", "nobody", "x")
    assert not acl.can_receive("1", None, "x")  # no anonymous block at all


def test_comments_blank_lines_and_spacing() -> None:
    acl = AclFile.parse(
        "  # indented comment\n\n\tuser   spaced name  \ntopic   readwrite   a b/c  \n"
    )
    assert acl.can_publish("c", "spaced name", "a b/c")


@pytest.mark.parametrize(
    "line, message",
    [
        ("topic rw a/b", "invalid access"),
        ("topic", "missing topic"),
        ("user", "missing username"),
        ("topics read a", "unknown keyword"),
        ("topic read a/#/b", "invalid topic filter"),
        ("pattern write a+/%c", "invalid topic filter"),
    ],
)
def test_parse_errors_carry_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "acl"
    path.write_text("# header\ntopic read ok\n" + line + "\n")
    with pytest.raises(AclParseError) as info:
        AclFile.load(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_decisions_are_cached_per_client_but_correct() -> None:
    acl = AclFile.parse("pattern read in/%c/#\n")
    c1 = acl.for_client("c1", None)
    assert acl.for_client("c1", None) is c1
    for _ in range(3):
        assert c1.can_receive("in/c1/x") and not c1.can_receive("in/c2/x")
    for i in range(3000):  # bounded cache keeps answering correctly past its size
        assert c1.can_receive(f"in/c1/{i}")
