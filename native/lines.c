/*
 * The one line layout of logger_system's files: written, read back, and turned into syslog.
 *
 *   {"seq":S,"n":N,"ts":"YYYY-MM-DDTHH:MM:SS.ffffffZ","level":"NAME","pid":P,
 *    "logger":"...","msg":"..."[,"fields":{...}]}\n
 *
 * lsr_format_jsonl writes it (every file, every shipped batch); lsr_lines_parse reads it
 * back into the columns a ring drain gives (the log server's ingest, the syslog shippers);
 * lsr_syslog_format makes RFC 5424 messages of those columns.  The layout's rules live here
 * only: the stamp's form, the level names, what fields may hold.
 *
 * Reading is strict: a line that is not exactly this layout, key for key (other key order,
 * other spacing, a level or stamp in another form, a lone surrogate escape), is not taken
 * apart here but marked LSR_LINE_OTHER, and the caller's general JSON path decides what it
 * is.  So the fast path never accepts what the general one would refuse, and gives the same
 * columns for what both take (tests/test_lines.py holds both to it).
 */
#define _GNU_SOURCE
#include "lines.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- validation ------------------------------------------------------------ */

/* length of the valid UTF-8 sequence at s (1..4), or 0 if invalid */
static inline int utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
        if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) return 0;
        if (c == 0xf4 && s[1] > 0x8f) return 0;
        return 4;
    }
    return 0;
}

int lsr_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_seq(s + i, n - i);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* A strict JSON checker for field objects: compact (space is the only
 * whitespace allowed), no raw control bytes, valid UTF-8, nesting <= 64.
 * What passes can be copied verbatim into a line without breaking it. */
typedef struct {
    const uint8_t *s;
    size_t n, i;
    int depth;
} jv_t;

static int jv_value(jv_t *j);

static void jv_ws(jv_t *j) {
    while (j->i < j->n && j->s[j->i] == ' ') j->i++;
}

static int jv_string(jv_t *j) {
    if (j->i >= j->n || j->s[j->i] != '"') return 0;
    j->i++;
    while (j->i < j->n) {
        uint8_t c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return 1;
        }
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (j->i + 1 >= j->n) return 0;
            uint8_t e = j->s[j->i + 1];
            if (e == 'u') {
                if (j->i + 6 > j->n) return 0;
                for (int k = 2; k < 6; k++) {
                    uint8_t h = j->s[j->i + k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                        return 0;
                }
                j->i += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                j->i += 2;
            } else {
                return 0;
            }
            continue;
        }
        if (c < 0x80) {
            j->i++;
            continue;
        }
        int k = utf8_seq(j->s + j->i, j->n - j->i);
        if (!k) return 0;
        j->i += (size_t)k;
    }
    return 0;
}

static int jv_number(jv_t *j) {
    size_t i = j->i;
    const uint8_t *s = j->s;
    if (i < j->n && s[i] == '-') i++;
    if (i >= j->n) return 0;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        return 0;
    }
    if (i < j->n && s[i] == '.') {
        i++;
        size_t d = i;
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    if (i < j->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < j->n && (s[i] == '+' || s[i] == '-')) i++;
        size_t d = i;
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    j->i = i;
    return 1;
}

static int jv_lit(jv_t *j, const char *lit) {
    size_t k = strlen(lit);
    if (j->n - j->i < k || memcmp(j->s + j->i, lit, k) != 0) return 0;
    j->i += k;
    return 1;
}

static int jv_container(jv_t *j, uint8_t close, int keyed) {
    if (++j->depth > 64) return 0;
    j->i++;
    jv_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        j->depth--;
        return 1;
    }
    for (;;) {
        jv_ws(j);
        if (keyed) {
            if (!jv_string(j)) return 0;
            jv_ws(j);
            if (j->i >= j->n || j->s[j->i] != ':') return 0;
            j->i++;
            jv_ws(j);
        }
        if (!jv_value(j)) return 0;
        jv_ws(j);
        if (j->i >= j->n) return 0;
        if (j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return 1;
        }
        return 0;
    }
}

