/* mqttfast_kernels.c: see mqttfast_kernels.h. Dependency-free C99. */
#include "mqttfast_kernels.h"

#include <string.h>

int mqf_varint_decode(const uint8_t *buf, size_t len, uint32_t *value)
{
    uint32_t v = 0;
    size_t i;
    for (i = 0; i < 4; i++) {
        uint8_t b;
        if (i >= len)
            return MQF_VARINT_INCOMPLETE;
        b = buf[i];
        v |= (uint32_t)(b & 0x7Fu) << (7 * i);
        if (b < 0x80u) {
            /* A zero final byte adds nothing, so a shorter encoding existed. */
            if (b == 0 && i > 0)
                return MQF_VARINT_NON_MINIMAL;
            *value = v;
            return (int)(i + 1);
        }
    }
    return MQF_VARINT_TOO_LONG;
}

int mqf_varint_size(uint32_t value)
{
    if (value < 128u) return 1;
    if (value < 16384u) return 2;
    if (value < 2097152u) return 3;
    if (value <= MQF_VARINT_MAX) return 4;
    return 0;
}

int mqf_varint_encode(uint32_t value, uint8_t out[4])
{
    int n = 0;
    if (value > MQF_VARINT_MAX)
        return 0;
    do {
        uint8_t b = (uint8_t)(value & 0x7Fu);
        value >>= 7;
        if (value)
            b |= 0x80u;
        out[n++] = b;
    } while (value);
    return n;
}

/* Does the 8-byte word contain a zero byte? (classic bit trick) */
#define MQF_HAS_ZERO(w) ((((w) - 0x0101010101010101ull) & ~(w) & 0x8080808080808080ull) != 0)

int mqf_utf8_validate(const uint8_t *s, size_t len)
{
    size_t i = 0;
    int nul = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80u) {
            /* ASCII run: eight bytes at a time. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                if (MQF_HAS_ZERO(w))
                    nul = 1;
                i += 8;
            }
            while (i < len && s[i] < 0x80u) {
                if (s[i] == 0)
                    nul = 1;
                i++;
            }
            continue;
        }
        if (c >= 0xC2u && c <= 0xDFu) {
            if (i + 1 >= len || (s[i + 1] & 0xC0u) != 0x80u)
                return MQF_UTF8_INVALID;
            i += 2;
        } else if (c >= 0xE0u && c <= 0xEFu) {
            uint8_t lo = 0x80u, hi = 0xBFu;
            if (c == 0xE0u) lo = 0xA0u;      /* overlong */
            else if (c == 0xEDu) hi = 0x9Fu; /* U+D800..U+DFFF surrogates */
            if (i + 2 >= len || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0u) != 0x80u)
                return MQF_UTF8_INVALID;
            i += 3;
        } else if (c >= 0xF0u && c <= 0xF4u) {
            uint8_t lo = 0x80u, hi = 0xBFu;
            if (c == 0xF0u) lo = 0x90u;      /* overlong */
            else if (c == 0xF4u) hi = 0x8Fu; /* above U+10FFFF */
            if (i + 3 >= len || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0u) != 0x80u ||
                (s[i + 3] & 0xC0u) != 0x80u)
                return MQF_UTF8_INVALID;
            i += 4;
        } else {
            /* continuation byte without a lead, C0/C1 overlong leads, F5..FF */
            return MQF_UTF8_INVALID;
        }
    }
    return nul ? MQF_UTF8_NUL : MQF_OK;
}

