# cython: language_level=3, boundscheck=False, wraparound=False
"""TopicTree: the subscription trie, Cython twin of ``_matcher_py``.

Same structure and visiting order as the pure twin (see its docstring): one
node per level, ``+`` and ``#`` in dedicated slots, a frontier walk over the
topic's levels. Here nodes are C structs behind cdef classes, the walk uses
borrowed dict lookups, and each node keeps its (key, value) tuples ready so a
match only appends existing objects.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free

__all__ = ["TopicTree"]


cdef class _Node:
    cdef dict children  # exact level -> _Node, created lazily
    cdef _Node plus     # the "+" level
    cdef _Node hash     # the "#" level (only its subs are used)
    cdef dict subs      # key -> value of filters ending here
    cdef list items     # subs as (key, value) tuples; None when stale

    cdef inline list entries(self):
        if self.items is None:
            self.items = list(self.subs.items()) if self.subs else []
        return self.items

    cdef inline bint is_empty(self):
        return not self.subs and not self.children and self.plus is None and self.hash is None


cdef class TopicTree:
    """Maps (topic filter, key) to a value and finds every filter matching a topic.

    ``match`` obeys [MQTT-4.7.2-1]: a filter starting with ``+`` or ``#`` does
    not match a topic starting with ``$``. Filters are not validated here.
    """

    cdef _Node _root
    cdef Py_ssize_t _count
    # Two frontier buffers of borrowed node pointers, reused by every match():
    # no list per level. Borrowing is safe because match() runs no Python code
    # that could change the tree (str hashing/equality and list.extend only).
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
                if node.children is None:
                    node.children = {}
                nxt = node.children.get(level)
                if nxt is None:
                    nxt = _Node()
                    node.children[level] = nxt
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
                del parent.children[level]
                if not parent.children:
                    parent.children = None
            node = parent
        return True

    def match(self, str topic):
        """(key, value) for every stored (filter, key) whose filter matches topic.

        One entry per (filter, key); the caller merges duplicates per key.
        """
        cdef list result = []
        cdef list levels = topic.split("/")
        cdef _Node root = self._root
        cdef _Node node, h
        cdef PyObject *child
        cdef PyObject **swap
        cdef Py_ssize_t i, j, nlevels = PyList_GET_SIZE(levels), nfront = 1, nnext
        cdef object level
        # [MQTT-4.7.2-1]: no leading wildcard for "$" topics.
        cdef bint wild = PyUnicode_GET_LENGTH(topic) == 0 or PyUnicode_READ_CHAR(topic, 0) != 36
        self._front[0] = <PyObject *>root
        for i in range(nlevels):
            level = <object>PyList_GET_ITEM(levels, i)
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
                if node.children is not None:
                    child = PyDict_GetItem(node.children, level)
                    if child is not NULL:
                        self._next[nnext] = child
                        nnext += 1
            if nnext == 0:
                return result
            swap = self._front
            self._front = self._next
            self._next = swap
            nfront = nnext
        for j in range(nfront):
            node = <_Node>self._front[j]
            if node.subs:
                result.extend(node.entries())
            h = node.hash  # "a/#" also matches "a"
            if h is not None and h.subs:
                result.extend(h.entries())
        return result