static int jv_value(jv_t *j) {
    if (j->i >= j->n) return 0;
    switch (j->s[j->i]) {
    case '{': return jv_container(j, '}', 1);
    case '[': return jv_container(j, ']', 0);
    case '"': return jv_string(j);
    case 't': return jv_lit(j, "true");
    case 'f': return jv_lit(j, "false");
    case 'n': return jv_lit(j, "null");
    default: return jv_number(j);
    }
}

int lsr_json_valid(const uint8_t *s, size_t n) {
    jv_t j = {s, n, 0, 0};
    if (n == 0 || s[0] != '{') return 0;
    if (!jv_value(&j)) return 0;
    jv_ws(&j);
    return j.i == n;
}

/* ---- writing lines ------------------------------------------------------------ */

static const char HEX[] = "0123456789abcdef";

/* The bytes json_escape copies as they are: printable ASCII but '"' and '\\'. */
static inline int json_plain(uint8_t c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

#if defined(__SSE2__)
/* a bit per byte of v that json_escape does not copy as it is (signed compares: a byte
 * from 0x80 up is below 0x20 too) */
static inline unsigned json_special_bits(__m128i v) {
    __m128i ctl = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
    __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    __m128i quo = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i bsl = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(ctl, del), _mm_or_si128(quo, bsl)));
}
#endif

/* Escape s as the inside of a JSON string.  Control characters (C0, DEL and
 * C1), quotes, backslashes and U+2028/9 are escaped; bytes that are not UTF-8
 * become U+FFFD.  Output is at most 6 bytes per input byte.
 * Runs of plain bytes are copied sixteen at a time where SSE2 is: each block is stored
 * whole, and o moves on by the plain bytes at its start (a block's bytes take at most
 * 96 bytes of output, so the store stays inside the bound). */
static uint8_t *json_escape(uint8_t *o, const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
#if defined(__SSE2__)
        while (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            unsigned special = json_special_bits(v);
            _mm_storeu_si128((__m128i *)(void *)o, v);
            if (special) {
                unsigned k = (unsigned)__builtin_ctz(special);
                o += k;
                i += k;
                break;
            }
            o += 16;
            i += 16;
        }
#endif
        while (i < n && json_plain(s[i])) *o++ = s[i++];
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u'; *o++ = '0'; *o++ = '0';
                *o++ = (uint8_t)HEX[c >> 4]; *o++ = (uint8_t)HEX[c & 15];
            }
            i++;
            continue;
        }
        int k = utf8_seq(s + i, n - i);
        if (k == 0) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
            continue;
        }
        if (k == 2 && c == 0xc2 && s[i + 1] < 0xa0) { /* C1 control */
            memcpy(o, "\\u00", 4);
            o[4] = (uint8_t)HEX[s[i + 1] >> 4];
            o[5] = (uint8_t)HEX[s[i + 1] & 15];
            o += 6;
        } else if (k == 3 && c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
            memcpy(o, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            o += 6;
        } else {
            memcpy(o, s + i, (size_t)k);
            o += k;
        }
        i += (size_t)k;
    }
    return o;
}

/* Copy checked JSON, escaping DEL, the C1 controls and U+2028/9 that it may hold
 * raw inside strings (ASCII controls cannot be there: lsr_json_valid). */
static uint8_t *json_copy_safe(uint8_t *o, const uint8_t *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
#if defined(__SSE2__)
        /* what needs a look is DEL or a byte from 0x80 up: skip the rest sixteen at a time */
        while (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            unsigned look = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(v, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))));
            if (look) {
                i += (size_t)__builtin_ctz(look);
                break;
            }
            i += 16;
        }
        if (i >= n) break;
#endif
        uint8_t c = s[i];
        if (c == 0xc2 && i + 1 < n && s[i + 1] < 0xa0) {
            memcpy(o, s + run, i - run);
            o += i - run;
            memcpy(o, "\\u00", 4);
            o[4] = (uint8_t)HEX[s[i + 1] >> 4];
            o[5] = (uint8_t)HEX[s[i + 1] & 15];
            o += 6;
            i += 2;
            run = i;
        } else if (c == 0x7f) {
            memcpy(o, s + run, i - run);
            o += i - run;
            memcpy(o, "\\u007f", 6);
            o += 6;
            i += 1;
            run = i;
        } else if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
            memcpy(o, s + run, i - run);
            o += i - run;
            memcpy(o, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            o += 6;
            i += 3;
            run = i;
        } else {
            i++;
        }
    }
    memcpy(o, s + run, n - run);
    return o + (n - run);
}

