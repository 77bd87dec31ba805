/*
 * Self-test of the C kernels, meant to be built with sanitizers:
 *
 *   cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
 *      -Icsrc csrc/test_kernels.c csrc/mqttfast_kernels.c -o test_kernels && ./test_kernels [iterations]
 *
 * Checks the spec vectors, then feeds pseudo-random inputs of MQTT-ish bytes in
 * exact-size heap buffers (so AddressSanitizer sees any overread) and checks
 * invariants: varint decode/encode round trip and minimality, validators agree
 * with each other, matching of valid filter/topic pairs against a reference.
 * tests/codec/test_kernels_c.py runs it. Exit status 0 = all good.
 */
#include "mqttfast_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, what)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static unsigned long long rng_state = 88172645463325252ull;
static unsigned rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)rng_state;
}

static int match_str(const char *f, const char *t)
{
    return mqf_topic_matches((const uint8_t *)f, strlen(f), (const uint8_t *)t, strlen(t));
}

/* Reference matcher: recursive definition of 4.7 over '/'-separated levels. */
static int ref_levels(const char *f, size_t fl, const char *t, size_t tl, int t_done)
{
    const char *fs = memchr(f, '/', fl);
    size_t fn = fs ? (size_t)(fs - f) : fl;
    const char *ts;
    size_t tn;
    if (fn == 1 && f[0] == '#')
        return 1;
    if (t_done)
        return 0;
    ts = memchr(t, '/', tl);
    tn = ts ? (size_t)(ts - t) : tl;
    if (!(fn == 1 && f[0] == '+') && (fn != tn || memcmp(f, t, fn) != 0))
        return 0;
    if (!fs)
        return ts == NULL;
    if (!ts)
        return ref_levels(fs + 1, fl - fn - 1, t + tl, 0, 1);
    return ref_levels(fs + 1, fl - fn - 1, ts + 1, tl - tn - 1, 0);
}

static int ref_match(const char *f, size_t fl, const char *t, size_t tl)
{
    if (fl && (f[0] == '+' || f[0] == '#') && tl && t[0] == '$')
        return 0;
    return ref_levels(f, fl, t, tl, 0);
}

static void spec_vectors(void)
{
    static const struct { uint32_t v; int n; const char *enc; } table[] = {
        {0, 1, "\x00"}, {127, 1, "\x7f"}, {128, 2, "\x80\x01"}, {16383, 2, "\xff\x7f"},
        {16384, 3, "\x80\x80\x01"}, {2097151, 3, "\xff\xff\x7f"},
        {2097152, 4, "\x80\x80\x80\x01"}, {268435455, 4, "\xff\xff\xff\x7f"},
    };
    size_t i;
    uint32_t v;
    uint8_t out[4];
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK(mqf_varint_encode(table[i].v, out) == table[i].n, "varint table length");
        CHECK(memcmp(out, table[i].enc, table[i].n) == 0, "varint table bytes");
        CHECK(mqf_varint_decode((const uint8_t *)table[i].enc, table[i].n, &v) == table[i].n && v == table[i].v,
              "varint table decode");
    }
    CHECK(mqf_varint_encode(268435456u, out) == 0, "varint out of range");
    CHECK(mqf_varint_decode((const uint8_t *)"\x80\x00", 2, &v) == MQF_VARINT_NON_MINIMAL, "non-minimal");
    CHECK(mqf_varint_decode((const uint8_t *)"\xff\xff\xff\xff", 4, &v) == MQF_VARINT_TOO_LONG, "too long");
    CHECK(mqf_varint_decode((const uint8_t *)"\xff\xff", 2, &v) == MQF_VARINT_INCOMPLETE, "incomplete");

    CHECK(mqf_utf8_validate((const uint8_t *)"A\xf0\xaa\x9b\x94", 5) == MQF_OK, "U+2A6D4 example");
    CHECK(mqf_utf8_validate((const uint8_t *)"a\0b", 3) == MQF_UTF8_NUL, "U+0000");
    CHECK(mqf_utf8_validate((const uint8_t *)"\xed\xa0\x80", 3) == MQF_UTF8_INVALID, "surrogate");
    CHECK(mqf_utf8_validate((const uint8_t *)"\xc0\x80", 2) == MQF_UTF8_INVALID, "overlong NUL");
    CHECK(mqf_utf8_has_discouraged((const uint8_t *)"\xef\xbf\xbf", 3) == 1, "U+FFFF discouraged");
    CHECK(mqf_utf8_has_discouraged((const uint8_t *)"\xc2\x85", 2) == 1, "U+0085 discouraged");
    CHECK(mqf_utf8_has_discouraged((const uint8_t *)"ok\xc2\xa0", 4) == 0, "U+00A0 fine");

    CHECK(mqf_topic_filter_validate((const uint8_t *)"sport/tennis/player1/#", 22, 1) == MQF_OK, "filter #");
    CHECK(mqf_topic_filter_validate((const uint8_t *)"sport/tennis#", 13, 1) == MQF_FILTER_HASH, "bad #");
    CHECK(mqf_topic_filter_validate((const uint8_t *)"sport+", 6, 1) == MQF_FILTER_PLUS, "bad +");
    CHECK(mqf_topic_name_validate((const uint8_t *)"sport/+", 7, 1) == MQF_TOPIC_WILDCARD, "name wildcard");
    CHECK(mqf_topic_name_validate((const uint8_t *)"", 0, 1) == MQF_TOPIC_EMPTY, "empty");

    CHECK(match_str("sport/#", "sport") == 1, "# parent");
    CHECK(match_str("sport/+", "sport") == 0, "+ needs a level");
    CHECK(match_str("sport/+", "sport/") == 1, "+ empty level");
    CHECK(match_str("+/+", "/finance") == 1, "+/+");
    CHECK(match_str("/+", "/finance") == 1, "/+");
    CHECK(match_str("+", "/finance") == 0, "+ one level");
    CHECK(match_str("#", "$SYS/x") == 0, "$ rule #");
    CHECK(match_str("+/monitor/Clients", "$SYS/monitor/Clients") == 0, "$ rule +");
    CHECK(match_str("$SYS/#", "$SYS/monitor/Clients") == 1, "$SYS/#");
}

