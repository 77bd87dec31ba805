# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Streaming MQTT decoder and packet encoders (Cython twin of ``_codec_py``).

Same public names, signatures, behaviour and order of checks as the pure
twin; read ``_codec_py`` for the documented choices. This twin parses
straight from the caller's buffer (no copy when no partial packet is
pending), validates strings with the C kernels in csrc/, and builds packet
objects by filling their ``__slots__`` directly (see ``_SlotFiller``), which
is where most of its speed over the pure twin comes from.
"""

import copy

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
    PyByteArray_Resize,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcpy, memset

from mqttfast.codec._kernels cimport (
    MQF_UTF8_INVALID,
    MQF_UTF8_NUL,
    mqf_utf8_has_control,
    mqf_utf8_validate,
)

from .constants import (
    AUTH_REASON_CODES,
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    MAX_PACKET_SIZE,
    PROPERTY_TABLE,
    SUBACK_REASON_CODES,
    UNSUBACK_REASON_CODES,
    PacketType,
    ReasonCode,
)
from .errors import (
    MSG_CONTROL_CLIENT_ID,
    MSG_CONTROL_FILTER,
    MSG_CONTROL_TOPIC,
    MSG_CONTROL_USERNAME,
    MSG_CONTROL_WILL_TOPIC,
    MSG_EMPTY_FILTER,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
)
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = ["Decoder", "encode", "encode_publish", "publish_parts"]

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef PyObject *(*allocfunc)(void *, Py_ssize_t)
    ctypedef struct _TypeObject "PyTypeObject":
        allocfunc tp_alloc
    int T_OBJECT_EX
    void PyObject_GC_UnTrack(void *op)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    Py_ssize_t Py_REFCNT(object o)
    void Py_SET_REFCNT(object o, Py_ssize_t n)

DEF BYTE_T = 1
DEF TWO_T = 2
DEF FOUR_T = 3
DEF VARINT_T = 4
DEF UTF8_T = 5
DEF BINARY_T = 6
DEF PAIR_T = 7

cdef enum:
    P_CONNECT = 1
    P_CONNACK = 2
    P_PUBLISH = 3
    P_PUBACK = 4
    P_PUBREC = 5
    P_PUBREL = 6
    P_PUBCOMP = 7
    P_SUBSCRIBE = 8
    P_SUBACK = 9
    P_UNSUBSCRIBE = 10
    P_UNSUBACK = 11
    P_PINGREQ = 12
    P_PINGRESP = 13
    P_DISCONNECT = 14
    P_AUTH = 15

cdef dict _NAMES = {int(t): t.name for t in PacketType}
cdef object _TOPIC_NAME_INVALID = ReasonCode.TOPIC_NAME_INVALID
cdef object _MALFORMED_PACKET = ReasonCode.MALFORMED_PACKET
cdef object _CLIENT_IDENTIFIER_NOT_VALID = ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
cdef object _TOPIC_ALIAS_INVALID = ReasonCode.TOPIC_ALIAS_INVALID
cdef object _UNSUPPORTED_PROTOCOL_VERSION = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


# ---------------------------------------------------------------- fast object construction

@cython.final
cdef class _SlotFiller:
    """Builds instances of a slotted dataclass without running ``__init__``.

    The class's member descriptors give each slot's offset in the object
    (public ``PyMemberDef`` data); a new object from ``tp_alloc`` has every
    slot NULL and is filled in place. If the class is not the expected shape
    (not slotted, a field missing), ``fast`` is False and callers use the
    constructor instead, which is merely slower.
    """

    cdef object cls
    cdef Py_ssize_t offsets[32]
    cdef int count
    cdef bint fast
    cdef bint gc  # instances are GC objects (always so for these dataclasses)

    def __init__(self, cls, tuple names):
        self.cls = cls
        self.gc = (cls.__flags__ >> 14) & 1  # Py_TPFLAGS_HAVE_GC
        self.count = len(names)
        self.fast = self.count <= 32
        for i, name in enumerate(names):
            descr = cls.__dict__.get(name)
            descr = getattr(descr, "member", descr)  # under a _LazyPropertiesField
            if not self.fast or type(descr).__name__ != "member_descriptor":
                self.fast = False
                break
            if (<PyMemberDescrObject *>descr).d_member.type != T_OBJECT_EX:
                self.fast = False
                break
            self.offsets[i] = (<PyMemberDescrObject *>descr).d_member.offset
        if self.fast:
            # Prove it on a real object before trusting it.
            probe = self.new()
            values = tuple(object() for _ in names)
            for i in range(self.count):
                self.put(probe, i, values[i])
            if tuple(getattr(probe, n) for n in names) != values:
                self.fast = False

    cdef inline object new(self):
        cdef PyObject *raw = (<_TypeObject *>self.cls).tp_alloc(<void *>self.cls, 0)
        if raw == NULL:
            raise MemoryError()
        cdef object obj = <object>raw
        Py_DECREF(obj)
        return obj

    cdef inline void put(self, object obj, int i, object value) noexcept:
        cdef PyObject **slot = <PyObject **>((<char *><PyObject *>obj) + self.offsets[i])
        Py_INCREF(value)
        Py_XDECREF(slot[0])
        slot[0] = <PyObject *>value

    cdef inline void untrack(self, object obj) noexcept:
        if self.gc:
            PyObject_GC_UnTrack(<void *>obj)

    cdef inline object get(self, object obj, int i):
        cdef PyObject *value = (<PyObject **>((<char *><PyObject *>obj) + self.offsets[i]))[0]
        if value == NULL:
            raise AttributeError(i)
        return <object>value


cdef tuple _PROP_NAMES = tuple(name for _, (name, _, _) in sorted(PROPERTY_TABLE.items()))
cdef _SlotFiller _PUBLISH_F = _SlotFiller(
    Publish, ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties"))
cdef _SlotFiller _PUBACK_F = _SlotFiller(Puback, ("packet_id", "reason_code", "properties"))
cdef _SlotFiller _PUBREC_F = _SlotFiller(Pubrec, ("packet_id", "reason_code", "properties"))
cdef _SlotFiller _PUBREL_F = _SlotFiller(Pubrel, ("packet_id", "reason_code", "properties"))
cdef _SlotFiller _PUBCOMP_F = _SlotFiller(Pubcomp, ("packet_id", "reason_code", "properties"))
cdef _SlotFiller _PROPS_F = _SlotFiller(Properties, _PROP_NAMES)
cdef _SlotFiller _PINGREQ_F = _SlotFiller(Pingreq, ())
cdef _SlotFiller _PINGRESP_F = _SlotFiller(Pingresp, ())
cdef _SlotFiller _SUBSCRIPTION_F = _SlotFiller(
    Subscription, ("topic_filter", "qos", "no_local", "retain_as_published", "retain_handling"))
cdef _SlotFiller _SUBSCRIBE_F = _SlotFiller(Subscribe, ("packet_id", "subscriptions", "properties"))

# Property tables as C arrays, indexed by property id (all known ids < 64).
cdef int _PTYPE[64]
cdef uint32_t _PALLOWED[64]   # bit n set: allowed in packet type n (bit 0: will properties)
cdef int _PSLOT[64]           # index into _PROP_NAMES
cdef list _PNAME = [None] * 64
for _pid, (_name, _vtype, _allowed) in PROPERTY_TABLE.items():
    _PTYPE[_pid] = int(_vtype)
    _PALLOWED[_pid] = sum(1 << int(t) for t in _allowed)
    _PSLOT[_pid] = _PROP_NAMES.index(_name)
    _PNAME[_pid] = _name
# Encoding order: ascending property id.
cdef tuple _ENCODE_IDS = tuple(sorted(PROPERTY_TABLE))


cdef inline object _new_publish(str topic, bytes payload, int qos, bint retain, bint dup,
                                int packet_id, object props):
    cdef _SlotFiller f = _PUBLISH_F
    cdef object obj
    if not f.fast:
        return Publish(topic, payload, qos, retain, dup, packet_id, props)
    obj = f.new()
    # Its fields are str, bytes, int, bool and Properties: it cannot be part of
    # a reference cycle, so keep it out of the cyclic GC's scans (a broker may
    # hold millions of queued messages). CPython untracks such tuples likewise.
    f.untrack(obj)
    f.put(obj, 0, topic)
    f.put(obj, 1, payload)
    f.put(obj, 2, qos)
    f.put(obj, 3, True if retain else False)
    f.put(obj, 4, True if dup else False)
    f.put(obj, 5, packet_id)
    f.put(obj, 6, props)
    return obj


cdef inline object _new_ack(int ptype, int packet_id, int reason, object props):
    cdef _SlotFiller f
    if ptype == P_PUBACK:
        f = _PUBACK_F
    elif ptype == P_PUBREC:
        f = _PUBREC_F
    elif ptype == P_PUBREL:
        f = _PUBREL_F
    else:
        f = _PUBCOMP_F
    if not f.fast:
        return f.cls(packet_id, reason, props)
    cdef object obj = f.new()
    f.untrack(obj)  # ints and Properties only, see _new_publish
    f.put(obj, 0, packet_id)
    f.put(obj, 1, reason)
    f.put(obj, 2, props)
    return obj


cdef inline object _new_ping(int ptype):
    cdef _SlotFiller f = _PINGREQ_F if ptype == P_PINGREQ else _PINGRESP_F
    if not f.fast:
        return f.cls()
    cdef object obj = f.new()
    f.untrack(obj)  # no fields at all
    return obj


cdef inline object _new_subscription(str filt, int qos, bint no_local, bint rap, int rh):
    cdef _SlotFiller f = _SUBSCRIPTION_F
    if not f.fast:
        return Subscription(filt, qos, no_local, rap, rh)
    cdef object obj = f.new()
    f.untrack(obj)  # str, int and bool fields only
    f.put(obj, 0, filt)
    f.put(obj, 1, qos)
    f.put(obj, 2, True if no_local else False)
    f.put(obj, 3, True if rap else False)
    f.put(obj, 4, rh)
    return obj


cdef inline object _new_subscribe(int packet_id, list subs, object props):
    cdef _SlotFiller f = _SUBSCRIBE_F
    if not f.fast:
        return Subscribe(packet_id, subs, props)
    cdef object obj = f.new()  # stays GC-tracked: it holds a mutable list
    f.put(obj, 0, packet_id)
    f.put(obj, 1, subs)
    f.put(obj, 2, props)
    return obj


cdef inline object _new_properties():
    cdef _SlotFiller f = _PROPS_F
    cdef int i
    if not f.fast:
        return Properties()
    cdef object obj = f.new()
    cdef PyObject *none = <PyObject *>None
    # Values are scalars, str, bytes or lists of them: no cycle through it.
    f.untrack(obj)
    # Every slot of a new object is NULL: store None in each without put()'s decref, and
    # count None's new references in one addition rather than a chain of 27 increments.
    for i in range(f.count):
        (<PyObject **>((<char *><PyObject *>obj) + f.offsets[i]))[0] = none
    Py_SET_REFCNT(None, Py_REFCNT(None) + f.count)
    return obj


# Raw slot offsets of Properties, in encoding order (ascending property id).
cdef int _NPROPS = len(_ENCODE_IDS)
cdef int _ENC_ID[32]
cdef Py_ssize_t _ENC_OFF[32]
cdef bint _PROPS_FAST = _PROPS_F.fast
for _i, _pid in enumerate(_ENCODE_IDS):
    _ENC_ID[_i] = _pid
    _ENC_OFF[_i] = _PROPS_F.offsets[_PSLOT[_pid]] if _PROPS_FAST else 0


cdef inline object _prop_get(object props, int slot):
    if _PROPS_FAST and type(props) is Properties:
        return _PROPS_F.get(props, slot)
    return getattr(props, _PROP_NAMES[slot])


cdef inline int _prop_set(object props, int slot, object value) except -1:
    # Only called on objects made by _new_properties.
    if _PROPS_FAST:
        _PROPS_F.put(props, slot, value)
    else:
        setattr(props, _PROP_NAMES[slot], value)
    return 0


# ---------------------------------------------------------------- readers
# All read from p[pos:end]; ``pos`` is advanced through a pointer.

cdef inline uint32_t _read_varint(
        const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end) except? 0xFFFFFFFF:
    cdef uint32_t value = 0
    cdef int shift = 0
    cdef int i
    cdef uint8_t b
    cdef Py_ssize_t q = pos[0]
    for i in range(4):
        if q >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        b = p[q]
        q += 1
        value |= (<uint32_t>(b & 0x7F)) << shift
        if not b & 0x80:
            if b == 0 and i:
                raise MalformedPacket("non-minimal variable byte integer [MQTT-1.5.5-1]")
            pos[0] = q
            return value
        shift += 7
    raise MalformedPacket("variable byte integer longer than four bytes")


cdef inline int _read_u16(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end) except -1:
    cdef Py_ssize_t q = pos[0]
    if q + 2 > end:
        raise MalformedPacket("two-byte integer runs past the end of the packet")
    pos[0] = q + 2
    return (p[q] << 8) | p[q + 1]


cdef inline bint _plain_ascii(const uint8_t *s, Py_ssize_t n) noexcept:
    """True when s[0:n] is ASCII without U+0000, hence valid MQTT UTF-8: the short strings
    of a property section, checked inline (False sends the caller to the full check)."""
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        if (w & <uint64_t>0x8080808080808080ULL) or (
                (w - <uint64_t>0x0101010101010101ULL) & ~w & <uint64_t>0x8080808080808080ULL):
            return False
        i += 8
    while i < n:
        if s[i] == 0 or s[i] >= 0x80:
            return False
        i += 1
    return True


cdef inline int _check_utf8(const uint8_t *s, Py_ssize_t n) except -1:
    """MQTT UTF-8 (1.5.4) without building the string: the checks and errors of ``_utf8``."""
    if n <= 64 and _plain_ascii(s, n):
        return 0
    cdef int r = mqf_utf8_validate(s, <size_t>n)
    if r == MQF_UTF8_INVALID:
        raise MalformedPacket("ill-formed UTF-8 string [MQTT-1.5.4-1]")
    if r == MQF_UTF8_NUL:
        raise MalformedPacket("U+0000 in a UTF-8 string [MQTT-1.5.4-2]")
    return 0


# ---------------------------------------------------------------- string cache
# Topics, content types and user property names repeat from one packet to the next; a
# small direct-mapped cache of recently decoded short ASCII strings hands back the same
# str object instead of building (and later freeing) a new one. A hit also skips the
# UTF-8 check (identical bytes passed it when the entry was made) and the str's hash is
# already computed when the broker uses the topic as a dict key. Only strings that passed
# ``mqf_utf8_validate`` enter it; a collision merely costs a miss (entries are compared
# byte for byte). Equality is all the pure twin promises, so identity is not observable.

DEF STR_CACHE_SIZE = 512   # entries; a power of two
DEF STR_CACHE_MAX = 64     # longest string cached, in bytes

cdef PyObject *_STR_CACHE[STR_CACHE_SIZE]  # owned references, NULL when empty
cdef uint64_t _STR_HASH[STR_CACHE_SIZE]    # the full hash of each entry's bytes
memset(_STR_CACHE, 0, sizeof(_STR_CACHE))
memset(_STR_HASH, 0, sizeof(_STR_HASH))


cdef inline uint64_t _str_hash(const uint8_t *s, Py_ssize_t n) noexcept:
    """Hash of s[0:n] (n <= STR_CACHE_MAX), one 8-byte word at a time; the top bits pick
    the slot, all of them are compared before the bytes are."""
    cdef uint64_t h = <uint64_t>(n + 1) * <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        h = (h ^ w) * <uint64_t>0xFF51AFD7ED558CCDULL
        i += 8
    if i < n:
        w = 0
        memcpy(&w, s + i, n - i)
        h = (h ^ w) * <uint64_t>0xC4CEB9FE1A85EC53ULL
    return h ^ (h >> 29)


cdef inline bint _same_bytes(const uint8_t *a, const uint8_t *b, Py_ssize_t n) noexcept:
    """a[0:n] == b[0:n] for the short strings of the cache, inline (no libc call)."""
    cdef uint64_t x, y
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&x, a + i, 8)
        memcpy(&y, b + i, 8)
        if x != y:
            return False
        i += 8
    while i < n:
        if a[i] != b[i]:
            return False
        i += 1
    return True


cdef inline str _utf8(const uint8_t *s, Py_ssize_t n):
    """MQTT UTF-8 (1.5.4): well-formed, no surrogates, no U+0000."""
    cdef uint64_t h = 0
    cdef uint32_t slot = 0
    cdef PyObject *hit
    cdef str text
    if n <= STR_CACHE_MAX:
        h = _str_hash(s, n)
        slot = <uint32_t>(h >> 40) & (STR_CACHE_SIZE - 1)
        hit = _STR_CACHE[slot]
        if (_STR_HASH[slot] == h and hit != NULL and PyUnicode_GET_LENGTH(<object>hit) == n
                and _same_bytes(<const uint8_t *>PyUnicode_DATA(<object>hit), s, n)):
            return <str>hit
    cdef int r = mqf_utf8_validate(s, <size_t>n)
    if r == MQF_UTF8_INVALID:
        raise MalformedPacket("ill-formed UTF-8 string [MQTT-1.5.4-1]")
    if r == MQF_UTF8_NUL:
        raise MalformedPacket("U+0000 in a UTF-8 string [MQTT-1.5.4-2]")
    text = PyUnicode_DecodeUTF8(<char *>s, n, NULL)
    if n <= STR_CACHE_MAX and PyUnicode_IS_COMPACT_ASCII(text):
        # ASCII only: then its length in characters equals n and its data is the bytes,
        # which is what the comparison above relies on.
        Py_INCREF(text)
        Py_XDECREF(_STR_CACHE[slot])
        _STR_CACHE[slot] = <PyObject *>text
        _STR_HASH[slot] = h
    return text


cdef inline Py_ssize_t _read_len(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end) except -1:
    """The two-byte length prefix of a string or binary data; returns its length."""
    cdef Py_ssize_t q = pos[0]
    cdef Py_ssize_t n
    if q + 2 > end:
        raise MalformedPacket("length prefix runs past the end of the packet")
    n = (p[q] << 8) | p[q + 1]
    if q + 2 + n > end:
        raise MalformedPacket("length prefix runs past the end of the packet")
    pos[0] = q + 2
    return n


cdef str _read_utf8(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end):
    cdef Py_ssize_t n = _read_len(p, pos, end)
    cdef str s = _utf8(p + pos[0], n)
    pos[0] += n
    return s


cdef bytes _read_binary(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end):
    cdef Py_ssize_t n = _read_len(p, pos, end)
    cdef bytes b = PyBytes_FromStringAndSize(<char *>(p + pos[0]), n)
    pos[0] += n
    return b


cdef inline int _check_topic_name(const uint8_t *s, Py_ssize_t n) except -1:
    """A PUBLISH or will topic name may not hold wildcards [MQTT-3.3.2-2]."""
    if memchr(s, b'+', n) != NULL or memchr(s, b'#', n) != NULL:
        raise MQTTError(_TOPIC_NAME_INVALID, "wildcard character in a topic name [MQTT-3.3.2-2]")
    return 0


cdef inline int _check_controls(const uint8_t *s, Py_ssize_t n, object reason,
                                str message) except -1:
    """Refuse control characters (1.5.4) when the decoder is strict about them."""
    if mqf_utf8_has_control(s, <size_t>n):
        raise MQTTError(reason, message)
    return 0


cdef inline int _check_filter(const uint8_t *s, Py_ssize_t n, bint controls_ok) except -1:
    """SUBSCRIBE / UNSUBSCRIBE filters: at least one character [MQTT-4.7.3-1]."""
    if n == 0:
        raise MalformedPacket(MSG_EMPTY_FILTER)
    if not controls_ok:
        _check_controls(s, n, _MALFORMED_PACKET, MSG_CONTROL_FILTER)
    return 0


cdef str _ptype_name(int ptype):
    return "will properties" if ptype == 0 else _NAMES.get(ptype, str(ptype))


cdef inline int _skip_utf8(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end) except -1:
    """``_read_utf8`` without the string: same checks, same errors."""
    cdef Py_ssize_t n = _read_len(p, pos, end)
    _check_utf8(p + pos[0], n)
    pos[0] += n
    return 0


cdef uint64_t _scan_properties(const uint8_t *p, Py_ssize_t q, Py_ssize_t stop, int ptype,
                               object props) except? 0:
    """Check the property section body ``p[q:stop]`` completely (2.2.2) and return the
    set of identifiers seen (bit n: property n; never 0 for a non-empty section).

    With ``props`` (an object from ``_new_properties``) also fill it in; with None build
    no Python object at all: the lazy PUBLISH path validates at decode time with this
    and builds the Properties on first access, from the same bytes, with this again.
    Both ways run the same checks in the same order, so they raise the same errors.
    """
    cdef uint32_t pid, ival
    cdef uint64_t seen = 0
    cdef int vtype
    cdef Py_ssize_t n
    cdef bint build = props is not None
    cdef object lst
    while q < stop:
        if p[q] < 0x80:  # every property identifier so far is one byte (q < stop here)
            pid = p[q]
            q += 1
        else:
            pid = _read_varint(p, &q, stop)
        if pid >= 64 or _PTYPE[pid] == 0:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02X} (2.2.2.2)")
        if not (_PALLOWED[pid] >> ptype) & 1:
            raise MalformedPacket(
                f"property {_PNAME[pid]} not allowed in {_ptype_name(ptype)} (2.2.2.2)")
        if seen & ((<uint64_t>1) << pid):
            if not (pid == 0x26 or (pid == 0x0B and ptype == P_PUBLISH)):
                raise ProtocolError(f"property {_PNAME[pid]} included more than once (2.2.2.2)")
        else:
            seen |= (<uint64_t>1) << pid
        vtype = _PTYPE[pid]
        if vtype == BYTE_T:
            if q >= stop:
                raise MalformedPacket("property value runs past the end of the properties")
            ival = p[q]
            q += 1
            if ival > 1 and (pid == 0x01 or pid == 0x17 or pid == 0x19 or pid == 0x24
                             or pid == 0x25 or pid == 0x28 or pid == 0x29 or pid == 0x2A):
                raise ProtocolError(f"property {_PNAME[pid]} must be 0 or 1, got {ival}")
            if build:
                _prop_set(props, _PSLOT[pid], ival)
        elif vtype == TWO_T:
            ival = _read_u16(p, &q, stop)
            if ival == 0:
                if pid == 0x23:
                    raise MQTTError(_TOPIC_ALIAS_INVALID, "topic alias 0 (3.3.2.3.4)")
                if pid == 0x21:
                    raise ProtocolError(f"property {_PNAME[pid]} must not be 0")
            if build:
                _prop_set(props, _PSLOT[pid], ival)
        elif vtype == FOUR_T:
            if q + 4 > stop:
                raise MalformedPacket("property value runs past the end of the properties")
            ival = ((<uint32_t>p[q] << 24) | (<uint32_t>p[q + 1] << 16)
                    | (<uint32_t>p[q + 2] << 8) | p[q + 3])
            q += 4
            if ival == 0 and pid == 0x27:
                raise ProtocolError(f"property {_PNAME[pid]} must not be 0")
            if build:
                _prop_set(props, _PSLOT[pid], ival)
        elif vtype == VARINT_T:
            ival = _read_varint(p, &q, stop)
            if ival == 0:
                raise ProtocolError("subscription identifier 0 (3.3.2.3.8, 3.8.2.1.2)")
            if build:
                lst = _prop_get(props, _PSLOT[pid])
                if lst is None:
                    _prop_set(props, _PSLOT[pid], [ival])
                else:
                    lst.append(ival)
        elif vtype == UTF8_T:
            if build:
                _prop_set(props, _PSLOT[pid], _read_utf8(p, &q, stop))
            else:
                _skip_utf8(p, &q, stop)
        elif vtype == BINARY_T:
            if build:
                _prop_set(props, _PSLOT[pid], _read_binary(p, &q, stop))
            else:
                n = _read_len(p, &q, stop)
                q += n
        elif build:
            key = _read_utf8(p, &q, stop)
            val = _read_utf8(p, &q, stop)
            pair = (key, val)
            # Two str: CPython's own collector would untrack it on its first pass.
            PyObject_GC_UnTrack(<void *>pair)
            lst = _prop_get(props, _PSLOT[pid])
            if lst is None:
                _prop_set(props, _PSLOT[pid], [pair])
            else:
                lst.append(pair)
        else:
            _skip_utf8(p, &q, stop)
            _skip_utf8(p, &q, stop)
    if (seen & ((<uint64_t>1) << 0x16)) and not (seen & ((<uint64_t>1) << 0x15)):
        raise ProtocolError("authentication data without an authentication method (3.1.2.11.10)")
    return seen


cdef inline Py_ssize_t _properties_end(const uint8_t *p, Py_ssize_t *pos,
                                       Py_ssize_t end) except -1:
    """Read the property length; ``pos`` moves to the first property, returns the end."""
    cdef uint32_t length = _read_varint(p, pos, end)
    cdef Py_ssize_t stop = pos[0] + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    return stop


cdef object _read_properties(const uint8_t *p, Py_ssize_t *pos, Py_ssize_t end, int ptype):
    """The property section of an MQTT 5 packet (2.2.2); None when empty."""
    cdef Py_ssize_t stop = _properties_end(p, pos, end)
    cdef object props
    if stop == pos[0]:
        return None
    props = _new_properties()
    _scan_properties(p, pos[0], stop, ptype, props)
    pos[0] = stop
    return props


# ---------------------------------------------------------------- lazy PUBLISH properties
# A decoded MQTT 5 PUBLISH keeps a copy of its (already validated) property bytes, usually
# inline in one small non-GC object, and builds the Properties object the first time
# ``Publish.properties`` is read. Decoding thus creates no 27-slot Properties with its
# strings, lists and tuples, and a packet that is only forwarded or counted never builds
# them. Observable behaviour is the pure twin's: the same errors at decode time
# (``_scan_properties`` checks everything), the same Properties on every read.

DEF PENDING_INLINE = 64  # property sections up to this size need no bytes object


@cython.final
@cython.freelist(64)
@cython.no_gc  # holds a bytes object at most: no cycle can run through it
cdef class _PendingProperties:
    """What the ``properties`` slot of a decoded Publish holds until it is first read:
    a copy of the property section body (without its length prefix), inline when it is
    small (the usual case: no second allocation), else in a bytes object."""

    cdef uint8_t small[PENDING_INLINE]
    cdef Py_ssize_t n
    cdef bytes raw  # None when the bytes are in ``small``
    cdef int ptype

    cdef object build(self):
        cdef object props = _new_properties()
        cdef const uint8_t *p = <const uint8_t *>&self.small[0]
        if self.raw is not None:
            p = <const uint8_t *>PyBytes_AS_STRING(self.raw)
        _scan_properties(p, 0, self.n, self.ptype, props)
        return props

    def __reduce__(self):  # never leaves the slot; refuse rather than pickle internals
        raise TypeError("pending properties cannot be pickled")


cdef inline object _pending(const uint8_t *p, Py_ssize_t n, int ptype):
    cdef _PendingProperties pend = _PendingProperties.__new__(_PendingProperties)
    if n <= PENDING_INLINE:
        memcpy(pend.small, p, n)
    else:
        pend.raw = PyBytes_FromStringAndSize(<char *>p, n)
    pend.n = n
    pend.ptype = ptype
    return pend


cdef object _publish_properties(object obj):
    """``obj.properties`` for a Publish (or subclass), building pending properties once."""
    cdef PyObject *raw = (<PyObject **>((<char *><PyObject *>obj) + _PUBLISH_F.offsets[6]))[0]
    if raw == NULL:  # made with Publish.__new__ and never initialised
        raise AttributeError("'Publish' object has no attribute 'properties'")
    cdef object value = <object>raw
    if type(value) is _PendingProperties:
        value = (<_PendingProperties>value).build()
        _PUBLISH_F.put(obj, 6, value)
    return value


@cython.final
cdef class _LazyPropertiesField:
    """Data descriptor installed as ``Publish.properties`` (over the dataclass's slot,
    kept as ``member``): reads build pending properties, everything else is the slot's."""

    cdef readonly object member

    def __init__(self, member):
        self.member = member

    def __get__(self, obj, cls):
        if obj is None:
            return self
        if type(obj) is _PUBLISH_F.cls or isinstance(obj, Publish):
            return _publish_properties(obj)
        return self.member.__get__(obj, cls)  # raises the slot's TypeError

    def __set__(self, obj, value):
        if type(obj) is _PUBLISH_F.cls:
            _PUBLISH_F.put(obj, 6, value)
        else:
            self.member.__set__(obj, value)

    def __delete__(self, obj):
        self.member.__delete__(obj)