static const char DIGITS2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* v in decimal: its length first, then two digits per division from the end */
static uint8_t *put_u64(uint8_t *o, uint64_t v) {
    static const uint64_t P10[20] = {
        1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
        1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
        100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
        1000000000000000000ull, 10000000000000000000ull};
    int k = 1;
    while (k < 20 && v >= P10[k]) k++;
    uint8_t *e = o + k;
    while (v >= 100) {
        uint64_t q = v / 100;
        unsigned r = (unsigned)(v - q * 100);
        e -= 2;
        e[0] = (uint8_t)DIGITS2[2 * r];
        e[1] = (uint8_t)DIGITS2[2 * r + 1];
        v = q;
    }
    if (v >= 10) {
        e[-2] = (uint8_t)DIGITS2[2 * v];
        e[-1] = (uint8_t)DIGITS2[2 * v + 1];
    } else {
        e[-1] = (uint8_t)('0' + v);
    }
    return o + k;
}

static uint8_t *put_str(uint8_t *o, const char *s) {
    size_t k = strlen(s);
    memcpy(o, s, k);
    return o + k;
}

/* the level's name as a line holds it (without quotes): the standard names, else "Level N" */
static uint8_t *put_level(uint8_t *o, uint32_t level) {
    switch (level) {
    case 10: return put_str(o, "DEBUG");
    case 20: return put_str(o, "INFO");
    case 30: return put_str(o, "WARNING");
    case 40: return put_str(o, "ERROR");
    case 50: return put_str(o, "CRITICAL");
    case 0: return put_str(o, "NOTSET");
    default:
        o = put_str(o, "Level ");
        return put_u64(o, level);
    }
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds): the one form a line's ts has.
 * Records of a batch mostly share their second, so its text is kept in the cache. */
typedef struct {
    int64_t sec;
    char text[80];
} stamp_cache;

static uint8_t *put_stamp(uint8_t *o, uint64_t ts_ns, stamp_cache *c) {
    int64_t sec = (int64_t)(ts_ns / 1000000000ull);
    if (sec > 253402300799LL) sec = 253402300799LL; /* a hostile stamp stays 4-digit */
    if (sec != c->sec) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        snprintf(c->text, sizeof c->text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        c->sec = sec;
    }
    memcpy(o, c->text, 19);
    o += 19;
    uint32_t us = (uint32_t)((ts_ns / 1000u) % 1000000u);
    *o++ = '.';
    for (int d = 100000; d; d /= 10) *o++ = (uint8_t)('0' + (us / d) % 10);
    *o++ = 'Z';
    return o;
}

/* the most a record's line adds to 6 bytes per payload byte: keys, numbers, stamp, level */
#define LSR_LINE_FIXED 192

size_t lsr_format_bound(uint32_t n, uint32_t buf_len) {
    return (size_t)buf_len * 6 + (size_t)n * LSR_LINE_FIXED + 64;
}

int64_t lsr_format_jsonl(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *keep,
                         uint64_t first_n, uint8_t *out, size_t out_cap) {
    uint64_t n_bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!keep || keep[i]) n_bytes += meta[i].msg_len + meta[i].logger_len + meta[i].fields_len;
    if (out_cap < n_bytes * 6 + (uint64_t)n * LSR_LINE_FIXED + 64) return LSR_EARG;
    uint8_t *o = out;
    stamp_cache stamp = {.sec = -1};
    for (uint32_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        const lsr_meta *m = &meta[i];
        o = put_str(o, "{\"seq\":");
        o = put_u64(o, m->seq);
        o = put_str(o, ",\"n\":");
        o = put_u64(o, first_n++);
        o = put_str(o, ",\"ts\":\"");
        o = put_stamp(o, m->ts_ns, &stamp);
        o = put_str(o, "\",\"level\":\"");
        o = put_level(o, m->level);
        o = put_str(o, "\",\"pid\":");
        o = put_u64(o, m->pid);
        o = put_str(o, ",\"logger\":\"");
        o = json_escape(o, buf + m->logger_off, m->logger_len);
        o = put_str(o, "\",\"msg\":\"");
        o = json_escape(o, buf + m->msg_off, m->msg_len);
        *o++ = '"';
        if (m->fields_len) {
            o = put_str(o, ",\"fields\":");
            o = json_copy_safe(o, buf + m->fields_off, m->fields_len);
        }
        *o++ = '}';
        *o++ = '\n';
    }
    return (int64_t)(o - out);
}

