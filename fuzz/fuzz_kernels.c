/*
 * libFuzzer target for the C kernels in csrc/ (no Python involved).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         -I../csrc fuzz_kernels.c ../csrc/mqttfast_kernels.c -o fuzz_kernels
 *   ./fuzz_kernels -max_total_time=300 work/kernels corpus/kernels
 *
 * Input layout: byte 0 is a split point; the rest is cut there into two strings
 * a and b (a = filter, b = topic for matching). Every kernel runs on exact-size
 * heap copies, so AddressSanitizer sees any read past the end. Checked invariants
 * (a violation calls abort(), which libFuzzer reports as a crash):
 *   - varint: decode result in range, minimal, and equal to its re-encoding;
 *     encode/size agree for the decoded value and for a 32-bit value from the input;
 *   - UTF-8: mqf_utf8_validate agrees with an independent reference decoder;
 *   - topics: a valid topic name is a valid filter, matches itself, and is matched
 *     by "#" unless it starts with '$' [MQTT-4.7.2-1]; mqf_topic_matches agrees with
 *     a reference level-by-level matcher on valid (filter, name) pairs.
 */
#include "mqttfast_kernels.h"

#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

/* Reference MQTT UTF-8 check (1.5.4): MQF_OK, MQF_UTF8_INVALID or MQF_UTF8_NUL. */
static int ref_utf8(const uint8_t *s, size_t n)
{
    int nul = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp;
        size_t k;
        if (c < 0x80) { if (c == 0) nul = 1; i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return MQF_UTF8_INVALID;
        if (i + k >= n) return MQF_UTF8_INVALID;  /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return MQF_UTF8_INVALID;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return MQF_UTF8_INVALID;
        i += k + 1;
    }
    return nul ? MQF_UTF8_NUL : MQF_OK;
}

/* Reference matcher over valid inputs: split both on '/', compare level by level. */
static int ref_match(const uint8_t *f, size_t fl, const uint8_t *t, size_t tl)
{
    if (tl && t[0] == '$' && fl && (f[0] == '+' || f[0] == '#')) return 0;
    size_t fi = 0, ti = 0;
    for (;;) {
        size_t fe = fi, te = ti;
        while (fe < fl && f[fe] != '/') fe++;
        if (fe - fi == 1 && f[fi] == '#') return 1;  /* parent and all children */
        if (ti > tl) return 0;                        /* topic has no level left */
        while (te < tl && t[te] != '/') te++;
        if (!(fe - fi == 1 && f[fi] == '+')) {
            if (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0) return 0;
        }
        int f_last = fe >= fl, t_last = te >= tl;
        if (f_last && t_last) return 1;
        if (t_last) {   /* the filter goes on: only "/#" may follow */
            return fe + 2 == fl && f[fe + 1] == '#';
        }
        if (f_last) return 0;
        fi = fe + 1;
        ti = te + 1;
    }
}

static uint8_t *copy(const uint8_t *s, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n) memcpy(p, s, n);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t rest = size - 1;
    size_t cut = rest ? data[0] % (rest + 1) : 0;
    uint8_t *a = copy(data + 1, cut), *b = copy(data + 1 + cut, rest - cut);
    size_t al = cut, bl = rest - cut;
    uint8_t *all = copy(data + 1, rest);

    /* varint */
    uint32_t v = 0;
    int r = mqf_varint_decode(all, rest, &v);
    REQUIRE(r >= MQF_VARINT_NON_MINIMAL && r <= 4);
    if (r > 0) {
        uint8_t out[4];
        REQUIRE(v <= MQF_VARINT_MAX);
        REQUIRE(mqf_varint_encode(v, out) == r && memcmp(out, all, (size_t)r) == 0);
        REQUIRE(mqf_varint_size(v) == r);
    }
    if (rest >= 4) {
        uint32_t x;
        uint8_t out[4];
        memcpy(&x, all, 4);
        int n = mqf_varint_encode(x, out);
        REQUIRE(n == mqf_varint_size(x));
        REQUIRE((n == 0) == (x > MQF_VARINT_MAX));
        if (n) {
            uint32_t back = 0;
            REQUIRE(mqf_varint_decode(out, (size_t)n, &back) == n && back == x);
        }
    }

    /* UTF-8 */
    int u = mqf_utf8_validate(all, rest);
    REQUIRE(u == ref_utf8(all, rest));
    if (u == MQF_OK) (void)mqf_utf8_has_discouraged(all, rest);

    /* topics (with and without the UTF-8 check when the bytes are valid) */
    int an = mqf_topic_name_validate(a, al, 1), af = mqf_topic_filter_validate(a, al, 1);
    int bn = mqf_topic_name_validate(b, bl, 1), bf = mqf_topic_filter_validate(b, bl, 1);
    if (ref_utf8(a, al) == MQF_OK) {
        REQUIRE(mqf_topic_name_validate(a, al, 0) == an);
        REQUIRE(mqf_topic_filter_validate(a, al, 0) == af);
    }
    if (bn == MQF_OK) {
        REQUIRE(bf == MQF_OK);
        REQUIRE(mqf_topic_matches(b, bl, b, bl) == 1);
        REQUIRE(mqf_topic_matches((const uint8_t *)"#", 1, b, bl) == (b[0] != '$'));
    }
    int m = mqf_topic_matches(a, al, b, bl);  /* any bytes: must not crash */
    REQUIRE(m == 0 || m == 1);
    if (af == MQF_OK && bn == MQF_OK) REQUIRE(m == ref_match(a, al, b, bl));

    free(a);
    free(b);
    free(all);
    return 0;
}
