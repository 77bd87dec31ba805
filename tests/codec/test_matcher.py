"""TopicTree, the subscription trie (both twins): insert/remove/get/match,
pruning, overlapping filters, '$' topics [MQTT-4.7.2-1], and agreement with
topic_matches on generated filters and topics."""

from __future__ import annotations

import gc
import importlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS


def _matched(tree, topic) -> Counter:
    return Counter(tree.match(topic))


def test_insert_reports_new_and_replaces_value(impl):
    t = impl.TopicTree()
    assert len(t) == 0
    assert t.insert("a/b", "c1", 1) is True
    assert t.insert("a/b", "c1", 2) is False  # same (filter, key): value replaced
    assert len(t) == 1
    assert t.get("a/b", "c1") == 2
    assert t.match("a/b") == [("c1", 2)]
    assert t.insert("a/b", "c2", 0) is True
    assert t.insert("a/+", "c1", 1) is True
    assert len(t) == 3


def test_get_default(impl):
    t = impl.TopicTree()
    t.insert("a/#", "k", "v")
    assert t.get("a/#", "k") == "v"
    assert t.get("a/#", "other") is None
    assert t.get("a/#", "other", 7) == 7
    assert t.get("a", "k", "d") == "d"
    assert t.get("a/+", "k") is None
    assert t.get("zz/top", "k") is None


def test_remove_existing_and_missing(impl):
    t = impl.TopicTree()
    t.insert("a/b", "c1", 1)
    t.insert("a/b", "c2", 1)
    assert t.remove("a/b", "c3") is False
    assert t.remove("a/c", "c1") is False
    assert t.remove("a", "c1") is False  # a prefix node is not a filter
    assert t.remove("a/b", "c1") is True
    assert t.remove("a/b", "c1") is False
    assert len(t) == 1
    assert t.match("a/b") == [("c2", 1)]


def test_match_one_entry_per_filter_and_key(impl):
    """Overlapping subscriptions are all reported; the broker merges per
    client and delivers once at the highest QoS [MQTT-3.3.5-1]."""
    t = impl.TopicTree()
    t.insert("sport/tennis/player1/#", "c1", 0)
    t.insert("sport/+/player1", "c1", 1)
    t.insert("sport/#", "c1", 2)
    t.insert("#", "c2", 0)
    t.insert("sport/tennis/player1", "c3", 1)
    got = _matched(t, "sport/tennis/player1")
    assert got == Counter({("c1", 0): 1, ("c1", 1): 1, ("c1", 2): 1, ("c2", 0): 1, ("c3", 1): 1})
    assert _matched(t, "sport/tennis/player1/ranking") == Counter(
        {("c1", 0): 1, ("c1", 2): 1, ("c2", 0): 1}
    )
    assert _matched(t, "sport") == Counter({("c1", 2): 1, ("c2", 0): 1})
    assert _matched(t, "finance") == Counter({("c2", 0): 1})


@pytest.mark.parametrize(
    "filt,topic,expected",
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/#", "sport", True),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("a//b", "a//b", True),
        ("+//+", "a//b", True),
    ],
)
def test_match_spec_examples_4_7(impl, filt, topic, expected):
    t = impl.TopicTree()
    t.insert(filt, "k", 1)
    assert (t.match(topic) == [("k", 1)]) is expected


@pytest.mark.parametrize(
    "filt,expected",
    [
        ("#", False),
        ("+/monitor/Clients", False),
        ("+/#", False),
        ("$SYS/#", True),
        ("$SYS/monitor/+", True),
        ("$SYS/monitor/Clients", True),
    ],
)
def test_dollar_topics_not_matched_by_leading_wildcard_MQTT_4_7_2_1(impl, filt, expected):
    """[MQTT-4.7.2-1] Filters starting with '#' or '+' don't match '$' topics."""
    t = impl.TopicTree()
    t.insert(filt, "k", 1)
    assert bool(t.match("$SYS/monitor/Clients")) is expected