static void random_inputs(long iterations)
{
    static const unsigned char alphabet[] = {'a', 'b', '/', '/', '+', '#', '$', 0,
                                             0xC3, 0xA9, 0xED, 0xA0, 0x80, 0xF0, 0x9F,
                                             0x98, 0x80, 0xFF, 0xC0, 0xEF, 0xBF, 0xBE};
    static const char *levels[] = {"a", "b", "", "$s", "\xc3\xa9", "+", "#"};
    long it;
    for (it = 0; it < iterations; it++) {
        size_t n1 = rnd() % 14, n2 = rnd() % 14, i;
        unsigned char *a = malloc(n1 ? n1 : 1);
        unsigned char *b = malloc(n2 ? n2 : 1);
        uint32_t v;
        uint8_t out[4];
        int r, ra;
        if (!a || !b)
            abort();
        for (i = 0; i < n1; i++)
            a[i] = (rnd() & 3) ? alphabet[rnd() % sizeof alphabet] : (unsigned char)rnd();
        for (i = 0; i < n2; i++)
            b[i] = alphabet[rnd() % sizeof alphabet];

        r = mqf_varint_decode(a, n1, &v);
        if (r > 0) {
            CHECK(mqf_varint_encode(v, out) == r && memcmp(out, a, (size_t)r) == 0, "varint is minimal");
            CHECK(mqf_varint_size(v) == r, "varint size");
        }
        ra = mqf_utf8_validate(a, n1);
        if (ra == MQF_OK)
            (void)mqf_utf8_has_discouraged(a, n1);
        r = mqf_topic_name_validate(a, n1, 1);
        if (ra == MQF_UTF8_INVALID && n1)
            CHECK(r == MQF_UTF8_INVALID, "name: invalid UTF-8 reported");
        r = mqf_topic_filter_validate(b, n2, 1);
        (void)mqf_topic_matches(a, n1, b, n2);
        (void)mqf_topic_matches(b, n2, a, n1);
        free(a);
        free(b);

        /* A valid filter and a valid topic from levels: compare with the reference. */
        {
            char fbuf[64], tbuf[64];
            size_t fl = 0, tl = 0;
            int nf = 1 + (int)(rnd() % 4), nt = 1 + (int)(rnd() % 4), k;
            for (k = 0; k < nf; k++) {
                const char *lv = levels[rnd() % 6]; /* no '#' mid-filter */
                if (k) fbuf[fl++] = '/';
                memcpy(fbuf + fl, lv, strlen(lv));
                fl += strlen(lv);
            }
            if (rnd() & 1) {
                memcpy(fbuf + fl, "/#", 2);
                fl += 2;
            }
            for (k = 0; k < nt; k++) {
                const char *lv = levels[rnd() % 5]; /* no wildcards in topics */
                if (k) tbuf[tl++] = '/';
                memcpy(tbuf + tl, lv, strlen(lv));
                tl += strlen(lv);
            }
            {
                char *fh = malloc(fl ? fl : 1), *th = malloc(tl ? tl : 1);
                if (!fh || !th)
                    abort();
                memcpy(fh, fbuf, fl);
                memcpy(th, tbuf, tl);
                if (fl)
                    CHECK(mqf_topic_filter_validate((const uint8_t *)fh, fl, 1) == MQF_OK, "generated filter valid");
                if (tl)
                    CHECK(mqf_topic_name_validate((const uint8_t *)th, tl, 1) == MQF_OK, "generated topic valid");
                CHECK(mqf_topic_matches((const uint8_t *)fh, fl, (const uint8_t *)th, tl) ==
                          ref_match(fh, fl, th, tl),
                      "matches the reference");
                free(fh);
                free(th);
            }
        }
        if (failures > 20)
            break;
    }
}

