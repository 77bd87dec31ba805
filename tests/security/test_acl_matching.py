"""The ACL's filter algebra checked exhaustively against a finite topic universe, and its
topic matching against the codec's ``topic_matches`` (4.7)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttfast.app.security.acl import _covers, _matches, _overlaps

pytestmark = pytest.mark.timeout(120)

# Filters use levels a/b; the universe adds c so a literal level can always be escaped.
UNIVERSE = ["/".join(p) for n in range(1, 5) for p in itertools.product("abc", repeat=n)]


@st.composite
def filters(draw) -> str:
    n = draw(st.integers(1, 3))
    levels = [draw(st.sampled_from(["a", "b", "+"])) for _ in range(n)]
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


def matched(filt: str) -> set[str]:
    levels = filt.split("/")
    return {t for t in UNIVERSE if _matches(levels, t.split("/"))}


@settings(max_examples=300, deadline=None)
@given(filters(), filters())
def test_covers_and_overlaps_agree_with_enumeration(rule: str, filt: str) -> None:
    r, f = rule.split("/"), filt.split("/")
    by_rule, by_filter = matched(rule), matched(filt)
    assert _overlaps(r, f) == bool(by_rule & by_filter), (rule, filt)
    assert _covers(r, f) == (by_filter <= by_rule), (rule, filt)


@settings(max_examples=300, deadline=None)
@given(filters(), st.sampled_from(UNIVERSE))
def test_matching_agrees_with_codec_topic_matches(filt: str, topic: str) -> None:
    from mqttfast.codec import topic_matches

    assert _matches(filt.split("/"), topic.split("/")) == topic_matches(filt, topic)
