/*
 * mqttfast_kernels: dependency-free C helpers for the MQTT codec.
 *
 * No Python.h: these work on plain byte buffers with explicit lengths so they
 * can be fuzzed with libFuzzer/AFL and reused outside CPython. The Cython
 * twins in mqttfast/codec/ call them through _kernels.pxd.
 *
 * Strings are the UTF-8 bytes of MQTT UTF-8 Encoded Strings (1.5.4) without
 * their two-byte length prefix.
 */
#ifndef MQTTFAST_KERNELS_H
#define MQTTFAST_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQF_VARINT_MAX 268435455u  /* largest four-byte Variable Byte Integer (1.5.5) */
#define MQF_STRING_MAX 65535u      /* largest UTF-8 Encoded String body (1.5.4) */

/* Results of mqf_varint_decode (0 = need more bytes, >0 = bytes consumed). */
#define MQF_VARINT_INCOMPLETE 0
#define MQF_VARINT_TOO_LONG (-1)    /* continuation bit set on the 4th byte */
#define MQF_VARINT_NON_MINIMAL (-2) /* [MQTT-1.5.5-1] a shorter encoding exists */

/* Results of the UTF-8 and topic checks (0 = valid). */
#define MQF_OK 0
#define MQF_UTF8_INVALID 1  /* not well-formed, overlong, surrogate, > U+10FFFF [MQTT-1.5.4-1] */
#define MQF_UTF8_NUL 2      /* U+0000 [MQTT-1.5.4-2] */
#define MQF_TOPIC_EMPTY 3   /* [MQTT-4.7.3-1] */
#define MQF_TOPIC_TOO_LONG 4 /* [MQTT-4.7.3-3] */
#define MQF_TOPIC_NUL 5     /* [MQTT-4.7.3-2] */
#define MQF_TOPIC_WILDCARD 6 /* wildcard in a topic name [MQTT-3.3.2-2] */
#define MQF_FILTER_HASH 7   /* '#' not alone in the last level [MQTT-4.7.1-2] */
#define MQF_FILTER_PLUS 8   /* '+' not alone in its level [MQTT-4.7.1-3] */

/* Decode a Variable Byte Integer from buf[0..len). On success stores the value
 * and returns the number of bytes used (1..4). Returns MQF_VARINT_INCOMPLETE when
 * buf ends before the last byte, or a negative MQF_VARINT_* error. */
int mqf_varint_decode(const uint8_t *buf, size_t len, uint32_t *value);

/* Encode value (<= MQF_VARINT_MAX) minimally into out[0..4). Returns the length
 * (1..4), or 0 if value is out of range. */
int mqf_varint_encode(uint32_t value, uint8_t out[4]);

/* Number of bytes mqf_varint_encode writes for value (0 if out of range). */
int mqf_varint_size(uint32_t value);

/* MQTT UTF-8 check: MQF_OK, MQF_UTF8_INVALID or MQF_UTF8_NUL. When a string has
 * both faults MQF_UTF8_INVALID wins, wherever they are. */
int mqf_utf8_validate(const uint8_t *s, size_t len);

/* 1 if s (assumed valid UTF-8) contains a code point the spec discourages:
 * U+0001..U+001F, U+007F..U+009F, or a Unicode non-character. */
int mqf_utf8_has_discouraged(const uint8_t *s, size_t len);

/* 1 if well-formed UTF-8 s holds a C0 or C1 control character other than U+0000:
 * U+0001..U+001F or U+007F..U+009F (1.5.4: SHOULD NOT be sent, MAY be treated as
 * malformed). One pass over the bytes, no decoding: in valid UTF-8 the lead byte 0xC2
 * followed by 0x80..0x9F is exactly U+0080..U+009F. */
int mqf_utf8_has_control(const uint8_t *s, size_t len);

/* Topic name / filter checks. check_utf8 = 0 skips the well-formedness check
 * when the caller already knows the bytes are valid UTF-8 (they came from a
 * Python str). Faults are reported in this order: empty, not UTF-8, too long,
 * U+0000, wildcard rules. */
int mqf_topic_name_validate(const uint8_t *s, size_t len, int check_utf8);
int mqf_topic_filter_validate(const uint8_t *s, size_t len, int check_utf8);

/* 1 if topic name t matches topic filter f (4.7): '+' one level, '#' the parent
 * and any children, and filters starting with a wildcard never match topics
 * starting with '$' [MQTT-4.7.2-1]. Invalid inputs are compared literally. */
int mqf_topic_matches(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen);

#ifdef __cplusplus
}
#endif

#endif /* MQTTFAST_KERNELS_H */
