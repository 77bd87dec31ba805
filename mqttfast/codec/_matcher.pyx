# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""TopicTree: the subscription trie, Cython twin of ``_matcher_py``.

Same structure and visiting order as the pure twin (see its docstring): one
node per level, ``+`` and ``#`` in dedicated slots, a frontier walk over the
topic's levels, so both return identical lists.

What makes this one fast: match() never splits the topic into str objects.
It walks the topic's UTF-8 bytes (cached inside the str by CPython) level by
level, hashes each level once, and probes a small open-addressing table of
children kept beside the dict in every node. The frontier lives in two reused
C arrays, and each node keeps its (key, value) tuples ready, so a match
allocates only its result list.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

__all__ = ["TopicTree"]

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL


cdef struct Slot:
    uint64_t hash
    PyObject *key     # owned bytes: the level's UTF-8 (surrogatepass)
    PyObject *child   # borrowed: the node's children dict owns the _Node


cdef inline uint64_t _hash(const char *s, Py_ssize_t n) noexcept nogil:
    # FNV-1a: levels are short, and this needs no state or setup.
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>s[i]) * 1099511628211ULL
    return h


cdef inline bytes _level_bytes(str level):
    return level.encode("utf-8", "surrogatepass")


cdef class _Node:
    cdef dict children  # exact level (str) -> _Node, created lazily
    cdef _Node plus     # the "+" level
    cdef _Node hash     # the "#" level (only its subs are used)
    cdef dict subs      # key -> value of filters ending here
    cdef list items     # subs as (key, value) tuples; None when stale
    # The same children, by UTF-8 bytes, for match(): linear probing,
    # capacity a power of two, at most 3/4 full, backward-shift deletion.
    cdef Slot *table
    cdef Py_ssize_t cap
    cdef Py_ssize_t used

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.table != NULL:
            for i in range(self.cap):
                if self.table[i].key != NULL:
                    Py_DECREF(<object>self.table[i].key)
            PyMem_Free(self.table)

    cdef inline list entries(self):
        if self.items is None:
            self.items = list(self.subs.items()) if self.subs else []
        return self.items

    cdef inline bint is_empty(self):
        return not self.subs and not self.children and self.plus is None and self.hash is None

    cdef inline PyObject *find(self, const char *s, Py_ssize_t n, uint64_t h) noexcept:
        cdef Py_ssize_t mask = self.cap - 1, i
        cdef Slot *slot
        if self.used == 0:
            return NULL
        i = <Py_ssize_t>(h & <uint64_t>mask)
        while True:
            slot = &self.table[i]
            if slot.key == NULL:
                return NULL
            if (slot.hash == h and PyBytes_GET_SIZE(<object>slot.key) == n
                    and memcmp(PyBytes_AS_STRING(<object>slot.key), s, n) == 0):
                return slot.child
            i = (i + 1) & mask

    cdef int _place(self, uint64_t h, PyObject *key, PyObject *child) except -1:
        cdef Py_ssize_t mask = self.cap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>mask)
        while self.table[i].key != NULL:
            i = (i + 1) & mask
        self.table[i].hash = h
        self.table[i].key = key
        self.table[i].child = child
        return 0

    cdef int _resize(self, Py_ssize_t cap) except -1:
        cdef Slot *old = self.table
        cdef Py_ssize_t oldcap = self.cap, i
        cdef Slot *new = <Slot *>PyMem_Calloc(cap, sizeof(Slot))
        if new == NULL:
            raise MemoryError()
        self.table = new
        self.cap = cap
        for i in range(oldcap):
            if old[i].key != NULL:
                self._place(old[i].hash, old[i].key, old[i].child)
        PyMem_Free(old)
        return 0

    cdef _Node add_child(self, str level):
        """Create the exact child for level (it must not exist yet)."""
        cdef _Node child = _Node()
        cdef bytes key = _level_bytes(level)
        if self.children is None:
            self.children = {}
        if (self.used + 1) * 4 > self.cap * 3:
            self._resize(self.cap * 2 if self.cap else 4)
        self.children[level] = child  # the dict owns the child
        Py_INCREF(key)
        self._place(_hash(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), <PyObject *>key,
                    <PyObject *>child)
        self.used += 1
        return child

    cdef int drop_child(self, str level) except -1:
        """Unlink the exact child for level (it must exist)."""
        cdef bytes key = _level_bytes(level)
        cdef const char *s = PyBytes_AS_STRING(key)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
        cdef uint64_t h = _hash(s, n)
        cdef Py_ssize_t mask = self.cap - 1, i, j, ideal
        cdef Slot *slot
        i = <Py_ssize_t>(h & <uint64_t>mask)
        while True:
            slot = &self.table[i]
            if slot.key == NULL:
                raise KeyError(level)  # table and dict disagree: a bug
            if (slot.hash == h and PyBytes_GET_SIZE(<object>slot.key) == n
                    and memcmp(PyBytes_AS_STRING(<object>slot.key), s, n) == 0):
                break
            i = (i + 1) & mask
        Py_DECREF(<object>slot.key)
        # Backward-shift: pull later entries of the probe run into the hole.
        j = i
        while True:
            j = (j + 1) & mask
            if self.table[j].key == NULL:
                break
            ideal = <Py_ssize_t>(self.table[j].hash & <uint64_t>mask)
            if (j > i and (ideal <= i or ideal > j)) or (j < i and (ideal <= i and ideal > j)):
                self.table[i] = self.table[j]
                i = j
        self.table[i].key = NULL
        self.table[i].child = NULL
        self.table[i].hash = 0
        self.used -= 1
        del self.children[level]
        if not self.children:
            self.children = None
            PyMem_Free(self.table)
            self.table = NULL
            self.cap = 0
        return 0


