# cython: language_level=3
# Declarations of the dependency-free C kernels in csrc/mqttfast_kernels.h.

from libc.stdint cimport uint8_t, uint32_t

cdef extern from "mqttfast_kernels.h" nogil:
    enum:
        MQF_VARINT_MAX
        MQF_STRING_MAX
        MQF_VARINT_INCOMPLETE
        MQF_VARINT_TOO_LONG
        MQF_VARINT_NON_MINIMAL
        MQF_OK
        MQF_UTF8_INVALID
        MQF_UTF8_NUL
        MQF_TOPIC_EMPTY
        MQF_TOPIC_TOO_LONG
        MQF_TOPIC_NUL
        MQF_TOPIC_WILDCARD
        MQF_FILTER_HASH
        MQF_FILTER_PLUS

    int mqf_varint_decode(const uint8_t *buf, size_t len, uint32_t *value)
    int mqf_varint_encode(uint32_t value, uint8_t *out)
    int mqf_varint_size(uint32_t value)
    int mqf_utf8_validate(const uint8_t *s, size_t len)
    int mqf_utf8_has_discouraged(const uint8_t *s, size_t len)
    int mqf_utf8_has_control(const uint8_t *s, size_t len)
    int mqf_topic_name_validate(const uint8_t *s, size_t len, int check_utf8)
    int mqf_topic_filter_validate(const uint8_t *s, size_t len, int check_utf8)
    int mqf_topic_matches(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