/* ---- reading lines back -------------------------------------------------------- */

static int take(jv_t *j, const char *lit, size_t k) {
    if (j->n - j->i < k || memcmp(j->s + j->i, lit, k) != 0) return 0;
    j->i += k;
    return 1;
}
#define TAKE(j, lit) take((j), (lit), sizeof(lit) - 1)

/* a JSON number that is a whole number 0..2^64-1 written as the formatter writes one */
static int read_u64(jv_t *j, uint64_t *out) {
    size_t i = j->i;
    if (i >= j->n || j->s[i] < '0' || j->s[i] > '9') return 0;
    if (j->s[i] == '0') {
        j->i = i + 1;
        *out = 0;
        return j->i >= j->n || j->s[j->i] < '0' || j->s[j->i] > '9';
    }
    uint64_t v = 0;
    while (i < j->n && j->s[i] >= '0' && j->s[i] <= '9') {
        unsigned d = (unsigned)(j->s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
        i++;
    }
    j->i = i;
    *out = v;
    return 1;
}

static int hex4(const uint8_t *s, uint32_t *cp) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t h = s[k];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (uint32_t)(h - 'A' + 10);
        else return 0;
    }
    *cp = v;
    return 1;
}

static uint8_t *put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) {
        *o++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *o++ = (uint8_t)(0xc0 | (cp >> 6));
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (uint8_t)(0xe0 | (cp >> 12));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (uint8_t)(0xf0 | (cp >> 18));
        *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (uint8_t)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* The JSON string at j (its opening quote) decoded into o, which has room for as many
 * bytes as the string has (decoding never grows it; param: as many again).  param: `"`,
 * `\` and `]` of the text come out with a backslash before them (RFC 5424 PARAM-VALUE).
 * NULL if it is not a string taken here: a raw control byte, bytes that are not UTF-8, a
 * bad escape or a lone surrogate. */
static uint8_t *read_string(jv_t *j, uint8_t *o, int param) {
    if (j->i >= j->n || j->s[j->i] != '"') return NULL;
    size_t i = j->i + 1;
    const uint8_t *s = j->s;
    size_t n = j->n;
    for (;;) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\' &&
               !(param && s[run] == ']'))
            run++;
        memcpy(o, s + i, run - i);
        o += run - i;
        i = run;
        if (i >= n) return NULL;
        uint8_t c = s[i];
        if (c == '"') {
            j->i = i + 1;
            return o;
        }
        if (c == ']') { /* only when param */
            *o++ = '\\';
            *o++ = ']';
            i++;
            continue;
        }
        if (c < 0x20) return NULL;
        if (c >= 0x80) {
            int k = utf8_seq(s + i, n - i);
            if (!k) return NULL;
            memcpy(o, s + i, (size_t)k);
            o += k;
            i += (size_t)k;
            continue;
        }
        /* a backslash */
        if (i + 1 >= n) return NULL;
        uint8_t e = s[i + 1];
        uint32_t cp;
        i += 2;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (n - i < 4 || !hex4(s + i, &cp)) return NULL;
            i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) return NULL;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u' || !hex4(s + i + 2, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return NULL;
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default: return NULL;
        }
        if (param && (cp == '"' || cp == '\\' || cp == ']')) *o++ = '\\';
        o = put_utf8(o, cp);
    }
}

static int digits(const uint8_t *s, int k, int *out) {
    int v = 0;
    for (int d = 0; d < k; d++) {
        if (s[d] < '0' || s[d] > '9') return 0;
        v = v * 10 + (s[d] - '0');
    }
    *out = v;
    return 1;
}

static int64_t days_from_civil(int y, int m, int d) { /* days since 1970-01-01 */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" with its quotes, a real UTC time from 1970 that a record
 * can hold (nanoseconds in 64 bits): exactly what put_stamp writes for it */
static int read_stamp(jv_t *j, uint64_t *ts_ns) {
    if (j->n - j->i < 29) return 0;
    const uint8_t *s = j->s + j->i;
    int y, mo, d, h, mi, sec, us;
    if (s[0] != '"' || s[5] != '-' || s[8] != '-' || s[11] != 'T' || s[14] != ':' || s[17] != ':' ||
        s[20] != '.' || s[27] != 'Z' || s[28] != '"')
        return 0;
    if (!digits(s + 1, 4, &y) || !digits(s + 6, 2, &mo) || !digits(s + 9, 2, &d) || !digits(s + 12, 2, &h) ||
        !digits(s + 15, 2, &mi) || !digits(s + 18, 2, &sec) || !digits(s + 21, 6, &us))
        return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return 0;
    uint64_t secs = (uint64_t)days_from_civil(y, mo, d) * 86400u + (uint64_t)(h * 3600 + mi * 60 + sec);
    uint64_t frac = (uint64_t)us * 1000u;
    if (secs > (UINT64_MAX - frac) / 1000000000u) return 0;
    *ts_ns = secs * 1000000000u + frac;
    j->i += 29;
    return 1;
}

/* the level's name with its quotes, as put_level writes it (so "Level 20" is not INFO's) */
static int read_level(jv_t *j, uint32_t *level) {
    static const struct { const char *name; uint32_t level; } names[] = {
        {"\"INFO\"", 20}, {"\"DEBUG\"", 10}, {"\"WARNING\"", 30}, {"\"ERROR\"", 40},
        {"\"CRITICAL\"", 50}, {"\"NOTSET\"", 0}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (take(j, names[k].name, strlen(names[k].name))) {
            *level = names[k].level;
            return 1;
        }
    uint64_t v;
    if (!TAKE(j, "\"Level ") || !read_u64(j, &v) || v > UINT32_MAX || !TAKE(j, "\"")) return 0;
    if (v == 0 || v == 10 || v == 20 || v == 30 || v == 40 || v == 50) return 0;
    *level = (uint32_t)v;
    return 1;
}

/* whether JSON text holds a \uD800..\uDFFF escape (a surrogate: the general path decides
 * what a lone one becomes, and one of a pair is rare enough to leave to it as well) */
static int has_surrogate_escape(const uint8_t *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && (s[i + 2] == 'd' || s[i + 2] == 'D') &&
            ((s[i + 3] >= '8' && s[i + 3] <= '9') || (s[i + 3] >= 'a' && s[i + 3] <= 'f') ||
             (s[i + 3] >= 'A' && s[i + 3] <= 'F')))
            return 1;
        i++; /* the escaped character: a backslash escaping a backslash is no escape of what follows */
    }
    return 0;
}

/* one line [j->i, end) into m, its texts appended at *o; LSR_LINE_OK, _HOST or _OTHER */
static int parse_line(jv_t *j, uint64_t n, lsr_meta *m, const uint8_t *buf, uint8_t **o) {
    uint64_t seq, got_n, pid;
    uint32_t level;
    if (!TAKE(j, "{\"seq\":") || !read_u64(j, &seq) || !TAKE(j, ",\"n\":") || !read_u64(j, &got_n) ||
        got_n != n || !TAKE(j, ",\"ts\":") || !read_stamp(j, &m->ts_ns) || !TAKE(j, ",\"level\":") ||
        !read_level(j, &level) || !TAKE(j, ",\"pid\":") || !read_u64(j, &pid) || pid > UINT32_MAX ||
        !TAKE(j, ",\"logger\":"))
        return LSR_LINE_OTHER;
    uint8_t *at = *o, *p = read_string(j, at, 0);
    if (!p || !TAKE(j, ",\"msg\":")) return LSR_LINE_OTHER;
    uint8_t *msg = p;
    p = read_string(j, msg, 0);
    if (!p) return LSR_LINE_OTHER;
    uint8_t *fields = p;
    if (TAKE(j, ",\"fields\":")) {
        size_t from = j->i;
        if (from >= j->n || j->s[from] != '{' || !jv_value(j) || has_surrogate_escape(j->s + from, j->i - from))
            return LSR_LINE_OTHER;
        size_t k = from + 1;
        while (k < j->i && j->s[k] == ' ') k++;
        if (j->s[k] != '}') { /* {} holds no fields: none are kept */
            memcpy(p, j->s + from, j->i - from);
            p += j->i - from;
        }
    }
    int status = LSR_LINE_OK;
    if (TAKE(j, ",\"host\":")) { /* a log server's line: the host is the server's to say */
        if (!jv_string(j)) return LSR_LINE_OTHER;
        status = LSR_LINE_HOST;
    }
    if (!TAKE(j, "}")) return LSR_LINE_OTHER;
    m->seq = seq;
    m->pid = (uint32_t)pid;
    m->tid = 0;
    m->level = level;
    m->flags = 0;
    m->logger_off = (uint32_t)(at - buf);
    m->logger_len = (uint32_t)(msg - at);
    m->msg_off = (uint32_t)(msg - buf);
    m->msg_len = (uint32_t)(fields - msg);
    m->fields_off = (uint32_t)(fields - buf);
    m->fields_len = (uint32_t)(p - fields);
    *o = p;
    return status;
}

int64_t lsr_lines_parse(const uint8_t *s, size_t n, uint64_t first_n, lsr_meta *meta, uint8_t *status,
                        uint32_t max_records, uint8_t *buf, size_t buf_cap, uint64_t *buf_len) {
    if (buf_cap < n || n > UINT32_MAX) return LSR_EARG;
    uint8_t *o = buf;
    uint32_t count = 0;
    size_t i = 0;
    while (i < n) {
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (count >= max_records) return LSR_EARG;
        lsr_meta *m = &meta[count];
        memset(m, 0, sizeof *m);
        jv_t j = {s, end, i, 0};
        uint8_t *mark = o;
        int st = parse_line(&j, first_n + count, m, buf, &o);
        if (st != LSR_LINE_OTHER && j.i != end) st = LSR_LINE_OTHER;
        if (st == LSR_LINE_OTHER) {
            memset(m, 0, sizeof *m);
            o = mark;
        }
        status[count++] = (uint8_t)st;
        i = end + 1;
    }
    *buf_len = (uint64_t)(o - buf);
    return count;
}

/* ---- RFC 5424 messages ------------------------------------------------------------ */

/* RFC 5424 severity of a level number (the rule syslog.severity keeps for names) */
static uint32_t severity(uint32_t level) {
    if (level >= 50) return 2;
    if (level >= 40) return 3;
    if (level >= 30) return 4;
    if (level > 20) return 5;
    if (level == 20) return 6;
    return 7;
}

/* a PARAM-NAME: 1..32 printable ASCII other than = SP ] " */
static int sd_name(const uint8_t *s, size_t n) {
    if (n < 1 || n > 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '=' || s[i] == ']' || s[i] == '"') return 0;
    return 1;
}

#define MAX_PARAMS 64

/* Whether the JSON number s[0..n) is a float written as Python writes one (repr: the
 * shortest digits that read back to the same double, in fixed notation with at least one
 * digit after the point when its decimal exponent is -4..16, else d.ddde+XX), which is the
 * text syslog.param_text gives a float field: then it can be copied as it is. */
static int float_is_repr(const uint8_t *s, size_t n) {
    char text[48], digits[40], want[64];
    if (n >= sizeof text) return 0;
    memcpy(text, s, n);
    text[n] = 0;
    char *end;
    double d = strtod(text, &end);
    if (end != text + n || !isfinite(d)) return 0;
    int p, exp10 = 0;
    for (p = 0; p <= 17; p++) { /* the shortest correctly rounded digits that read back */
        char e[40];
        snprintf(e, sizeof e, "%.*e", p, fabs(d));
        if (strtod(e, NULL) == fabs(d)) {
            char *x = strchr(e, 'e');
            exp10 = atoi(x + 1);
            size_t k = 0;
            for (char *c = e; c < x; c++)
                if (*c != '.') digits[k++] = *c;
            digits[k] = 0;
            break;
        }
    }
    if (p > 17) return 0;
    size_t nd = strlen(digits);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0; /* %e pads with zeros: repr does not */
    int decpt = d == 0.0 ? 1 : exp10 + 1;
    char *o = want;
    if (signbit(d)) *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        o += snprintf(o, 16, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    } else if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -decpt; k++) *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else if ((size_t)decpt >= nd) {
        memcpy(o, digits, nd);
        o += nd;
        for (size_t k = nd; k < (size_t)decpt; k++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    }
    return (size_t)(o - want) == n && memcmp(want, s, n) == 0;
}

/* The fields object as [fields@PEN name="value"...] at o; NULL where the general path
 * must make it: a key that cannot be a PARAM-NAME or comes twice, a value that is not a
 * string, a whole number, a float as Python writes it, true, false or null, more than
 * MAX_PARAMS fields. */
static uint8_t *put_fields(uint8_t *o, const uint8_t *f, size_t n, const lsr_syslog_cfg *cfg) {
    jv_t j = {f, n, 1, 0};
    uint8_t *start = o;
    *o++ = '[';
    memcpy(o, cfg->fields_sd_id, cfg->fields_sd_id_len);
    o += cfg->fields_sd_id_len;
    struct { const uint8_t *s; size_t n; } keys[MAX_PARAMS];
    int nkeys = 0;
    uint8_t key[6 * 32 + 8];
    jv_ws(&j);
    if (j.i < n && f[j.i] == '}') return start; /* empty: no element */
    for (;;) {
        jv_ws(&j);
        /* the key, decoded; a key longer than 32 decoded bytes is no PARAM-NAME */
        size_t kstart = j.i;
        if (!jv_string(&j) || j.i - kstart > sizeof key) return NULL;
        jv_t kj = {f, j.i, kstart, 0};
        uint8_t *kend = read_string(&kj, key, 0);
        if (!kend || !sd_name(key, (size_t)(kend - key)) || nkeys >= MAX_PARAMS) return NULL;
        size_t klen = (size_t)(kend - key);
        *o++ = ' ';
        for (int k = 0; k < nkeys; k++)
            if (keys[k].n == klen && memcmp(keys[k].s, key, klen) == 0) return NULL;
        keys[nkeys].s = o;
        keys[nkeys++].n = klen;
        memcpy(o, key, klen);
        o += klen;
        jv_ws(&j);
        if (j.i >= n || f[j.i] != ':') return NULL;
        j.i++;
        jv_ws(&j);
        *o++ = '=';
        *o++ = '"';
        if (j.i >= n) return NULL;
        uint8_t c = f[j.i];
        if (c == '"') {
            o = read_string(&j, o, 1);
            if (!o) return NULL;
        } else if (c == 't' || c == 'f' || c == 'n') {
            size_t v = j.i;
            if (!jv_value(&j)) return NULL;
            memcpy(o, f + v, j.i - v);
            o += j.i - v;
        } else {
            size_t v = j.i;
            if (!jv_number(&j)) return NULL;
            int whole = 1;
            for (size_t k = v; k < j.i; k++)
                if (f[k] == '.' || f[k] == 'e' || f[k] == 'E') whole = 0;
            if (whole ? (j.i - v == 2 && f[v] == '-' && f[v + 1] == '0') /* -0 is 0 */
                      : !float_is_repr(f + v, j.i - v))
                return NULL;
            memcpy(o, f + v, j.i - v);
            o += j.i - v;
        }
        *o++ = '"';
        jv_ws(&j);
        if (j.i >= n) return NULL;
        if (f[j.i] == ',') {
            j.i++;
            continue;
        }
        if (f[j.i] != '}') return NULL;
        *o++ = ']';
        return o;
    }
}

/* text escaped as a PARAM-VALUE (a backslash before " \ ]) */
static uint8_t *put_param(uint8_t *o, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\' || s[i] == ']') *o++ = '\\';
        *o++ = s[i];
    }
    return o;
}

/* the most a message adds to twice its record's payload: header, numbers, SD names, framing */
#define LSR_SYSLOG_FIXED 640

size_t lsr_syslog_bound(uint32_t n, uint32_t buf_len, const lsr_syslog_cfg *cfg) {
    return (size_t)buf_len * 2 + (size_t)n * (LSR_SYSLOG_FIXED + cfg->host_app_len + cfg->sd_id_len +
                                              cfg->fields_sd_id_len) + 64;
}

/* one record's message at o (no framing); NULL where the general path must make it */
static uint8_t *put_message(uint8_t *o, const lsr_meta *m, const uint8_t *buf, uint64_t n,
                            const lsr_syslog_cfg *cfg, stamp_cache *stamp) {
    uint8_t *head = o;
    *o++ = '<';
    o = put_u64(o, cfg->facility * 8 + severity(m->level));
    o = put_str(o, ">1 ");
    o = put_stamp(o, m->ts_ns, stamp);
    *o++ = ' ';
    memcpy(o, cfg->host_app, cfg->host_app_len);
    o += cfg->host_app_len;
    *o++ = ' ';
    o = put_u64(o, m->pid);
    *o++ = ' ';
    const uint8_t *logger = buf + m->logger_off;
    int token = m->logger_len >= 1 && m->logger_len <= 32;
    for (uint32_t k = 0; token && k < m->logger_len; k++) token = logger[k] >= 0x21 && logger[k] <= 0x7e;
    if (token) {
        memcpy(o, logger, m->logger_len);
        o += m->logger_len;
    } else {
        *o++ = '-';
    }
    o = put_str(o, " [");
    memcpy(o, cfg->sd_id, cfg->sd_id_len);
    o += cfg->sd_id_len;
    o = put_str(o, " seq=\"");
    o = put_u64(o, m->seq);
    o = put_str(o, "\" n=\"");
    o = put_u64(o, n);
    o = put_str(o, "\" logger=\"");
    o = put_param(o, logger, m->logger_len);
    o = put_str(o, "\" level=\"");
    o = put_level(o, m->level);
    o = put_str(o, "\"]");
    if (m->fields_len) {
        o = put_fields(o, buf + m->fields_off, m->fields_len, cfg);
        if (!o) return NULL;
    }
    size_t room = m->msg_len;
    if (cfg->max_octets) {
        size_t used = (size_t)(o - head) + 1 + 3;
        if (used > cfg->max_octets) return NULL; /* the general path says why */
        if (room > cfg->max_octets - used) {
            room = cfg->max_octets - used;
            const uint8_t *t = buf + m->msg_off;
            while (room > 0 && (t[room] & 0xc0) == 0x80) room--; /* not inside a UTF-8 sequence */
        }
    }
    o = put_str(o, " \xef\xbb\xbf");
    memcpy(o, buf + m->msg_off, room);
    return o + room;
}

int64_t lsr_syslog_format(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *skip,
                          uint64_t first_n, const lsr_syslog_cfg *cfg, uint8_t *out, size_t out_cap,
                          uint64_t *ends) {
    uint64_t payload = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!skip || !skip[i]) payload += (uint64_t)meta[i].msg_len + meta[i].logger_len + meta[i].fields_len;
    if (out_cap < payload * 2 + (uint64_t)n * (LSR_SYSLOG_FIXED + cfg->host_app_len + cfg->sd_id_len +
                                               cfg->fields_sd_id_len) + 64)
        return LSR_EARG;
    if (cfg->host_app_len > 255 + 1 + 48 || cfg->sd_id_len > 32 || cfg->fields_sd_id_len > 32) return LSR_EARG;
    uint8_t *o = out;
    stamp_cache stamp = {.sec = -1};
    for (uint32_t i = 0; i < n; i++) {
        if (!skip || !skip[i]) {
            uint8_t *at = cfg->framed ? o + 11 : o; /* room for "LEN SP" in front */
            uint8_t *end = put_message(at, &meta[i], buf, first_n + i, cfg, &stamp);
            if (end && cfg->framed) {
                size_t len = (size_t)(end - at);
                uint8_t *p = put_u64(o, len);
                *p++ = ' ';
                memmove(p, at, len);
                end = p + len;
            }
            if (end) o = end;
        }
        ends[i] = (uint64_t)(o - out);
    }
    return (int64_t)(o - out);
}