# Install it only when Publish's slots are where _SlotFiller found them; otherwise the
# decoder builds the Properties eagerly, as before.
cdef bint _LAZY_PUBLISH = _PUBLISH_F.fast
if _LAZY_PUBLISH:
    _member = Publish.__dict__["properties"]
    if type(_member) is not _LazyPropertiesField:
        Publish.properties = _LazyPropertiesField(_member)


cdef inline int _require_packet_id(int pid, int ptype) except -1:
    if pid == 0:
        raise ProtocolError(f"packet identifier 0 in {_NAMES[ptype]} [MQTT-2.2.1-3]")
    return 0


cdef inline int _end_of(Py_ssize_t pos, Py_ssize_t end, int ptype) except -1:
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected trailing bytes in {_NAMES[ptype]}")
    return 0


# ---------------------------------------------------------------- packet decoders

cdef object _decode_publish(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int flags,
                            int version, bint controls_ok):
    cdef int qos = (flags >> 1) & 3
    cdef Py_ssize_t tlen, stop
    cdef int packet_id = 0
    cdef object props = None
    cdef uint64_t seen = 0
    if pos + 2 > end:
        raise MalformedPacket("topic length runs past the end of the PUBLISH")
    tlen = (p[pos] << 8) | p[pos + 1]
    stop = pos + 2 + tlen
    if stop > end:
        raise MalformedPacket("topic length runs past the end of the PUBLISH")
    cdef str topic = _utf8(p + pos + 2, tlen)
    if not controls_ok:
        _check_controls(p + pos + 2, tlen, _MALFORMED_PACKET, MSG_CONTROL_TOPIC)
    _check_topic_name(p + pos + 2, tlen)
    pos = stop
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("packet identifier runs past the end of the PUBLISH")
        packet_id = (p[pos] << 8) | p[pos + 1]
        pos += 2
        if packet_id == 0:
            raise ProtocolError("packet identifier 0 in a QoS > 0 PUBLISH [MQTT-2.2.1-3]")
    if version == 5:
        if pos < end and p[pos] == 0:
            pos += 1
        else:
            stop = _properties_end(p, &pos, end)
            if stop > pos:
                # Validate everything now (same errors as building would raise), build later.
                seen = _scan_properties(p, pos, stop, P_PUBLISH, None)
                if _LAZY_PUBLISH:
                    props = _pending(p + pos, stop - pos, P_PUBLISH)
                else:
                    props = _new_properties()
                    _scan_properties(p, pos, stop, P_PUBLISH, props)
            pos = stop
        if tlen == 0 and not (seen & ((<uint64_t>1) << 0x23)):  # no topic alias
            raise ProtocolError("empty topic name without a topic alias (3.3.2.1)")
    elif tlen == 0:
        raise MQTTError(_TOPIC_NAME_INVALID, "empty topic name [MQTT-4.7.3-1]")
    return _new_publish(topic, PyBytes_FromStringAndSize(<char *>(p + pos), end - pos),
                        qos, flags & 1, flags & 8, packet_id, props)