cdef class TopicTree:
    """Maps (topic filter, key) to a value and finds every filter matching a topic.

    ``match`` obeys [MQTT-4.7.2-1]: a filter starting with ``+`` or ``#`` does
    not match a topic starting with ``$``. Filters are not validated here.
    Not thread-safe without the GIL (match borrows references).
    """

    cdef _Node _root
    cdef Py_ssize_t _count
    # Two frontier buffers of borrowed node pointers, reused by every match().
    # Borrowing is safe: match() runs no Python code that could change the tree.
    cdef PyObject **_front
    cdef PyObject **_next
    cdef Py_ssize_t _cap

    def __cinit__(self):
        self._root = _Node()
        self._count = 0
        self._cap = 64
        self._front = <PyObject **>PyMem_Malloc(self._cap * sizeof(PyObject *))
        self._next = <PyObject **>PyMem_Malloc(self._cap * sizeof(PyObject *))
        if self._front == NULL or self._next == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._front)
        PyMem_Free(self._next)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self._cap * 2
        cdef PyObject **a = <PyObject **>PyMem_Realloc(self._front, cap * sizeof(PyObject *))
        if a == NULL:
            raise MemoryError()
        self._front = a
        a = <PyObject **>PyMem_Realloc(self._next, cap * sizeof(PyObject *))
        if a == NULL:
            raise MemoryError()
        self._next = a
        self._cap = cap
        return 0

    def __len__(self):
        return self._count

    def insert(self, str filt, key, value):
        """Store value for (filt, key). True if the pair was new."""
        cdef _Node node = self._root, nxt
        cdef str level
        for level in filt.split("/"):
            if level == "+":
                nxt = node.plus
                if nxt is None:
                    nxt = node.plus = _Node()
            elif level == "#":
                nxt = node.hash
                if nxt is None:
                    nxt = node.hash = _Node()
            else:
                nxt = node.children.get(level) if node.children is not None else None
                if nxt is None:
                    nxt = node.add_child(level)
            node = nxt
        if node.subs is None:
            node.subs = {}
        cdef bint is_new = key not in node.subs
        node.subs[key] = value
        node.items = None
        if is_new:
            self._count += 1
        return is_new

    cdef _Node _find(self, str filt):
        cdef _Node node = self._root
        cdef str level
        for level in filt.split("/"):
            if level == "+":
                node = node.plus
            elif level == "#":
                node = node.hash
            else:
                node = node.children.get(level) if node.children else None
            if node is None:
                return None
        return node

    def get(self, str filt, key, default=None):
        """The value stored for (filt, key), or default."""
        cdef _Node node = self._find(filt)
        if node is None or not node.subs:
            return default
        return node.subs.get(key, default)

    def remove(self, str filt, key):
        """Forget (filt, key). True if it existed. Empty nodes are pruned."""
        cdef list path = []
        cdef _Node node = self._root, nxt, parent
        cdef str level
        for level in filt.split("/"):
            path.append((node, level))
            if level == "+":
                nxt = node.plus
            elif level == "#":
                nxt = node.hash
            else:
                nxt = node.children.get(level) if node.children else None
            if nxt is None:
                return False
            node = nxt
        if not node.subs or key not in node.subs:
            return False
        del node.subs[key]
        node.items = None
        self._count -= 1
        if not node.subs:
            node.subs = None
        for parent, level in reversed(path):
            if not node.is_empty():
                break
            if level == "+":
                parent.plus = None
            elif level == "#":
                parent.hash = None
            else:
                parent.drop_child(level)
            node = parent
        return True

    def match(self, str topic):
        """(key, value) for every stored (filter, key) whose filter matches topic.

        One entry per (filter, key); the caller merges duplicates per key.
        """
        cdef list result = []
        cdef _Node root = self._root
        cdef _Node node, h
        cdef PyObject *child
        cdef PyObject **swap
        cdef Py_ssize_t j, nfront = 1, nnext, n, start = 0, end
        cdef const char *s
        cdef const char *slash
        cdef uint64_t lh
        cdef bytes raw
        try:
            s = PyUnicode_AsUTF8AndSize(topic, &n)
        except UnicodeEncodeError:  # lone surrogates: compare their surrogatepass bytes
            raw = _level_bytes(topic)
            s = PyBytes_AS_STRING(raw)
            n = PyBytes_GET_SIZE(raw)
        # [MQTT-4.7.2-1]: no leading wildcard for "$" topics.
        cdef bint wild = n == 0 or s[0] != b'$'
        self._front[0] = <PyObject *>root
        while True:
            slash = <const char *>memchr(s + start, b'/', <size_t>(n - start))
            end = (slash - s) if slash != NULL else n
            lh = _hash(s + start, end - start)
            nnext = 0
            for j in range(nfront):
                # Each node adds at most two: keep room for both.
                if nnext + 2 > self._cap:
                    self._grow()
                node = <_Node>self._front[j]
                if wild or node is not root:
                    h = node.hash
                    if h is not None and h.subs:
                        result.extend(h.entries())
                    if node.plus is not None:
                        self._next[nnext] = <PyObject *>node.plus
                        nnext += 1
                child = node.find(s + start, end - start, lh)
                if child != NULL:
                    self._next[nnext] = child
                    nnext += 1
            if nnext == 0:
                return result
            swap = self._front
            self._front = self._next
            self._next = swap
            nfront = nnext
            if slash == NULL:
                break
            start = end + 1
        for j in range(nfront):
            node = <_Node>self._front[j]
            if node.subs:
                result.extend(node.entries())
            h = node.hash  # "a/#" also matches "a"
            if h is not None and h.subs:
                result.extend(h.entries())
        return result
