# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""MQTT data primitives, Cython twin of ``_primitives_py`` over csrc/ kernels.

Same names, signatures, exceptions and messages as the pure twin. Byte inputs
are read in place through the buffer protocol (bytes and bytearray without even
a Py_buffer); str inputs use CPython's cached UTF-8 form, so no copies.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_CheckExact, PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.unicode cimport PyUnicode_Check
from cpython.long cimport PyLong_CheckExact
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memchr

from mqttfast.codec._kernels cimport *

from .constants import ReasonCode
from .errors import MalformedPacket, MQTTError
from . import _primitives_py as _py

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    object PyBytes_FromStringAndSize(const char *v, Py_ssize_t len)

__all__ = [
    "decode_varint",
    "encode_varint",
    "decode_utf8",
    "has_discouraged_code_points",
    "validate_topic_name",
    "validate_topic_filter",
    "topic_matches",
]

cdef object _TOPIC_NAME_INVALID = ReasonCode.TOPIC_NAME_INVALID
cdef object _TOPIC_FILTER_INVALID = ReasonCode.TOPIC_FILTER_INVALID
cdef tuple _SMALL_VARINTS = tuple(bytes((i,)) for i in range(128))


cdef inline Py_ssize_t _acquire(object obj, Py_buffer *view, const uint8_t **ptr,
                                bint *held) except -1:
    """Point *ptr at obj's bytes. If *held is set afterwards, the caller must
    _release(view, held) when done (bytes and bytearray need no Py_buffer)."""
    held[0] = False
    if PyBytes_CheckExact(obj):
        ptr[0] = <const uint8_t *>PyBytes_AS_STRING(obj)
        return PyBytes_GET_SIZE(obj)
    if PyByteArray_CheckExact(obj):
        ptr[0] = <const uint8_t *>PyByteArray_AS_STRING(obj)
        return PyByteArray_GET_SIZE(obj)
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    held[0] = True
    ptr[0] = <const uint8_t *>view.buf
    return view.len


cdef inline void _release(Py_buffer *view, bint *held) noexcept:
    if held[0]:
        held[0] = False
        PyBuffer_Release(view)


cdef inline const uint8_t *_text_utf8(object s, Py_ssize_t *n) except? NULL:
    """UTF-8 of str s (cached inside the str by CPython). A str holding a lone
    surrogate has no UTF-8 form: return NULL, without an exception."""
    cdef const char *p
    try:
        p = PyUnicode_AsUTF8AndSize(s, n)
    except UnicodeEncodeError:
        return NULL
    return <const uint8_t *>p


cdef inline bytes _surrogatepass(object s):
    # Byte equality of these encodings equals str equality, so matching a str
    # with lone surrogates gives the pure twin's answer.
    return s.encode("utf-8", "surrogatepass")


def decode_varint(buf, Py_ssize_t pos=0):
    """Decode a Variable Byte Integer at buf[pos]: (value, next_pos), or None
    when more bytes are needed; MalformedPacket if over-long or non-minimal."""
    cdef Py_buffer view
    cdef bint held = False
    cdef const uint8_t *p
    cdef Py_ssize_t n
    cdef uint32_t value = 0
    cdef int r
    if pos < 0:
        raise ValueError("pos must not be negative")
    n = _acquire(buf, &view, &p, &held)
    if pos >= n:
        _release(&view, &held)
        return None
    r = mqf_varint_decode(p + pos, <size_t>(n - pos), &value)
    _release(&view, &held)
    if r > 0:
        return (value, pos + r)
    if r == MQF_VARINT_INCOMPLETE:
        return None
    if r == MQF_VARINT_NON_MINIMAL:
        raise MalformedPacket(_py.MSG_VARINT_NON_MINIMAL)
    raise MalformedPacket(_py.MSG_VARINT_TOO_LONG)


def encode_varint(value):
    """Encode value (0..268435455) as a minimal Variable Byte Integer."""
    cdef long long v
    cdef uint8_t out[4]
    cdef int n
    if not PyLong_CheckExact(value):
        value = PyNumber_Index(value)  # ints and int-likes only, as in the pure twin
    try:
        v = value
    except OverflowError:
        raise ValueError(_py.MSG_VARINT_RANGE) from None
    if 0 <= v < 128:
        return _SMALL_VARINTS[v]
    if v < 0 or v > MQF_VARINT_MAX:
        raise ValueError(_py.MSG_VARINT_RANGE)
    n = mqf_varint_encode(<uint32_t>v, out)
    return PyBytes_FromStringAndSize(<const char *>out, n)