cdef inline bint _ack_reason_ok(int ptype, int reason):
    if ptype == P_PUBACK or ptype == P_PUBREC:
        return (reason == 0x00 or reason == 0x10 or reason == 0x80 or reason == 0x83
                or reason == 0x87 or reason == 0x90 or reason == 0x91 or reason == 0x97
                or reason == 0x99)
    return reason == 0x00 or reason == 0x92


cdef object _decode_ack(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int ptype, int version):
    """PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7)."""
    cdef Py_ssize_t length = end - pos
    cdef int packet_id, reason = 0
    cdef object props = None
    if length < 2 or (version != 5 and length != 2):
        raise MalformedPacket(f"{_NAMES[ptype]} with remaining length {length}")
    packet_id = (p[pos] << 8) | p[pos + 1]
    if packet_id == 0:
        raise ProtocolError(f"packet identifier 0 in {_NAMES[ptype]} [MQTT-2.2.1-3]")
    if length > 2:
        reason = p[pos + 2]
        if not _ack_reason_ok(ptype, reason):
            raise ProtocolError(f"reason code 0x{reason:02X} not allowed in {_NAMES[ptype]}")
        if length > 3:
            pos += 3
            props = _read_properties(p, &pos, end, ptype)
            _end_of(pos, end, ptype)
    return _new_ack(ptype, packet_id, reason, props)


