"""Decoder strictness added for issue 14, on both twins (``impl``) and differentially
(``twins``: same packets, same reason code, same message, whatever the input).

* Empty topic filters in SUBSCRIBE / UNSUBSCRIBE are malformed [MQTT-4.7.3-1].
* Control characters U+0001-U+001F and U+007F-U+009F (1.5.4) in topic names, topic
  filters, client identifier, user name and will topic are malformed (0x81; 0x85 for
  the client identifier) when ``allow_control_characters`` is false; accepted when it
  is true (the codec's default). U+0000 and surrogates are malformed either way
  [MQTT-1.5.4-1] [MQTT-1.5.4-2].
* An MQTT 3.1 CONNECT may carry fixed-header flag bits and the reserved CONNECT flag;
  3.1.1 and 5.0 may not [MQTT-2.1.3-1] [MQTT-3.1.2-3].
* A server-side decoder that fails on a CONNECT knows the version it announced.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS
from mqttfast.codec import MQTTError
from mqttfast.codec.packets import Connect, Publish, Subscribe, Subscription, Unsubscribe, Will

pytestmark = pytest.mark.timeout(180)

_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]")
# Mostly ordinary text with controls, C1, non-characters and astral characters mixed in.
_chars = st.one_of(
    st.sampled_from("abz/ü€\U0001f600\ufffe\ufdd0\xa0\x80\x9f\x85\x7f\x01\x1f\t\n"),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
)
texts = st.text(_chars, min_size=1, max_size=10)


def outcome(dec: Any, data: bytes) -> tuple[list[Any], int | None, str | None]:
    try:
        return dec.feed(data), None, None
    except MQTTError as err:
        return err.packets, int(err.reason_code), err.message


def cases(draw: Any, version: int) -> tuple[str, Any, dict[str, int]]:
    """One packet whose strings come from ``texts``; returns (kind, packet, field -> code)."""
    kind = draw(st.sampled_from(["publish", "subscribe", "unsubscribe", "connect"]))
    if kind == "publish":
        topic = draw(texts)
        return kind, Publish(topic, b"p", 1, packet_id=1), {topic: 0x81}
    if kind == "subscribe":
        filters = draw(st.lists(texts, min_size=1, max_size=3))
        subs = [Subscription(f, 1) for f in filters]
        return kind, Subscribe(1, subs), {f: 0x81 for f in filters}
    if kind == "unsubscribe":
        filters = draw(st.lists(texts, min_size=1, max_size=3))
        return kind, Unsubscribe(1, filters), {f: 0x81 for f in filters}
    cid, user, wtopic = draw(texts), draw(st.none() | texts), draw(st.none() | texts)
    will = Will(wtopic, b"w") if wtopic is not None else None
    checks = {cid: 0x85}
    for value in (wtopic, user):  # decoded in this order after the client id
        if value is not None:
            checks.setdefault(value, 0x81)
    pkt = Connect(cid, version, True, 30, user, b"pw" if user is not None else None, will)
    return kind, pkt, checks


@st.composite
def strict_cases(draw: Any) -> tuple[int, str, Any, dict[str, int]]:
    version = draw(st.sampled_from((3, 4, 5)))
    return (version, *cases(draw, version))


def _decoder(mod: Any, kind: str, version: int, allow: bool) -> Any:
    dec = mod.Decoder(None if kind == "connect" else version, allow_control_characters=allow)
    return dec


@_SETTINGS
@given(case=strict_cases(), allow=st.booleans())
def test_control_characters(impl: Any, case: tuple[int, str, Any, dict[str, int]], allow: bool):
    """1.5.4: with allow_control_characters false the first string holding a control
    character makes the packet malformed (0x85 for a client identifier, else 0x81);
    with it true the packet decodes as sent."""
    version, kind, pkt, checks = case
    data = impl.encode(pkt, version)
    packets, code, _ = outcome(_decoder(impl, kind, version, allow), data)
    bad = [c for s, c in checks.items() if CONTROL.search(s)]
    if allow or not bad:
        assert (packets, code) == ([pkt], None)
    else:
        assert (packets, code) == ([], bad[0])


def _twins() -> tuple[Any, Any]:
    if NO_EXTENSIONS:
        pytest.skip("MQTTFAST_NO_EXTENSIONS is set: only the pure twin is under test")
    return (
        importlib.import_module("mqttfast.codec._codec"),
        importlib.import_module("mqttfast.codec._codec_py"),
    )


@_SETTINGS
@given(case=strict_cases(), allow=st.booleans(), cut=st.integers(0, 40))
def test_twins_agree_on_control_characters(
    case: tuple[int, str, Any, dict[str, int]], allow: bool, cut: int
) -> None:
    """Cython and pure twins: same packets, reason code and message for every string and
    setting, whole or split in two feeds."""
    cy, py = _twins()
    version, kind, pkt, _ = case
    data = py.encode(pkt, version)
    for chunks in ([data], [data[:cut], data[cut:]]):
        results = []
        for mod in (cy, py):
            dec = _decoder(mod, kind, version, allow)
            got: list[Any] = []
            res: tuple[list[Any], int | None, str | None] = ([], None, None)
            for chunk in chunks:
                res = outcome(dec, chunk)
                got += res[0]
                if res[1] is not None:
                    break
            results.append((got, res[1], res[2]))
        assert results[0] == results[1]


@_SETTINGS
@given(raw=st.binary(min_size=1, max_size=12), allow=st.booleans(), version=st.sampled_from((4, 5)))
def test_twins_agree_on_raw_topic_bytes(raw: bytes, allow: bool, version: int) -> None:
    """Any bytes as a PUBLISH topic (NUL, surrogates, overlong forms, controls): both twins
    give the same answer; NUL and ill-formed UTF-8 are malformed even when allowed."""
    cy, py = _twins()
    body = len(raw).to_bytes(2, "big") + raw + (b"\x00" if version == 5 else b"") + b"x"
    data = bytes((0x30, len(body))) + body
    results = [
        outcome(mod.Decoder(version, allow_control_characters=allow), data) for mod in (cy, py)
    ]
    assert results[0] == results[1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        assert results[1][1] == 0x81


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("filters", [[""], ["", "a"], ["a", ""], ["a", "b", ""]])
def test_empty_filter_is_malformed(impl: Any, kind: str, version: int, filters: list[str]) -> None:
    """[MQTT-4.7.3-1] topic filters are at least one character long, first or later."""
    if kind == "subscribe":
        pkt: Any = Subscribe(7, [Subscription(f, 0) for f in filters])
    else:
        pkt = Unsubscribe(7, filters)
    packets, code, message = outcome(impl.Decoder(version), impl.encode(pkt, version))
    assert (packets, code, message) == ([], 0x81, "empty topic filter [MQTT-4.7.3-1]")


@pytest.mark.parametrize("nibble", range(16))
@pytest.mark.parametrize("reserved", [False, True])
@pytest.mark.parametrize("version", [3, 4, 5])
def test_connect_flag_bits_only_tolerated_for_mqtt31(
    impl: Any, nibble: int, reserved: bool, version: int
) -> None:
    """MQTT 3.1 did not call fixed-header flag bits or the reserved CONNECT flag errors
    (mosquitto accepts them); 3.1.1 and 5.0 do [MQTT-2.1.3-1] [MQTT-3.1.2-3]."""
    pkt = Connect("dev", version, True, 30)
    data = bytearray(impl.encode(pkt, version))
    data[0] |= nibble
    if reserved:
        data[2 + (8 if version == 3 else 6) + 1] |= 0x01
    dec = impl.Decoder()
    packets, code, _ = outcome(dec, bytes(data))
    if version == 3 or (nibble == 0 and not reserved):
        assert (packets, code) == ([pkt], None)
    else:
        assert (packets, code) == ([], 0x81)
    assert dec.protocol_version == version  # known even when the CONNECT failed


def test_failed_connect_without_a_known_version_leaves_it_unknown(impl: Any) -> None:
    """A CONNECT naming no supported protocol leaves protocol_version None."""
    dec = impl.Decoder()
    data = bytearray(impl.encode(Connect("x", 4, True, 30), 4))
    data[4:8] = b"MQTX"
    assert outcome(dec, bytes(data))[1] == 0x82
    assert dec.protocol_version is None


def test_setting_is_a_plain_attribute(impl: Any) -> None:
    """``allow_control_characters`` may be changed between feeds, like max_packet_size."""
    dec = impl.Decoder(4)
    assert dec.allow_control_characters is True
    assert dec.feed(impl.encode(Publish("a\x01", b""), 4))[0].topic == "a\x01"
    dec.allow_control_characters = False
    assert outcome(dec, impl.encode(Publish("a\x01", b""), 4))[1] == 0x81