def test_wildcard_after_dollar_level_still_matches(impl):
    t = impl.TopicTree()
    t.insert("$SYS/#", "a", 1)
    t.insert("$SYS/+/x", "b", 1)
    t.insert("+/+/x", "c", 1)
    assert _matched(t, "$SYS/q/x") == Counter({("a", 1): 1, ("b", 1): 1})
    assert _matched(t, "SYS/q/x") == Counter({("c", 1): 1})


def _node_count(tree) -> int:
    """Nodes reachable from the root, through the twin's own structure."""
    root = tree._root if hasattr(tree, "_root") else None
    if root is None:
        return -1  # the Cython twin hides its nodes; see test_prune_* below
    stack, n = [root], 0
    while stack:
        node = stack.pop()
        n += 1
        stack.extend((node.children or {}).values())
        stack.extend(x for x in (node.plus, node.hash) if x is not None)
    return n


def test_remove_prunes_empty_nodes_pure():
    from mqttfast.codec._matcher_py import TopicTree

    t = TopicTree()
    t.insert("a/b/c/d", "k", 1)
    t.insert("a/+/#", "k", 1)
    t.insert("a/b", "k2", 1)
    assert _node_count(t) == 7  # root, a, b, c, d, +, #
    t.remove("a/b/c/d", "k")
    assert _node_count(t) == 5  # c and d pruned, b kept (a/b has a subscriber)
    t.remove("a/+/#", "k")
    assert _node_count(t) == 3
    t.remove("a/b", "k2")
    assert _node_count(t) == 1 and len(t) == 0


def test_remove_prunes_memory_is_bounded(impl):
    """Churn of distinct filters leaves nothing behind once removed: the
    number of live objects returns to where it started (both twins)."""
    t = impl.TopicTree()
    t.insert("keep/this", "k", 1)
    for i in range(200):  # warm-up allocator caches
        t.insert(f"x/{i}/+/#", "k", i)
        t.remove(f"x/{i}/+/#", "k")
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        f = f"churn/{i}/+/leaf{i}/#"
        t.insert(f, ("client", i), i)
        t.match(f"churn/{i}/x/leaf{i}/y")
        assert t.remove(f, ("client", i)) is True
    gc.collect()
    after = len(gc.get_objects())
    assert after - before < 200, (before, after)
    assert len(t) == 1
    assert t.match("keep/this") == [("k", 1)]
    assert t.match("churn/1/x/leaf1/y") == []


def test_remove_then_match_after_value_change(impl):
    """The per-node cache of (key, value) pairs follows inserts and removes."""
    t = impl.TopicTree()
    t.insert("a/#", "k1", 1)
    assert t.match("a/b") == [("k1", 1)]
    t.insert("a/#", "k1", 2)
    t.insert("a/#", "k2", 3)
    assert t.match("a/b") == [("k1", 2), ("k2", 3)]
    t.remove("a/#", "k1")
    assert t.match("a/b") == [("k2", 3)]


def test_tuple_keys_for_shared_subscriptions(impl):
    t = impl.TopicTree()
    t.insert("a/+", ("$share", "g1", "c1"), 1)
    t.insert("a/+", ("$share", "g1", "c2"), 1)
    assert sorted(k for k, _ in t.match("a/x")) == [("$share", "g1", "c1"), ("$share", "g1", "c2")]


def test_deep_topics_do_not_recurse(impl):
    """Topics may have ~32k levels within 65,535 bytes; the walk is iterative."""
    t = impl.TopicTree()
    deep = "/".join(["a"] * 30_000)
    t.insert(deep, "k", 1)
    t.insert("+/" * 20_000 + "#", "w", 1)
    assert _matched(t, deep) == Counter({("k", 1): 1, ("w", 1): 1})
    assert t.remove(deep, "k") is True


def test_many_plus_levels_wide_frontier(impl):
    """Frontier growth beyond the initial buffer (Cython twin grows it)."""
    t = impl.TopicTree()
    n = 0
    for mask in range(1 << 8):
        lv = ["+" if mask >> i & 1 else f"l{i}" for i in range(8)]
        t.insert("/".join(lv), mask, 1)
        n += 1
    got = t.match("/".join(f"l{i}" for i in range(8)))
    assert len(got) == n == 256