cdef object _decode_connect(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int flags,
                            bint controls_ok):
    cdef str name = _read_utf8(p, &pos, end)
    cdef int level, cflags, keep_alive, will_flag, will_qos
    cdef bint will_retain
    cdef Py_ssize_t start
    if flags and name != "MQIsdp":
        # Checked here, not with the first byte: MQTT 3.1 tolerates these bits.
        raise MalformedPacket(f"reserved flag bits 0x{flags:X} in CONNECT [MQTT-2.1.3-1]")
    if pos >= end:
        raise MalformedPacket("CONNECT ends before the protocol level")
    level = p[pos]
    pos += 1
    if name == "MQTT":
        if level != 4 and level != 5:
            raise MQTTError(_UNSUPPORTED_PROTOCOL_VERSION,
                            f"protocol level {level} with protocol name MQTT [MQTT-3.1.2-2]")
    elif name == "MQIsdp":
        if level != 3:
            raise MQTTError(_UNSUPPORTED_PROTOCOL_VERSION,
                            f"protocol level {level} with protocol name MQIsdp [MQTT-3.1.2-2]")
    else:
        raise ProtocolError(f"unknown protocol name {name!r} [MQTT-3.1.2-1]")
    if pos + 3 > end:
        raise MalformedPacket("CONNECT ends inside the variable header")
    cflags = p[pos]
    keep_alive = (p[pos + 1] << 8) | p[pos + 2]
    pos += 3
    if cflags & 0x01:
        if level != 3:
            raise MalformedPacket("CONNECT reserved flag set [MQTT-3.1.2-3]")
        cflags &= 0xFE  # MQTT 3.1 did not reserve it: ignored, as mosquitto does
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 3
    will_retain = (cflags & 0x20) != 0
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("will QoS or will retain set without the will flag "
                              "[MQTT-3.1.2-13] [MQTT-3.1.2-15]")
    if will_qos == 3:
        raise MalformedPacket("will QoS 3 [MQTT-3.1.2-14]")
    if level != 5 and cflags & 0x40 and not cflags & 0x80:
        raise MalformedPacket("password flag without user name flag [MQTT-3.1.2-22]")
    props = None
    if level == 5:
        props = _read_properties(p, &pos, end, P_CONNECT)
    start = pos + 2
    client_id = _read_utf8(p, &pos, end)
    if not controls_ok:
        _check_controls(p + start, pos - start, _CLIENT_IDENTIFIER_NOT_VALID,
                        MSG_CONTROL_CLIENT_ID)
    will = None
    cdef Py_ssize_t n
    if will_flag:
        will_props = None
        if level == 5:
            will_props = _read_properties(p, &pos, end, 0)
        n = _read_len(p, &pos, end)
        will_topic = _utf8(p + pos, n)
        if n == 0:
            raise MQTTError(_TOPIC_NAME_INVALID, "empty will topic [MQTT-4.7.3-1]")
        if not controls_ok:
            _check_controls(p + pos, n, _MALFORMED_PACKET, MSG_CONTROL_WILL_TOPIC)
        _check_topic_name(p + pos, n)
        pos += n
        will_payload = _read_binary(p, &pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if cflags & 0x80:
        start = pos + 2
        username = _read_utf8(p, &pos, end)
        if not controls_ok:
            _check_controls(p + start, pos - start, _MALFORMED_PACKET, MSG_CONTROL_USERNAME)
    if cflags & 0x40:
        password = _read_binary(p, &pos, end)
    _end_of(pos, end, P_CONNECT)
    return Connect(client_id, level, (cflags & 0x02) != 0, keep_alive, username, password,
                   will, props)


cdef object _connect_level(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end):
    """The protocol version a CONNECT announces (3, 4 or 5), or None if it names none."""
    cdef Py_ssize_t stop
    cdef int level
    if pos + 2 > end:
        return None
    stop = pos + 2 + ((p[pos] << 8) | p[pos + 1])
    if stop >= end:
        return None
    name = PyBytes_FromStringAndSize(<char *>(p + pos + 2), stop - pos - 2)
    level = p[stop]
    if (name == b"MQTT" and (level == 4 or level == 5)) or (name == b"MQIsdp" and level == 3):
        return level
    return None


cdef object _decode_connack(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version):
    cdef int ack_flags, reason
    if end - pos < 2 or (version != 5 and end - pos != 2):
        raise MalformedPacket(f"CONNACK with remaining length {end - pos}")
    ack_flags = p[pos]
    reason = p[pos + 1]
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flag bits set (3.2.2.1)")
    if version == 5:
        if reason not in CONNACK_REASON_CODES:
            raise ProtocolError(f"reason code 0x{reason:02X} not allowed in CONNACK")
    elif reason > 5:
        raise ProtocolError(f"CONNACK return code {reason} is reserved")
    if ack_flags and reason:
        raise ProtocolError("session present with a refusing CONNACK [MQTT-3.2.2-4]")
    props = None
    pos += 2
    if version == 5:
        props = _read_properties(p, &pos, end, P_CONNACK)
        _end_of(pos, end, P_CONNACK)
    return Connack(ack_flags != 0, reason, props)


cdef object _decode_subscribe(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version,
                              bint controls_ok):
    cdef int packet_id = _read_u16(p, &pos, end)
    cdef int opts, qos, retain_handling
    cdef bint no_local
    _require_packet_id(packet_id, P_SUBSCRIBE)
    props = None
    if version == 5:
        props = _read_properties(p, &pos, end, P_SUBSCRIBE)
    cdef list subs = []
    cdef Py_ssize_t start
    while pos < end:
        start = pos + 2
        filt = _read_utf8(p, &pos, end)
        _check_filter(p + start, pos - start, controls_ok)
        if pos >= end:
            raise MalformedPacket("SUBSCRIBE topic filter without subscription options")
        opts = p[pos]
        pos += 1
        qos = opts & 3
        if version == 5:
            if opts & 0xC0:
                raise MalformedPacket("reserved bits set in subscription options [MQTT-3.8.3-5]")
            if qos == 3:
                raise MalformedPacket("QoS 3 in subscription options [MQTT-3-8.3-4]")
            retain_handling = (opts >> 4) & 3
            if retain_handling == 3:
                raise ProtocolError("retain handling 3 in subscription options (3.8.3.1)")
            no_local = (opts & 4) != 0
            if no_local and filt.startswith("$share/"):
                raise ProtocolError("no local on a shared subscription [MQTT-3.8.3-4]")
            subs.append(_new_subscription(filt, qos, no_local, (opts & 8) != 0,
                                          retain_handling))
        else:
            if opts & 0xFC or qos == 3:
                raise MalformedPacket("reserved bits or QoS 3 in requested QoS [MQTT-3-8.3-4]")
            subs.append(_new_subscription(filt, qos, False, False, 0))
    if not subs:
        raise ProtocolError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return _new_subscribe(packet_id, subs, props)


cdef object _decode_suback(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version):
    cdef int packet_id = _read_u16(p, &pos, end)
    _require_packet_id(packet_id, P_SUBACK)
    props = None
    if version == 5:
        props = _read_properties(p, &pos, end, P_SUBACK)
        allowed = SUBACK_REASON_CODES
    else:
        allowed = (0, 1, 2, 0x80)
    cdef list codes = [p[i] for i in range(pos, end)]
    if not codes:
        raise ProtocolError("SUBACK without reason codes (3.9.3)")
    for code in codes:
        if code not in allowed:
            raise ProtocolError(f"reason code 0x{code:02X} not allowed in SUBACK")
    return Suback(packet_id, codes, props)


cdef object _decode_unsubscribe(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version,
                                bint controls_ok):
    cdef int packet_id = _read_u16(p, &pos, end)
    _require_packet_id(packet_id, P_UNSUBSCRIBE)
    props = None
    if version == 5:
        props = _read_properties(p, &pos, end, P_UNSUBSCRIBE)
    cdef list filters = []
    cdef Py_ssize_t start
    while pos < end:
        start = pos + 2
        filters.append(_read_utf8(p, &pos, end))
        _check_filter(p + start, pos - start, controls_ok)
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, filters, props)


