"""Topic <-> subject mapping (mqttfast.cluster.subjects): no NATS needed here."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttfast.cluster.subjects import (
    delivers,
    filter_to_subjects,
    subject_to_topic,
    topic_to_subject,
)
from mqttfast.codec import topic_matches

# nats-server's MQTT listener (server/mqtt.go, mqttToNATSSubjectConversion) on the
# topics it accepts; with an empty prefix ours must be the same subject.
NATS_SERVER_CASES = [
    ("foo", "foo"),
    ("foo/bar", "foo.bar"),
    ("/foo", "/.foo"),
    ("foo/", "foo./"),
    ("foo//bar", "foo./.bar"),
    ("/", "/./"),
    ("//", "/././"),
    ("foo.bar/baz", "foo//bar.baz"),
    ("$SYS/broker", "$SYS.broker"),
    ("a/b.c./d", "a.b//c//.d"),
    ("ünï/cödé", "ünï.cödé"),
]


@pytest.mark.parametrize("topic,subject", NATS_SERVER_CASES)
def test_same_subject_as_nats_server(topic: str, subject: str) -> None:
    assert topic_to_subject(topic, "") == subject
    assert topic_to_subject(topic) == "mqtt." + subject
    assert subject_to_topic(subject, "") == topic


@pytest.mark.parametrize(
    "topic", ["a b", "a/*/b", "a/>", "*", ">", "tab\there", "a/\x7f", "a/ /c", "x/*y/>z"]
)
def test_topics_nats_server_refuses_are_escaped_and_reversible(topic: str) -> None:
    subject = topic_to_subject(topic)
    assert not any(c in subject for c in " \t\r\n\f\x7f")
    assert "*" not in subject.split(".") and ">" not in subject.split(".")
    assert subject_to_topic(subject) == topic


def test_parent_level_for_multi_level_wildcard() -> None:
    """[MQTT-4.7.1-2] 'a/#' also matches 'a'."""
    assert filter_to_subjects("a/#") == ["mqtt.a.>", "mqtt.a"]
    assert filter_to_subjects("#") == ["mqtt.>"]
    assert filter_to_subjects("+/x/+") == ["mqtt.*.x.*"]
    assert delivers("a/#", "a") and delivers("a/#", "a/") and not delivers("a/#", "ab")


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    """[MQTT-4.7.2-1]"""
    assert not delivers("#", "$SYS/x")
    assert not delivers("+/x", "$SYS/x")
    assert delivers("$SYS/#", "$SYS/x")


levels = st.one_of(
    st.sampled_from(["", "a", "b", ".", "a.b", " ", "*", ">", "$x", "é", "a b", "~", "/~"[1:]]),
    st.text(min_size=0, max_size=4).filter(
        lambda s: "/" not in s and "\x00" not in s and "+" not in s and "#" not in s
    ),
)
topics = st.lists(levels, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def filters(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(levels, st.just("+")), min_size=1, max_size=5))
    if draw(st.booleans()):
        parts.append("#")
    return "/".join(parts) or "+"


@settings(max_examples=500, deadline=None)
@given(topics)
def test_mapping_is_reversible(topic: str) -> None:
    for prefix in ("mqtt", "", "p.q"):
        assert subject_to_topic(topic_to_subject(topic, prefix), prefix) == topic


@settings(max_examples=500, deadline=None)
@given(topics, topics)
def test_mapping_is_injective(t1: str, t2: str) -> None:
    assert (topic_to_subject(t1) == topic_to_subject(t2)) == (t1 == t2)


@settings(max_examples=1500, deadline=None)
@given(filters(), topics)
def test_delivered_via_subjects_iff_topic_matches(topic_filter: str, topic: str) -> None:
    assert delivers(topic_filter, topic) == topic_matches(topic_filter, topic)


@settings(max_examples=800, deadline=None)
@given(filters(), topics)
def test_delivered_iff_matches_on_matching_topics(topic_filter: str, topic: str) -> None:
    """Same property on topics built from the filter, so matches are frequent."""
    concrete = "/".join(
        "x" if lv == "+" else ("y/z" if lv == "#" else lv) for lv in topic_filter.split("/")
    )
    if concrete:
        assert delivers(topic_filter, concrete) == topic_matches(topic_filter, concrete)