/* Every scalar value, encoded alone and between ASCII, in an exact-size heap buffer:
 * mqf_utf8_has_control says 1 exactly for U+0001..U+001F and U+007F..U+009F (1.5.4). */
static void control_characters(void)
{
    uint32_t cp;
    for (cp = 1; cp <= 0x10FFFFu; cp++) {
        uint8_t enc[6];
        size_t n = 0, i;
        int want = cp <= 0x1Fu || (cp >= 0x7Fu && cp <= 0x9Fu);
        if (cp >= 0xD800u && cp <= 0xDFFFu)
            continue;
        enc[n++] = 'a';
        if (cp < 0x80u) {
            enc[n++] = (uint8_t)cp;
        } else if (cp < 0x800u) {
            enc[n++] = (uint8_t)(0xC0u | (cp >> 6));
            enc[n++] = (uint8_t)(0x80u | (cp & 0x3Fu));
        } else if (cp < 0x10000u) {
            enc[n++] = (uint8_t)(0xE0u | (cp >> 12));
            enc[n++] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
            enc[n++] = (uint8_t)(0x80u | (cp & 0x3Fu));
        } else {
            enc[n++] = (uint8_t)(0xF0u | (cp >> 18));
            enc[n++] = (uint8_t)(0x80u | ((cp >> 12) & 0x3Fu));
            enc[n++] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
            enc[n++] = (uint8_t)(0x80u | (cp & 0x3Fu));
        }
        for (i = 0; i < 2; i++) { /* the character last in the buffer, then followed by 'b' */
            size_t len = n + i;
            uint8_t *buf = malloc(len);
            memcpy(buf, enc, n);
            if (i)
                buf[n] = 'b';
            CHECK(mqf_utf8_has_control(buf, len) == want, "control characters");
            CHECK(mqf_utf8_has_control(buf + 1, len - 1) == want, "control characters, first");
            free(buf);
        }
    }
    CHECK(mqf_utf8_has_control((const uint8_t *)"a\0b", 3) == 0, "U+0000 is not counted here");
    CHECK(mqf_utf8_has_control((const uint8_t *)"", 0) == 0, "empty");
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    uint32_t x;
    spec_vectors();
    control_characters();
    for (x = 0; x <= MQF_VARINT_MAX - 9973u; x += 9973u) {
        uint8_t o[4];
        uint32_t y = 0;
        int m = mqf_varint_encode(x, o);
        CHECK(m == mqf_varint_size(x) && mqf_varint_decode(o, (size_t)m, &y) == m && y == x, "varint round trip");
    }
    random_inputs(iterations);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("mqttfast kernels: all checks passed (%ld random iterations)\n", iterations);
    return 0;
}