int mqf_utf8_has_discouraged(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint32_t cp;
        if (c < 0x80u) {
            if ((c >= 0x01u && c <= 0x1Fu) || c == 0x7Fu)
                return 1;
            i++;
            continue;
        }
        if (c < 0xE0u) {
            if (i + 1 >= len) return 0;
            cp = ((uint32_t)(c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
            i += 2;
        } else if (c < 0xF0u) {
            if (i + 2 >= len) return 0;
            cp = ((uint32_t)(c & 0x0Fu) << 12) | ((uint32_t)(s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
            i += 3;
        } else {
            if (i + 3 >= len) return 0;
            cp = ((uint32_t)(c & 0x07u) << 18) | ((uint32_t)(s[i + 1] & 0x3Fu) << 12) |
                 ((uint32_t)(s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
            i += 4;
        }
        if (cp >= 0x7Fu && cp <= 0x9Fu)
            return 1;
        if (cp >= 0xFDD0u && cp <= 0xFDEFu)
            return 1;
        if ((cp & 0xFFFEu) == 0xFFFEu) /* U+xFFFE and U+xFFFF in every plane */
            return 1;
    }
    return 0;
}

int mqf_utf8_has_control(const uint8_t *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (c < 0x20u) {
            if (c != 0u)
                return 1;
        } else if (c == 0x7Fu) {
            return 1;
        } else if (c == 0xC2u && i + 1 < len && s[i + 1] >= 0x80u && s[i + 1] <= 0x9Fu) {
            return 1;
        }
    }
    return 0;
}

/* Shared prefix of the name and filter checks: empty, UTF-8, length, U+0000. */
static int mqf_topic_common(const uint8_t *s, size_t len, int check_utf8)
{
    int nul;
    if (len == 0)
        return MQF_TOPIC_EMPTY;
    if (check_utf8) {
        int r = mqf_utf8_validate(s, len);
        if (r == MQF_UTF8_INVALID)
            return MQF_UTF8_INVALID;
        nul = (r == MQF_UTF8_NUL);
    } else {
        nul = memchr(s, 0, len) != NULL;
    }
    if (len > MQF_STRING_MAX)
        return MQF_TOPIC_TOO_LONG;
    if (nul)
        return MQF_TOPIC_NUL;
    return MQF_OK;
}

int mqf_topic_name_validate(const uint8_t *s, size_t len, int check_utf8)
{
    int r = mqf_topic_common(s, len, check_utf8);
    if (r != MQF_OK)
        return r;
    if (memchr(s, '+', len) || memchr(s, '#', len))
        return MQF_TOPIC_WILDCARD;
    return MQF_OK;
}

int mqf_topic_filter_validate(const uint8_t *s, size_t len, int check_utf8)
{
    size_t start = 0;
    int r = mqf_topic_common(s, len, check_utf8);
    if (r != MQF_OK)
        return r;
    if (!memchr(s, '+', len) && !memchr(s, '#', len))
        return MQF_OK;
    /* Level by level, left to right; '#' faults before '+' faults in a level. */
    for (;;) {
        const uint8_t *slash = memchr(s + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - s) : len;
        size_t n = end - start;
        const uint8_t *lvl = s + start;
        if (memchr(lvl, '#', n) && (n != 1 || end != len))
            return MQF_FILTER_HASH;
        if (memchr(lvl, '+', n) && n != 1)
            return MQF_FILTER_PLUS;
        if (!slash)
            return MQF_OK;
        start = end + 1;
    }
}

int mqf_topic_matches(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    size_t fi = 0, ti = 0;
    int topic_done = 0; /* every level of t has been consumed */

    if (flen > 0 && (f[0] == '+' || f[0] == '#') && tlen > 0 && t[0] == '$')
        return 0; /* [MQTT-4.7.2-1] */
    if (!memchr(f, '+', flen) && !memchr(f, '#', flen))
        return flen == tlen && memcmp(f, t, flen) == 0;

    for (;;) {
        const uint8_t *fs = memchr(f + fi, '/', flen - fi);
        size_t fend = fs ? (size_t)(fs - f) : flen;
        size_t fn = fend - fi;
        size_t tend, tn;
        const uint8_t *ts;

        if (fn == 1 && f[fi] == '#')
            return 1; /* '#' also matches the parent level: "a/#" matches "a" */
        if (topic_done)
            return 0;
        ts = memchr(t + ti, '/', tlen - ti);
        tend = ts ? (size_t)(ts - t) : tlen;
        tn = tend - ti;
        if (!(fn == 1 && f[fi] == '+') && (fn != tn || memcmp(f + fi, t + ti, fn) != 0))
            return 0;
        if (!fs)
            return ts == NULL; /* both end here */
        fi = fend + 1;
        if (ts)
            ti = tend + 1;
        else
            topic_done = 1;
    }
}