cdef object _decode_unsuback(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version):
    cdef int packet_id
    if version != 5:
        if end - pos != 2:
            raise MalformedPacket(f"UNSUBACK with remaining length {end - pos}")
        packet_id = (p[pos] << 8) | p[pos + 1]
        _require_packet_id(packet_id, P_UNSUBACK)
        return Unsuback(packet_id, [], None)
    packet_id = _read_u16(p, &pos, end)
    _require_packet_id(packet_id, P_UNSUBACK)
    props = _read_properties(p, &pos, end, P_UNSUBACK)
    cdef list codes = [p[i] for i in range(pos, end)]
    if not codes:
        raise ProtocolError("UNSUBACK without reason codes (3.11.3)")
    for code in codes:
        if code not in UNSUBACK_REASON_CODES:
            raise ProtocolError(f"reason code 0x{code:02X} not allowed in UNSUBACK")
    return Unsuback(packet_id, codes, props)


cdef object _decode_disconnect(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end, int version):
    cdef int reason
    if version != 5:
        if end != pos:
            raise MalformedPacket(f"DISCONNECT with remaining length {end - pos}")
        return Disconnect()
    if pos == end:
        return Disconnect()
    reason = p[pos]
    if reason not in DISCONNECT_REASON_CODES:
        raise ProtocolError(f"reason code 0x{reason:02X} not allowed in DISCONNECT")
    props = None
    if end - pos > 1:
        pos += 1
        props = _read_properties(p, &pos, end, P_DISCONNECT)
        _end_of(pos, end, P_DISCONNECT)
    return Disconnect(reason, props)


cdef object _decode_auth(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end):
    cdef int reason
    if pos == end:
        return Auth()
    reason = p[pos]
    if reason not in AUTH_REASON_CODES:
        raise ProtocolError(f"reason code 0x{reason:02X} not allowed in AUTH")
    pos += 1
    props = _read_properties(p, &pos, end, P_AUTH)
    _end_of(pos, end, P_AUTH)
    return Auth(reason, props)


# ---------------------------------------------------------------- the streaming decoder

# Fixed-header flag nibble per packet type [MQTT-2.1.3-1]; -1 = PUBLISH, -2 = reserved.
cdef int _FLAGS[16]
_FLAGS[:] = [-2, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0]