def decode_utf8(buf):
    """Decode an MQTT UTF-8 string body; MalformedPacket if not well-formed
    UTF-8, if it encodes a surrogate, or if it contains U+0000."""
    cdef Py_buffer view
    cdef bint held = False
    cdef const uint8_t *p
    cdef Py_ssize_t n = _acquire(buf, &view, &p, &held)
    cdef int r
    try:
        if memchr(p, 0, <size_t>n) != NULL:
            # Rare: let the kernel say which fault wins (ill-formed beats U+0000).
            r = mqf_utf8_validate(p, <size_t>n)
            raise MalformedPacket(
                _py.MSG_UTF8_INVALID if r == MQF_UTF8_INVALID else _py.MSG_UTF8_NUL)
        # CPython's strict decoder accepts exactly RFC 3629 UTF-8 (no overlongs,
        # no surrogates, nothing above U+10FFFF), the same set as
        # mqf_utf8_validate, and decoding is the one pass we need anyway.
        try:
            return PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
        except UnicodeDecodeError:
            raise MalformedPacket(_py.MSG_UTF8_INVALID) from None
    finally:
        _release(&view, &held)


def has_discouraged_code_points(str s):
    """True if s holds a control character or a Unicode non-character (1.5.4)."""
    cdef Py_ssize_t n
    cdef const uint8_t *p = _text_utf8(s, &n)
    cdef bytes raw
    if p == NULL:
        raw = _surrogatepass(s)
        return mqf_utf8_has_discouraged(
            <const uint8_t *>PyBytes_AS_STRING(raw), <size_t>PyBytes_GET_SIZE(raw)) != 0
    return mqf_utf8_has_discouraged(p, <size_t>n) != 0


cdef inline int _check_topic(object topic, bint is_filter) except -1:
    cdef Py_buffer view
    cdef bint held = False
    cdef const uint8_t *p
    cdef Py_ssize_t n
    cdef int r
    if PyUnicode_Check(topic):
        p = _text_utf8(topic, &n)
        if p == NULL:
            return MQF_UTF8_INVALID
        if is_filter:
            return mqf_topic_filter_validate(p, <size_t>n, 0)
        return mqf_topic_name_validate(p, <size_t>n, 0)
    n = _acquire(topic, &view, &p, &held)
    if is_filter:
        r = mqf_topic_filter_validate(p, <size_t>n, 1)
    else:
        r = mqf_topic_name_validate(p, <size_t>n, 1)
    _release(&view, &held)
    return r


def validate_topic_name(topic):
    """Raise MQTTError(0x90) unless topic is a valid PUBLISH topic name."""
    cdef int r = _check_topic(topic, False)
    if r == MQF_OK:
        return None
    if r == MQF_TOPIC_EMPTY:
        msg = _py.MSG_TOPIC_EMPTY
    elif r == MQF_UTF8_INVALID:
        msg = _py.MSG_TOPIC_INVALID_UTF8
    elif r == MQF_TOPIC_TOO_LONG:
        msg = _py.MSG_TOPIC_TOO_LONG
    elif r == MQF_TOPIC_NUL:
        msg = _py.MSG_TOPIC_NUL
    else:
        msg = _py.MSG_TOPIC_WILDCARD
    raise MQTTError(_TOPIC_NAME_INVALID, msg)


def validate_topic_filter(filt):
    """Raise MQTTError(0x8F) unless filt is a valid topic filter."""
    cdef int r = _check_topic(filt, True)
    if r == MQF_OK:
        return None
    if r == MQF_TOPIC_EMPTY:
        msg = _py.MSG_FILTER_EMPTY
    elif r == MQF_UTF8_INVALID:
        msg = _py.MSG_FILTER_INVALID_UTF8
    elif r == MQF_TOPIC_TOO_LONG:
        msg = _py.MSG_FILTER_TOO_LONG
    elif r == MQF_TOPIC_NUL:
        msg = _py.MSG_FILTER_NUL
    elif r == MQF_FILTER_HASH:
        msg = _py.MSG_FILTER_HASH
    else:
        msg = _py.MSG_FILTER_PLUS
    raise MQTTError(_TOPIC_FILTER_INVALID, msg)


def topic_matches(filt, topic):
    """True if topic name `topic` matches topic filter `filt` (4.7), with the
    '$' rule [MQTT-4.7.2-1]. Inputs are assumed valid."""
    cdef Py_buffer fview, tview
    cdef const uint8_t *fp = NULL
    cdef const uint8_t *tp = NULL
    cdef Py_ssize_t fn = 0, tn = 0
    cdef bytes fraw = None, traw = None
    cdef int r
    cdef bint fheld = False, theld = False
    try:
        if PyUnicode_Check(filt):
            fp = _text_utf8(filt, &fn)
            if fp == NULL:
                fraw = _surrogatepass(filt)
                fp = <const uint8_t *>PyBytes_AS_STRING(fraw)
                fn = PyBytes_GET_SIZE(fraw)
        else:
            fn = _acquire(filt, &fview, &fp, &fheld)
        if PyUnicode_Check(topic):
            tp = _text_utf8(topic, &tn)
            if tp == NULL:
                traw = _surrogatepass(topic)
                tp = <const uint8_t *>PyBytes_AS_STRING(traw)
                tn = PyBytes_GET_SIZE(traw)
        else:
            tn = _acquire(topic, &tview, &tp, &theld)
        r = mqf_topic_matches(fp, <size_t>fn, tp, <size_t>tn)
    finally:
        _release(&fview, &fheld)
        _release(&tview, &theld)
    return r != 0