_level = st.sampled_from(["a", "b", "", "$s", "é"])
_topics = st.lists(_level, min_size=1, max_size=5).map("/".join)
_filters = st.lists(
    st.sampled_from(["a", "b", "", "+", "$s", "é"]), min_size=1, max_size=5
).flatmap(lambda lv: st.booleans().map(lambda h: "/".join(lv + (["#"] if h else []))))


@given(
    st.lists(_filters, min_size=1, max_size=25, unique=True),
    st.lists(_topics, min_size=1, max_size=10),
)
@settings(max_examples=200, deadline=None)
def test_tree_agrees_with_topic_matches(impl, filters, topics):
    t = impl.TopicTree()
    for i, f in enumerate(filters):
        t.insert(f, i, f)
    for topic in topics:
        expected = Counter((i, f) for i, f in enumerate(filters) if impl.topic_matches(f, topic))
        assert _matched(t, topic) == expected
    # remove half, check again, then remove all: empty
    for f in filters[::2]:
        assert t.remove(f, filters.index(f)) is True
    remaining = [(i, f) for i, f in enumerate(filters) if i % 2]
    for topic in topics:
        expected = Counter((i, f) for i, f in remaining if impl.topic_matches(f, topic))
        assert _matched(t, topic) == expected
    for i, f in remaining:
        assert t.remove(f, i) is True
    assert len(t) == 0
    assert all(t.match(topic) == [] for topic in topics)


@pytest.mark.skipif(NO_EXTENSIONS, reason="MQTTFAST_NO_EXTENSIONS=1: only the pure twin exists")
@given(st.lists(_filters, min_size=1, max_size=25), st.lists(_topics, min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_cython_and_pure_trees_return_identical_lists(filters, topics):
    """Same entries in the same order, so swapping twins changes nothing."""
    cy = importlib.import_module("mqttfast.codec._matcher").TopicTree()
    py = importlib.import_module("mqttfast.codec._matcher_py").TopicTree()
    for i, f in enumerate(filters):
        assert cy.insert(f, i % 3, i) == py.insert(f, i % 3, i)
    assert len(cy) == len(py)
    for topic in topics:
        assert cy.match(topic) == py.match(topic)
    for i, f in enumerate(filters):
        assert cy.remove(f, i % 3) == py.remove(f, i % 3)
        assert cy.get(f, i % 3, "gone") == py.get(f, i % 3, "gone")


def test_many_siblings_survive_random_removals(impl):
    """Thousands of exact children under one node, removed in random order:
    every remaining one is still found and removed ones are gone (exercises
    the Cython twin's child table growth and backward-shift deletion)."""
    import random

    rng = random.Random(5)
    t = impl.TopicTree()
    names = [f"dev-{i}-{'é' * (i % 3)}" for i in range(3000)]
    for name in names:
        t.insert(f"site/{name}/temp", name, 1)
    rng.shuffle(names)
    gone, kept = names[:2000], names[2000:]
    for name in gone:
        assert t.remove(f"site/{name}/temp", name) is True
    assert len(t) == len(kept)
    for name in kept:
        assert t.match(f"site/{name}/temp") == [(name, 1)]
    for name in gone:
        assert t.match(f"site/{name}/temp") == []
    for name in kept:
        assert t.remove(f"site/{name}/temp", name) is True
    assert len(t) == 0 and t.match(f"site/{kept[0]}/temp") == []
    t.insert("site/again/temp", "k", 2)  # a pruned node can grow back
    assert t.match("site/again/temp") == [("k", 2)]


@pytest.mark.parametrize("level", ["", "é", "日本", "\U0002a6d4", "a\ud800", "$x"])
def test_exact_levels_of_any_text(impl, level):
    """Levels are compared as text, whatever their UTF-8 length (and a str
    with a lone surrogate behaves the same in both twins)."""
    t = impl.TopicTree()
    t.insert(f"x/{level}/y", "k", 1)
    t.insert(f"{level}", "top", 1)
    assert t.match(f"x/{level}/y") == [("k", 1)]
    assert t.match(f"x/{level}z/y") == []
    assert t.match(level) == [("top", 1)]
    assert t.remove(f"x/{level}/y", "k") is True
    assert t.match(f"x/{level}/y") == []