cdef class Decoder:
    """Turns a byte stream into packets, however the stream is chunked.

    ``protocol_version`` None makes a server-side decoder: the first packet
    must be CONNECT [MQTT-3.1.0-1] and sets the version. ``max_packet_size``
    bounds the whole packet (fixed header included); a larger one raises
    :class:`PacketTooLarge` as soon as its fixed header is complete, before
    its body is buffered. Both are plain attributes a caller may change.
    """

    # One per connection, so kept small (issue 17: 104 -> 80 bytes): the four C ints side
    # by side (no padding); protocol_version is read back from _version, and the limit as a
    # C integer is worked out per _parse call instead of kept.
    cdef int _version  # -1 while unknown
    cdef public bint allow_control_characters
    cdef bint _server
    cdef bint _connected
    cdef public object max_packet_size
    # The start of an incomplete packet; None while there is none, so an idle connection's
    # decoder holds no buffer (issue 17). Never an empty bytearray.
    cdef bytearray _buf
    cdef object _error

    def __init__(self, protocol_version=None, max_packet_size=MAX_PACKET_SIZE,
                 allow_control_characters=True):
        if protocol_version is not None and protocol_version not in (3, 4, 5):
            raise ValueError(f"unsupported protocol version {protocol_version!r}")
        self.protocol_version = protocol_version
        self.max_packet_size = max_packet_size
        self.allow_control_characters = allow_control_characters
        self._buf = None
        self._server = protocol_version is None
        self._connected = False
        self._error = None

    @property
    def protocol_version(self):
        return None if self._version < 0 else self._version

    @protocol_version.setter
    def protocol_version(self, value):
        self._version = -1 if value is None else value

    @property
    def buffered(self):
        """Bytes held back as the start of an incomplete packet."""
        return 0 if self._buf is None else len(self._buf)

    def feed(self, data):
        """Add ``data`` (any bytes-like) and return the packets it completes."""
        cdef Py_buffer view
        cdef list out = []
        cdef Py_ssize_t consumed = 0
        if self._error is not None:
            err = copy.copy(self._error)
            err.packets = []
            raise err
        if self._buf is None:
            # Nothing pending: parse straight from the caller's buffer.
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                try:
                    consumed = self._parse(<const uint8_t *>view.buf, view.len, out)
                    if consumed < view.len:
                        self._buf = PyByteArray_FromStringAndSize(
                            <char *>view.buf + consumed, view.len - consumed)
                finally:
                    PyBuffer_Release(&view)
            except MQTTError as err:
                self._fail(err, out)
                raise
            return out
        need = self._missing()
        if need > 0:
            return self._feed_completing(data, need, out)
        self._buf += data
        PyObject_GetBuffer(self._buf, &view, PyBUF_SIMPLE)
        try:
            try:
                consumed = self._parse(<const uint8_t *>view.buf, view.len, out)
            finally:
                PyBuffer_Release(&view)
        except MQTTError as err:
            self._fail(err, out)
            raise
        if consumed:
            self._consume(consumed)
        return out

    cdef inline void _consume(self, Py_ssize_t consumed):
        """Drop ``consumed`` bytes from the front of the buffer; no buffer once it is empty."""
        if consumed >= len(self._buf):
            self._buf = None
        else:
            del self._buf[:consumed]

    cdef Py_ssize_t _missing(self):
        """Bytes still missing for the packet held in the buffer, once its fixed header is
        complete and well-formed; 0 when unknown (the general path handles that case)."""
        cdef bytearray buf = self._buf
        cdef Py_ssize_t n = len(buf), i = 1
        cdef uint32_t rl = 0
        cdef int shift = 0
        cdef uint8_t b
        while i < n and i <= 4:
            b = buf[i]
            i += 1
            rl |= (<uint32_t>(b & 0x7F)) << shift
            if not b & 0x80:
                return i + <Py_ssize_t>rl - n if i + <Py_ssize_t>rl > n else 0
            shift += 7
        return 0

    cdef list _feed_completing(self, object data, Py_ssize_t need, list out):
        """A packet is pending: complete it from the front of ``data`` only, then parse the
        rest straight from ``data``. (Appending every read to the buffer and deleting it again
        copied each byte twice: 18 % of the broker's CPU with 16 KiB payloads, where nearly
        every read ends inside a packet.) Same packets and errors as the general path."""
        cdef Py_buffer view
        cdef Py_ssize_t consumed
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            try:
                if view.len < need:
                    self._append(<const char *>view.buf, view.len)
                    return out
                self._append(<const char *>view.buf, need)
                self._parse_buffer(out)
                if self._buf:  # cannot happen for a well-formed header; stay exact anyway
                    self._append(<const char *>view.buf + need, view.len - need)
                    self._parse_buffer(out)
                    return out
                consumed = self._parse(<const uint8_t *>view.buf + need, view.len - need, out)
                if consumed < view.len - need:
                    self._buf = PyByteArray_FromStringAndSize(
                        <char *>view.buf + need + consumed, view.len - need - consumed)
            finally:
                PyBuffer_Release(&view)
        except MQTTError as err:
            self._fail(err, out)
            raise
        return out

    cdef int _append(self, const char *p, Py_ssize_t n) except -1:
        """Copy p[0:n] onto the end of the buffer: once, in place (``+= bytes(...)`` made
        a temporary bytes object first, copying each byte of a packet that spans reads
        twice; 16 KiB payloads end up here for every read that ends inside a packet)."""
        cdef Py_ssize_t old = PyByteArray_GET_SIZE(self._buf)
        PyByteArray_Resize(self._buf, old + n)
        memcpy(PyByteArray_AS_STRING(self._buf) + old, p, n)
        return 0

    cdef int _parse_buffer(self, list out) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t consumed
        PyObject_GetBuffer(self._buf, &view, PyBUF_SIMPLE)
        try:
            consumed = self._parse(<const uint8_t *>view.buf, view.len, out)
        finally:
            PyBuffer_Release(&view)
        if consumed:
            self._consume(consumed)
        return 0

    cdef void _fail(self, object err, list out):
        self._buf = None
        err.packets = out
        self._error = err

    cdef Py_ssize_t _parse(self, const uint8_t *p, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t pos = 0, i, end
        cdef uint32_t rl
        cdef int ptype, flags, shift
        cdef uint8_t b
        # The limit is a plain attribute: read it once per call, as a C integer.
        limit = self.max_packet_size
        cdef Py_ssize_t max_size = limit if limit < MAX_PACKET_SIZE else MAX_PACKET_SIZE
        while pos < n:
            b = p[pos]
            ptype = b >> 4
            flags = b & 0x0F
            self._check_header(ptype, flags)
            # Remaining length (1.5.5 / 2.1.4).
            rl = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= n:
                    return pos
                b = p[i]
                i += 1
                rl |= (<uint32_t>(b & 0x7F)) << shift
                if not b & 0x80:
                    if b == 0 and i - pos > 2:
                        raise MalformedPacket("non-minimal remaining length [MQTT-1.5.5-1]")
                    break
                if i - pos > 4:
                    raise MalformedPacket("remaining length longer than four bytes")
                shift += 7
            end = i + rl
            if end - pos > max_size:
                raise PacketTooLarge(
                    f"{_NAMES[ptype]} of {end - pos} bytes exceeds the maximum packet "
                    f"size {self.max_packet_size}")
            if end > n:
                return pos
            if ptype == P_PUBLISH:
                out.append(_decode_publish(p, i, end, flags, self._version,
                                           self.allow_control_characters))
            elif P_PUBACK <= ptype <= P_PUBCOMP:
                out.append(_decode_ack(p, i, end, ptype, self._version))
            elif ptype == P_CONNECT:
                try:
                    pkt = _decode_connect(p, i, end, flags, self.allow_control_characters)
                except MQTTError:
                    if self._version < 0:  # answer in the client's version
                        self.protocol_version = _connect_level(p, i, end)
                    raise
                if self._version < 0:
                    self.protocol_version = pkt.protocol_version
                self._connected = True
                out.append(pkt)
            elif ptype == P_PINGREQ or ptype == P_PINGRESP:
                if end != i:
                    raise MalformedPacket(f"{_NAMES[ptype]} with remaining length {end - i}")
                out.append(_new_ping(ptype))
            elif ptype == P_CONNACK:
                out.append(_decode_connack(p, i, end, self._version))
            elif ptype == P_SUBSCRIBE:
                out.append(_decode_subscribe(p, i, end, self._version,
                                             self.allow_control_characters))
            elif ptype == P_SUBACK:
                out.append(_decode_suback(p, i, end, self._version))
            elif ptype == P_UNSUBSCRIBE:
                out.append(_decode_unsubscribe(p, i, end, self._version,
                                               self.allow_control_characters))
            elif ptype == P_UNSUBACK:
                out.append(_decode_unsuback(p, i, end, self._version))
            elif ptype == P_DISCONNECT:
                out.append(_decode_disconnect(p, i, end, self._version))
            else:
                out.append(_decode_auth(p, i, end))
            pos = end
        return pos

    cdef int _check_header(self, int ptype, int flags) except -1:
        """Fixed-header checks that need no more than the first byte."""
        cdef int required = _FLAGS[ptype]
        if required == -2:
            raise MalformedPacket("reserved packet type 0 (2.1.2)")
        if self._server:
            if not self._connected:
                if ptype != P_CONNECT:
                    raise ProtocolError(
                        f"first packet is {_NAMES[ptype]}, not CONNECT [MQTT-3.1.0-1]")
            elif ptype == P_CONNECT:
                raise ProtocolError("second CONNECT [MQTT-3.1.0-2]")
            elif (ptype == P_CONNACK or ptype == P_SUBACK or ptype == P_UNSUBACK
                  or ptype == P_PINGRESP):
                raise ProtocolError(f"{_NAMES[ptype]} sent to a server")
        if ptype == P_AUTH and self._version != -1 and self._version != 5:
            raise MalformedPacket("packet type 15 is reserved before MQTT 5")
        if required == -1:
            if flags & 6 == 6:
                raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
            if flags & 8 and not flags & 6:
                raise MalformedPacket("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
        elif flags != required and ptype != P_CONNECT:  # CONNECT: see _decode_connect
            raise MalformedPacket(
                f"reserved flag bits 0x{flags:X} in {_NAMES[ptype]} [MQTT-2.1.3-1]")
        return 0


# ---------------------------------------------------------------- encoders

cdef inline int _varint_write(uint32_t value, uint8_t *out):
    cdef int n = 0
    while True:
        if value < 128:
            out[n] = <uint8_t>value
            return n + 1
        out[n] = <uint8_t>((value & 0x7F) | 0x80)
        value >>= 7
        n += 1


cdef inline int _varint_size(Py_ssize_t value):
    if value < 128:
        return 1
    if value < 16384:
        return 2
    if value < 2097152:
        return 3
    return 4


cdef bytes _varint(object value):
    cdef uint8_t out[4]
    if not 0 <= value <= 268435455:
        raise ValueError(f"variable byte integer out of range: {value}")
    return PyBytes_FromStringAndSize(<char *>out, _varint_write(<uint32_t>value, out))


cdef bytes _binary(object data):
    if type(data) is not bytes:
        data = bytes(data)
    cdef Py_ssize_t n = len(data)
    if n > 65535:
        raise ValueError(f"string or binary data of {n} bytes exceeds 65535")
    return n.to_bytes(2, "big") + data


cdef bytes _string(str text):
    return _binary(text.encode("utf-8"))


cdef bytes _packet(int first, bytes body):
    return bytes((first,)) + _varint(len(body)) + body


cdef Py_ssize_t _utf8_len(object text) except -1:
    cdef Py_ssize_t n
    PyUnicode_AsUTF8AndSize(text, &n)
    if n > 65535:
        raise ValueError(f"string or binary data of {n} bytes exceeds 65535")
    return n


cdef inline char *_put_utf8(char *w, object text):
    cdef Py_ssize_t n
    cdef const char *s = PyUnicode_AsUTF8AndSize(text, &n)
    w[0] = <char>(n >> 8)
    w[1] = <char>(n & 0xFF)
    memcpy(w + 2, s, n)
    return w + 2 + n


DEF NO_ROOM = -2


cdef Py_ssize_t _props_walk(object props, int ptype, char *w, char *limit, bint exact) except -1:
    """Size (w == NULL) or write into w..limit the property list, without its length.

    Returns the size. Every write is bounds-checked: with ``exact`` (writing
    into a buffer sized by an earlier sizing pass) running out of room means
    user code (a __bytes__ or __index__) changed the properties in between, a
    ValueError; without it (a scratch buffer) it returns NO_ROOM.
    """
    cdef Py_ssize_t size = 0, n
    cdef int k, pid, vtype
    cdef long ival
    cdef PyObject *raw
    cdef bytes data
    cdef bint fast = _PROPS_FAST and type(props) is Properties
    for k in range(_NPROPS):
        pid = _ENC_ID[k]
        if fast:
            # Most slots are None: skip them without touching reference counts.
            raw = (<PyObject **>((<char *><PyObject *>props) + _ENC_OFF[k]))[0]
            if raw == NULL or raw == <PyObject *>None:
                continue
            value = <object>raw
        else:
            value = getattr(props, _PROP_NAMES[_PSLOT[pid]])
            if value is None:
                continue
        if not (_PALLOWED[pid] >> ptype) & 1:
            raise ValueError(f"property {_PNAME[pid]} not allowed in {_ptype_name(ptype)}")
        vtype = _PTYPE[pid]
        if vtype == BYTE_T or vtype == TWO_T or vtype == FOUR_T:
            try:
                ival = value  # OverflowError beyond a C long, like int.to_bytes
            except OverflowError:
                if vtype == BYTE_T:  # the pure twin's bytes((v,)) says ValueError
                    raise ValueError("bytes must be in range(0, 256)") from None
                raise
            if vtype == BYTE_T:
                if ival < 0 or ival > 0xFF:
                    raise ValueError("bytes must be in range(0, 256)")
                n = 2
            elif vtype == TWO_T:
                if ival < 0 or ival > 0xFFFF:
                    raise OverflowError("int too big to convert")
                n = 3
            else:
                if ival < 0 or ival > 0xFFFFFFFF:
                    raise OverflowError("int too big to convert")
                n = 5
            size += n
            if w != NULL:
                if w + n > limit:
                    return _no_room(exact)
                w[0] = <char>pid
                if vtype == BYTE_T:
                    w[1] = <char>ival
                elif vtype == TWO_T:
                    w[1] = <char>(ival >> 8)
                    w[2] = <char>(ival & 0xFF)
                else:
                    w[1] = <char>((ival >> 24) & 0xFF)
                    w[2] = <char>((ival >> 16) & 0xFF)
                    w[3] = <char>((ival >> 8) & 0xFF)
                    w[4] = <char>(ival & 0xFF)
                w += n
        elif vtype == VARINT_T:
            for ident in value:
                ival = ident
                if ival < 0 or ival > 268435455:
                    raise ValueError(f"variable byte integer out of range: {ident}")
                n = 1 + _varint_size(ival)
                size += n
                if w != NULL:
                    if w + n > limit:
                        return _no_room(exact)
                    w[0] = <char>pid
                    _varint_write(<uint32_t>ival, <uint8_t *>w + 1)
                    w += n
        elif vtype == UTF8_T:
            if not isinstance(value, str):
                raise TypeError(f"property {_PNAME[pid]} must be str")
            n = 3 + _utf8_len(value)
            size += n
            if w != NULL:
                if w + n > limit:
                    return _no_room(exact)
                w[0] = <char>pid
                w = _put_utf8(w + 1, value)
        elif vtype == BINARY_T:
            data = value if type(value) is bytes else bytes(value)
            n = len(data)
            if n > 65535:
                raise ValueError(f"string or binary data of {n} bytes exceeds 65535")
            size += 3 + n
            if w != NULL:
                if w + 3 + n > limit:
                    return _no_room(exact)
                w[0] = <char>pid
                w[1] = <char>(n >> 8)
                w[2] = <char>(n & 0xFF)
                memcpy(w + 3, PyBytes_AS_STRING(data), n)
                w += 3 + n
        else:
            for key, val in value:
                if not isinstance(key, str) or not isinstance(val, str):
                    raise TypeError("user property keys and values must be str")
                n = 5 + _utf8_len(key) + _utf8_len(val)
                size += n
                if w != NULL:
                    if w + n > limit:
                        return _no_room(exact)
                    w[0] = <char>pid
                    w = _put_utf8(_put_utf8(w + 1, key), val)
    if exact and w != limit:
        raise ValueError("properties changed while being encoded")
    return size


cdef Py_ssize_t _no_room(bint exact) except -1:
    if exact:
        raise ValueError("properties changed while being encoded")
    return NO_ROOM


cdef bytes _properties(object props, int ptype):
    """The property section, its length prefix included."""
    cdef Py_ssize_t size
    cdef int vlen
    cdef bytes out
    cdef char *w
    if props is None:
        return b"\x00"
    size = _props_walk(props, ptype, NULL, NULL, False)
    if size > 268435455:
        raise ValueError(f"variable byte integer out of range: {size}")
    vlen = _varint_size(size)
    out = PyBytes_FromStringAndSize(NULL, vlen + size)
    w = PyBytes_AS_STRING(out)
    _varint_write(<uint32_t>size, <uint8_t *>w)
    _props_walk(props, ptype, w + vlen, w + vlen + size, True)
    return out


cdef inline bint _props_empty(object props) except -1:
    cdef int i
    cdef PyObject *raw
    if props is None:
        return True
    if _PROPS_FAST and type(props) is Properties:
        for i in range(_NPROPS):
            raw = (<PyObject **>((<char *><PyObject *>props) + _ENC_OFF[i]))[0]
            if raw != NULL and raw != <PyObject *>None:
                return False
        return True
    return props.is_empty()


cdef bytes _publish(object topic, object payload, int qos, bint retain, bint dup,
                    int packet_id, object properties, int protocol_version, bint split,
                    list tail_box):
    """Encode a PUBLISH. With ``split``, stop before the packet id and put the rest in tail."""
    cdef Py_buffer tview, pview
    cdef const char *tptr
    cdef Py_ssize_t tlen, plen, prlen = 0, length, hlen, props_size = 0
    cdef bytes out, tail
    cdef char *w
    cdef int vlen
    cdef bint own_t = False, own_p = False, in_scratch = False
    cdef char scratch[512]
    if qos < 0 or qos > 2:
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
    if isinstance(topic, str):
        tptr = PyUnicode_AsUTF8AndSize(topic, &tlen)
    else:
        PyObject_GetBuffer(topic, &tview, PyBUF_SIMPLE)
        own_t = True
        tptr = <const char *>tview.buf
        tlen = tview.len
    try:
        if tlen > 65535:
            raise ValueError(f"string or binary data of {tlen} bytes exceeds 65535")
        if isinstance(payload, str):
            payload = (<str>payload).encode("utf-8")
        PyObject_GetBuffer(payload, &pview, PyBUF_SIMPLE)
        own_p = True
        plen = pview.len
        if protocol_version == 5:
            # Property length prefix + properties, written in place below.
            if properties is None:
                prlen = 1
            else:
                # Usually the properties fit a scratch buffer: one pass, then a copy.
                props_size = _props_walk(properties, P_PUBLISH, scratch,
                                         scratch + sizeof(scratch), False)
                in_scratch = props_size != NO_ROOM
                if not in_scratch:
                    props_size = _props_walk(properties, P_PUBLISH, NULL, NULL, False)
                if props_size > 268435455:
                    raise ValueError(f"variable byte integer out of range: {props_size}")
                prlen = _varint_size(props_size) + props_size
        length = 2 + tlen + prlen + plen + (2 if qos else 0)
        if length > 268435455:
            raise ValueError(f"variable byte integer out of range: {length}")
        vlen = _varint_size(length)
        hlen = 1 + vlen + 2 + tlen
        if split and qos:
            out = PyBytes_FromStringAndSize(NULL, hlen)
        else:
            out = PyBytes_FromStringAndSize(NULL, 1 + vlen + length)
        w = PyBytes_AS_STRING(out)
        w[0] = <char>(0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0))
        _varint_write(<uint32_t>length, <uint8_t *>w + 1)
        w += 1 + vlen
        w[0] = <char>(tlen >> 8)
        w[1] = <char>(tlen & 0xFF)
        memcpy(w + 2, tptr, tlen)
        w += 2 + tlen
        if split and qos:
            tail = PyBytes_FromStringAndSize(NULL, prlen + plen)
            tail_box.append(tail)
            w = PyBytes_AS_STRING(tail)
        elif qos:
            w[0] = <char>(packet_id >> 8)
            w[1] = <char>(packet_id & 0xFF)
            w += 2
        if prlen:
            if properties is None:
                w[0] = 0
                w += 1
            else:
                w += _varint_write(<uint32_t>props_size, <uint8_t *>w)
                if in_scratch:
                    memcpy(w, scratch, props_size)
                else:
                    _props_walk(properties, P_PUBLISH, w, w + props_size, True)
                w += props_size
        memcpy(w, pview.buf, plen)
        return out
    finally:
        if own_p:
            PyBuffer_Release(&pview)
        if own_t:
            PyBuffer_Release(&tview)


def publish_parts(topic, payload, int qos=0, retain=False, dup=False, properties=None,
                  int protocol_version=4):
    """A PUBLISH split around its packet identifier, for fan-out.

    QoS 0: the packet is ``head + tail`` and ``tail == b""``. QoS 1/2: the
    packet is ``head + packet_id.to_bytes(2, "big") + tail``.
    """
    cdef list tail_box = []
    cdef bytes head = _publish(topic, payload, qos, retain, dup, 0, properties,
                               protocol_version, True, tail_box)
    return head, (tail_box[0] if tail_box else b"")


def encode_publish(topic, payload, int qos=0, retain=False, dup=False, int packet_id=0,
                   properties=None, int protocol_version=4):
    """One PUBLISH packet."""
    if qos and not 1 <= packet_id <= 65535:
        if 0 <= qos <= 2:
            raise ValueError(
                f"packet identifier must be 1..65535 for QoS {qos}, not {packet_id!r}")
    return _publish(topic, payload, qos, retain, dup, packet_id, properties, protocol_version,
                    False, None)


cdef bytes _encode_ack(object pkt, int first, int version):
    cdef uint8_t out[5]
    cdef int packet_id
    cdef int reason
    # Range-check as Python ints before the C casts, raising what the pure twin's
    # int.to_bytes / bytes() raise: a truncated packet id would be a wrong packet.
    pid_obj = pkt.packet_id
    if not 0 <= pid_obj <= 0xFFFF:
        raise OverflowError(f"packet identifier out of range: {pid_obj!r}")
    packet_id = pid_obj
    out[0] = first
    out[2] = <uint8_t>(packet_id >> 8)
    out[3] = <uint8_t>(packet_id & 0xFF)
    if version != 5:
        out[1] = 2
        return PyBytes_FromStringAndSize(<char *>out, 4)
    reason_obj = pkt.reason_code
    if not 0 <= reason_obj <= 0xFF:
        raise ValueError(f"reason code out of range: {reason_obj!r}")
    reason = reason_obj
    props = pkt.properties
    if _props_empty(props):
        if reason == 0:
            out[1] = 2
            return PyBytes_FromStringAndSize(<char *>out, 4)
        out[1] = 3
        out[4] = <uint8_t>reason
        return PyBytes_FromStringAndSize(<char *>out, 5)
    return _packet(first, PyBytes_FromStringAndSize(<char *>out + 2, 2) + bytes((reason,))
                   + _properties(props, first >> 4))


def _payload_bytes(payload):
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return bytes(payload)


def _encode_connect(p, int version):
    if version not in (3, 4, 5):
        raise ValueError(f"unsupported protocol version {version!r}")
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.password is not None:
        flags |= 0x40
    if p.username is not None:
        flags |= 0x80
    parts = [_string("MQIsdp" if version == 3 else "MQTT"),
             bytes((version, flags)), p.keep_alive.to_bytes(2, "big")]
    if version == 5:
        parts.append(_properties(p.properties, P_CONNECT))
    parts.append(_string(p.client_id))
    if will is not None:
        if version == 5:
            parts.append(_properties(will.properties, 0))
        parts.append(_string(will.topic))
        parts.append(_binary(_payload_bytes(will.payload)))
    if p.username is not None:
        parts.append(_string(p.username))
    if p.password is not None:
        parts.append(_binary(_payload_bytes(p.password)))
    return _packet(0x10, b"".join(parts))


def _encode_connack(p, int version):
    body = bytes((1 if p.session_present else 0, p.reason_code))
    if version == 5:
        body += _properties(p.properties, P_CONNACK)
    return _packet(0x20, body)


def _encode_subscribe(p, int version):
    parts = [p.packet_id.to_bytes(2, "big")]
    if version == 5:
        parts.append(_properties(p.properties, P_SUBSCRIBE))
    for sub in p.subscriptions:
        opts = sub.qos
        if version == 5:
            opts |= ((4 if sub.no_local else 0) | (8 if sub.retain_as_published else 0)
                     | (sub.retain_handling << 4))
        parts.append(_string(sub.topic_filter) + bytes((opts,)))
    return _packet(0x82, b"".join(parts))


def _encode_suback(p, int version):
    body = p.packet_id.to_bytes(2, "big")
    if version == 5:
        body += _properties(p.properties, P_SUBACK)
    return _packet(0x90, body + bytes(p.reason_codes))


def _encode_unsubscribe(p, int version):
    parts = [p.packet_id.to_bytes(2, "big")]
    if version == 5:
        parts.append(_properties(p.properties, P_UNSUBSCRIBE))
    for filt in p.topic_filters:
        parts.append(_string(filt))
    return _packet(0xA2, b"".join(parts))


def _encode_unsuback(p, int version):
    body = p.packet_id.to_bytes(2, "big")
    if version == 5:
        body += _properties(p.properties, P_UNSUBACK) + bytes(p.reason_codes)
    return _packet(0xB0, body)


def _encode_pingreq(p, int version):
    return b"\xc0\x00"


def _encode_pingresp(p, int version):
    return b"\xd0\x00"


def _encode_disconnect(p, int version):
    no_props = _props_empty(p.properties)
    if version != 5 or (p.reason_code == 0 and no_props):
        return b"\xe0\x00"
    if no_props:
        return bytes((0xE0, 1, p.reason_code))
    return _packet(0xE0, bytes((p.reason_code,)) + _properties(p.properties, P_DISCONNECT))


def _encode_auth(p, int version):
    if version != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    if p.reason_code == 0 and _props_empty(p.properties):
        return b"\xf0\x00"
    return _packet(0xF0, bytes((p.reason_code,)) + _properties(p.properties, P_AUTH))


cdef dict _ENCODERS = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet, int protocol_version=4):
    """The wire bytes of ``packet`` for ``protocol_version`` (3, 4 or 5).

    MQTT 5 acknowledgements use the short forms where allowed: reason code 0
    and no properties gives a two-byte PUBACK/PUBREC/PUBREL/PUBCOMP body and
    an empty DISCONNECT/AUTH body. For CONNECT the protocol name and level
    come from ``protocol_version``.
    """
    cls = type(packet)
    cdef _SlotFiller f = _PUBLISH_F
    if cls is Publish:
        if f.fast:  # read the fields straight from the slots
            topic, payload, qos, retain, dup, packet_id, props = (
                f.get(packet, 0), f.get(packet, 1), f.get(packet, 2), f.get(packet, 3),
                f.get(packet, 4), f.get(packet, 5), _publish_properties(packet))
        else:
            topic, payload, qos, retain, dup, packet_id, props = (
                packet.topic, packet.payload, packet.qos, packet.retain, packet.dup,
                packet.packet_id, packet.properties)
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if qos:
            if not 1 <= packet_id <= 65535:
                raise ValueError(f"packet identifier must be 1..65535 for QoS {qos}, "
                                 f"not {packet_id!r}")
        else:
            packet_id = 0  # not on the wire at QoS 0, whatever the field holds
        return _publish(topic, payload, qos, retain, dup, packet_id, props, protocol_version,
                        False, None)
    if cls is Puback:
        return _encode_ack(packet, 0x40, protocol_version)
    if cls is Pubrec:
        return _encode_ack(packet, 0x50, protocol_version)
    if cls is Pubrel:
        return _encode_ack(packet, 0x62, protocol_version)
    if cls is Pubcomp:
        return _encode_ack(packet, 0x70, protocol_version)
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    return encoder(packet, protocol_version)


def _fast_construction():
    """Which packet classes are built by filling slots directly (for tests and benchmarks)."""
    return {f.cls.__name__: f.fast
            for f in (_PUBLISH_F, _PUBACK_F, _PUBREC_F, _PUBREL_F, _PUBCOMP_F, _PROPS_F,
                      _PINGREQ_F, _PINGRESP_F, _SUBSCRIPTION_F, _SUBSCRIBE_F)}
