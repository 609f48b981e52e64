/*
 * logger_system sanitizer: candidate search and validation in one linear pass.
 *
 * The scanner walks a text once.  Most bytes are in the middle of a word and
 * cost one table lookup; at the start of a word it reads the word and asks
 * the few rules that can begin with it.  A rule either validates a candidate
 * completely (Luhn, SSN areas, octets, IPv6 groups, token shapes) or leaves
 * it; nothing backtracks, so the work per byte is bounded by a constant.
 * Spans never overlap: after a match the scan resumes at its end.
 */
#define _GNU_SOURCE
#include "sanitize.h"

#include <string.h>

#define C_DIGIT 1u
#define C_HEX 2u
#define C_ALPHA 4u
#define C_WORD 8u    /* [A-Za-z0-9_] */
#define C_B64URL 16u /* [A-Za-z0-9_-] */
#define C_LOCAL 32u  /* email local part: [A-Za-z0-9._%+-] */
#define C_UPPER 64u
#define C_USERINFO 128u /* URL userinfo: unreserved, sub-delims, ':' and '%' */

static uint8_t CLS[256];
static int cls_ready;

static void cls_init(void) {
    if (__atomic_load_n(&cls_ready, __ATOMIC_ACQUIRE)) return;
    for (int c = 0; c < 256; c++) {
        uint8_t v = 0;
        int digit = c >= '0' && c <= '9', lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
        if (digit) v |= C_DIGIT;
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= C_HEX;
        if (lower || upper) v |= C_ALPHA;
        if (upper) v |= C_UPPER;
        if (digit || lower || upper || c == '_') v |= C_WORD;
        if (digit || lower || upper || c == '_' || c == '-') v |= C_B64URL;
        if (digit || lower || upper || c == '.' || c == '_' || c == '%' || c == '+' || c == '-')
            v |= C_LOCAL;
        if (digit || lower || upper || strchr("-._~%!$&'()*+,;=:", c)) v |= C_USERINFO;
        if (c == 0) v &= (uint8_t)~C_USERINFO; /* strchr matches the terminator */
        CLS[c] = v;
    }
    __atomic_store_n(&cls_ready, 1, __ATOMIC_RELEASE);
}

#define IS(c, k) (CLS[(uint8_t)(c)] & (k))

typedef struct {
    const lsr_san_config *cfg;
    lsr_span *spans;
    uint32_t max, n;
    int overflow;
    uint32_t rec, base;
    uint8_t flags;
} scan_t;

static inline int enabled(const scan_t *c, int rule) { return (int)((c->cfg->enabled >> rule) & 1u); }

static void emit(scan_t *c, size_t start, size_t len, int rule) {
    if (c->n >= c->max) {
        c->overflow = 1;
        return;
    }
    lsr_span *s = &c->spans[c->n++];
    s->rec = c->rec;
    s->start = c->base + (uint32_t)start;
    s->len = (uint32_t)len;
    s->rule = (uint16_t)rule;
    s->action = c->cfg->action[rule & 63];
    s->flags = c->flags;
    s->repl_off = UINT32_MAX;
    s->repl_len = 0;
}

static inline int lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int starts_ci(const uint8_t *s, size_t n, const char *lit) {
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (lower(s[i]) != (uint8_t)lit[i]) return 0;
    return 1;
}

/* ---- numbers ------------------------------------------------------------ */

static size_t run_of(const uint8_t *s, size_t n, size_t j, uint8_t cls, size_t max) {
    size_t k = j;
    while (k < n && IS(s[k], cls) && k - j < max) k++;
    return k - j;
}


static int luhn_ok(const uint8_t *d, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int v = d[n - 1 - i];
        if (i & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* issuer prefixes of the card networks: keeps epoch stamps and ids out */
static int card_prefix_ok(const uint8_t *d, int n) {
    int p2 = d[0] * 10 + d[1], p4 = p2 * 100 + d[2] * 10 + d[3];
    switch (d[0]) {
    case 2: return p4 >= 2221 && p4 <= 2720 && n == 16;          /* Mastercard 2-series */
    case 3: return p2 == 34 || p2 == 37 || p2 == 36 || p2 == 38 || p2 == 30 ||
                   (p4 >= 3528 && p4 <= 3589);                      /* Amex, Diners, JCB */
    case 4: return 1;                                                /* Visa */
    case 5: return (p2 >= 50 && p2 <= 55) || (p2 >= 56 && p2 <= 59); /* Mastercard, Maestro */
    case 6: return 1;                                                /* Discover, UnionPay, Maestro */
    default: return 0;
    }
}

static inline int num_boundary_after(const uint8_t *s, size_t n, size_t j) {
    if (j >= n) return 1;
    if (IS(s[j], C_WORD)) return 0;
    if ((s[j] == '.' || s[j] == '-') && j + 1 < n && IS(s[j + 1], C_DIGIT)) return 0;
    return 1;
}

/* Digits in groups split by single spaces or dashes.  The card is the longest
 * run of 13-19 digits that ends where a group ends, passes the issuer prefix
 * and Luhn checks: "4111111111111111 2025" is a card followed by a year. */
static size_t try_card(const uint8_t *s, size_t n, size_t i) {
    uint8_t d[20] = {0};
    size_t ends[20];
    int nd = 0;
    size_t j = i;
    while (j < n && nd < 19) {
        if (IS(s[j], C_DIGIT)) {
            d[nd++] = (uint8_t)(s[j] - '0');
            j++;
            ends[nd] = j;
        } else if ((s[j] == ' ' || s[j] == '-') && j + 1 < n && IS(s[j + 1], C_DIGIT) &&
                   IS(s[j - 1], C_DIGIT)) {
            j++;
        } else {
            break;
        }
    }
    for (int k = nd; k >= 13; k--) {
        size_t e = ends[k];
        /* it ends a group, and then the text ends or a separator comes */
        int ends_here = e >= n || (!IS(s[e], C_DIGIT) &&
                                   (num_boundary_after(s, n, e) || s[e] == ' ' || s[e] == '-'));
        if (ends_here && card_prefix_ok(d, k) && luhn_ok(d, k)) return e - i;
    }
    return 0;
}

static inline int digits_at(const uint8_t *s, size_t n, size_t i, int k) {
    if (i + (size_t)k > n) return -1;
    int v = 0;
    for (int t = 0; t < k; t++) {
        if (!IS(s[i + t], C_DIGIT)) return -1;
        v = v * 10 + (s[i + t] - '0');
    }
    return v;
}

static size_t try_ssn(const uint8_t *s, size_t n, size_t i) {
    if (i + 11 > n) return 0;
    uint8_t sep = s[i + 3];
    if ((sep != '-' && sep != ' ') || s[i + 6] != sep) return 0;
    int area = digits_at(s, n, i, 3), group = digits_at(s, n, i + 4, 2), serial = digits_at(s, n, i + 7, 4);
    if (area < 0 || group < 0 || serial < 0) return 0;
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return 0;
    if (!num_boundary_after(s, n, i + 11)) return 0;
    return 11;
}

static size_t try_ipv4(const uint8_t *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t j = i;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (j >= n || s[j] != '.') return 0;
            j++;
        }
        size_t k = j;
        int v = 0;
        while (k < n && IS(s[k], C_DIGIT) && k - j < 4) v = v * 10 + (s[k++] - '0');
        if (k == j || k - j > 3 || v > 255 || (k - j > 1 && s[j] == '0')) return 0;
        j = k;
    }
    if (j < n && (IS(s[j], C_WORD) || (s[j] == '.' && j + 1 < n && IS(s[j + 1], C_DIGIT)))) return 0;
    return j - i;
}

/* an IPv6 address in full or compressed form, optionally ending in IPv4 */
static size_t try_ipv6(const uint8_t *s, size_t n, size_t i) {
    if (i > 0 && (IS(s[i - 1], C_HEX) || s[i - 1] == ':')) return 0;
    size_t j = i, end;
    int groups = 0, compressed = 0, colons = 0;
    if (j + 1 < n && s[j] == ':' && s[j + 1] == ':') {
        compressed = 1;
        colons = 2;
        j += 2;
    }
    for (;;) {
        size_t k = j;
        while (k < n && IS(s[k], C_HEX) && k - j < 5) k++;
        if (k == j) break;
        if (k < n && s[k] == '.' && groups <= 6 && k + 1 < n && IS(s[k + 1], C_DIGIT) &&
            run_of(s, n, j, C_DIGIT, 4) == k - j) { /* embedded IPv4 */
            size_t v4 = try_ipv4(s, n, j);
            if (!v4) return 0;
            groups += 2;
            j += v4;
            break;
        }
        if (k - j > 4) return 0;
        groups++;
        j = k;
        if (j + 1 < n && s[j] == ':' && s[j + 1] == ':') {
            if (compressed) return 0;
            compressed = 1;
            colons += 2;
            j += 2;
            continue;
        }
        if (j < n && s[j] == ':' && j + 1 < n && IS(s[j + 1], C_HEX)) {
            colons++;
            j++;
            continue;
        }
        break;
    }
    end = j;
    if (colons < 2 || groups > 8) return 0;
    if (compressed ? groups > 7 || groups < 1 : groups != 8) return 0;
    if (end < n && (IS(s[end], C_WORD) || (s[end] == ':' && end + 1 < n && IS(s[end + 1], C_HEX))))
        return 0;
    return end - i;
}

/* ---- tokens ------------------------------------------------------------- */

static size_t try_jwt(const uint8_t *s, size_t n, size_t i) {
    if (i + 3 > n || s[i] != 'e' || s[i + 1] != 'y' || s[i + 2] != 'J') return 0;
    size_t a = run_of(s, n, i, C_B64URL, 8192);
    if (a < 10 || i + a >= n || s[i + a] != '.') return 0;
    size_t j = i + a + 1, b = run_of(s, n, j, C_B64URL, 65536);
    if (b < 10 || j + b >= n || s[j + b] != '.') return 0;
    j += b + 1;
    j += run_of(s, n, j, C_B64URL, 8192);
    return j - i;
}

static size_t try_aws(const uint8_t *s, size_t n, size_t i) {
    static const char *prefixes[] = {"AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA",
                                     "ANPA", "ANVA", "ABIA", "ACCA", NULL};
    if (i + 20 > n) return 0;
    int ok = 0;
    for (int p = 0; prefixes[p]; p++)
        if (memcmp(s + i, prefixes[p], 4) == 0) ok = 1;
    if (!ok) return 0;
    for (size_t k = i + 4; k < i + 20; k++)
        if (!(IS(s[k], C_UPPER) || IS(s[k], C_DIGIT))) return 0;
    if (i + 20 < n && IS(s[i + 20], C_WORD)) return 0;
    return 20;
}

static size_t try_github(const uint8_t *s, size_t n, size_t i) {
    if (i + 4 <= n && s[i] == 'g' && s[i + 1] == 'h' && strchr("pousr", s[i + 2]) && s[i + 2] &&
        s[i + 3] == '_') {
        size_t k = run_of(s, n, i + 4, C_WORD, 255);
        if (k >= 36 && !(i + 4 + k < n && IS(s[i + 4 + k], C_WORD))) return 4 + k;
    }
    if (i + 11 <= n && memcmp(s + i, "github_pat_", 11) == 0) {
        size_t k = run_of(s, n, i + 11, C_WORD, 255);
        if (k >= 22) return 11 + k;
    }
    return 0;
}

static size_t try_slack(const uint8_t *s, size_t n, size_t i) {
    if (i + 5 > n || memcmp(s + i, "xox", 3) != 0 || !strchr("abposr", s[i + 3]) || !s[i + 3] ||
        s[i + 4] != '-')
        return 0;
    size_t k = run_of(s, n, i + 5, C_B64URL, 255);
    return k >= 10 ? 5 + k : 0;
}

static const uint8_t *find(const uint8_t *s, size_t n, const char *lit) {
    return memmem(s, n, lit, strlen(lit));
}

/* "-----BEGIN ... PRIVATE KEY-----" through the matching END line (or the end) */
static size_t try_pem(const uint8_t *s, size_t n, size_t i) {
    if (i + 11 > n || memcmp(s + i, "-----BEGIN ", 11) != 0) return 0;
    size_t k = i + 11;
    while (k < n && (IS(s[k], C_UPPER) || IS(s[k], C_DIGIT) || s[k] == ' ') && k - i < 80) k++;
    /* the label ends in "PRIVATE KEY" and the line in "-----" */
    if (k - (i + 11) < 11 || memcmp(s + k - 11, "PRIVATE KEY", 11) != 0) return 0;
    if (k + 5 > n || memcmp(s + k, "-----", 5) != 0) return 0;
    const uint8_t *end = find(s + k + 5, n - k - 5, "-----END ");
    if (!end) return n - i; /* no end line: everything after BEGIN is key material */
    size_t e = (size_t)(end - s) + 9;
    const uint8_t *close = find(s + e, n - e, "-----");
    return close ? (size_t)(close - s) + 5 - i : n - i;
}

/* ---- key = value secrets ------------------------------------------------ */

/* identifier suffixes whose value is a secret; the char before the suffix must
 * start the identifier or be one of _ - . */
#define KW(s) {s, sizeof(s) - 1}
static const struct {
    const char *s;
    size_t len;
} SECRET_KEYS[] = {
    KW("password"), KW("passwd"), KW("pwd"), KW("pass"), KW("passphrase"), KW("secret"),
    KW("client_secret"), KW("token"), KW("api_key"), KW("apikey"), KW("api-key"), KW("secret_key"),
    KW("secret-key"), KW("access_key"), KW("access-key"), KW("private_key"), KW("private-key"),
    KW("credentials"), KW("cookie"), KW("set-cookie"), KW("sessionid"), KW("session_id"), KW("auth"),
};
#undef KW

static int secret_key(const uint8_t *w, size_t len) {
    uint8_t last = (uint8_t)lower(w[len - 1]);
    for (size_t k = 0; k < sizeof SECRET_KEYS / sizeof SECRET_KEYS[0]; k++) {
        size_t kl = SECRET_KEYS[k].len;
        const char *kw = SECRET_KEYS[k].s;
        if (len < kl || (uint8_t)kw[kl - 1] != last) continue;
        const uint8_t *tail = w + len - kl;
        size_t t = 0;
        while (t < kl && lower(tail[t]) == (uint8_t)kw[t]) t++;
        if (t == kl && (len == kl || tail[-1] == '_' || tail[-1] == '-' || tail[-1] == '.')) return 1;
    }
    return 0;
}

/* after a key: closing quote, spaces, '=' or ':', spaces, the value; returns
 * the value's [start, end) or 0 */
static int key_value(const uint8_t *s, size_t n, size_t k, int quoted, int whole_line, size_t *vs,
                     size_t *ve) {
    if (quoted) { /* the key's closing quote, if it has one */
        size_t q = k < n && s[k] == '\\' ? k + 1 : k;
        if (q < n && (s[q] == '"' || s[q] == '\'')) k = q + 1;
    }
    while (k < n && s[k] == ' ') k++;
    if (k >= n || (s[k] != '=' && s[k] != ':')) return 0;
    k++;
    if (k < n && s[k] == '>') k++; /* key => value */
    while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
    uint8_t q = 0;
    if (k + 1 < n && s[k] == '\\' && s[k + 1] == '"') { /* JSON inside a JSON string */
        q = '"';
        k += 2;
    } else if (k < n && (s[k] == '"' || s[k] == '\'')) {
        q = s[k++];
    }
    size_t v = k;
    if (q) {
        while (k < n && s[k] != q && k - v < 4096) {
            if (s[k] == '\\') {
                if (k + 1 < n && s[k + 1] == q) break; /* an escaped quote ends \"...\" */
                k++;
            }
            k++;
        }
        if (k > n) k = n;
    } else if (whole_line) {
        while (k < n && s[k] != '\n' && s[k] != '\r' && s[k] != '"' && s[k] != '\\' && s[k] != ',' &&
               k - v < 4096)
            k++;
        while (k > v && s[k - 1] == ' ') k--;
    } else {
        /* strchr also finds the terminator: a NUL byte ends a value too */
        while (k < n && !strchr(" \t\r\n,;&\"')]}<>\\", s[k]) && k - v < 4096) k++;
    }
    if (k == v) return 0;
    *vs = v;
    *ve = k;
    return 1;
}

/* ---- the scan ----------------------------------------------------------- */

/* at: the '@'; floor: where the local part may begin at the earliest */
static size_t try_email(const uint8_t *s, size_t n, size_t at, size_t floor, size_t *start) {
    size_t a = at;
    while (a > floor && IS(s[a - 1], C_LOCAL) && at - a < 64) a--;
    while (a < at && (s[a] == '.' || s[a] == '-' || s[a] == '+')) a++;
    if (a == at || s[at - 1] == '.') return 0;
    size_t j = at + 1, labels = 0, last_start = j;
    int last_alpha = 0;
    for (;;) {
        size_t k = j;
        while (k < n && (IS(s[k], C_ALPHA) || IS(s[k], C_DIGIT) || s[k] == '-') && k - j < 63) k++;
        if (k == j) break;
        labels++;
        last_start = j;
        last_alpha = 1;
        for (size_t t = j; t < k; t++)
            if (!IS(s[t], C_ALPHA)) last_alpha = 0;
        j = k;
        if (j + 1 < n && s[j] == '.' && IS(s[j + 1], C_ALPHA | C_DIGIT)) {
            j++;
            continue;
        }
        break;
    }
    if (labels < 2 || !last_alpha || j - last_start < 2) return 0;
    *start = a;
    return j;
}

static void scan_text(scan_t *c, const uint8_t *s, size_t n) {
    size_t i = 0, last_end = 0, word_floor = 0;
    const uint64_t en = c->cfg->enabled;
    while (i < n) {
        uint8_t ch = s[i];
        size_t m = 0;
        int rule = -1;
        if (!IS(ch, C_WORD)) {
            if (ch == '@') {
                size_t a, e;
                if ((en >> LSR_R_EMAIL & 1) && (e = try_email(s, n, i, last_end, &a))) {
                    emit(c, a, e - a, LSR_R_EMAIL);
                    i = last_end = e;
                    continue;
                }
            } else if (ch == ':') {
                if (i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/' && (en >> LSR_R_URL_CREDENTIALS & 1)) {
                    size_t u = i + 3, k = u;
                    int colon = 0;
                    while (k < n && IS(s[k], C_USERINFO) && k - u < 256) colon |= s[k++] == ':';
                    if (k < n && s[k] == '@' && colon && k > u) {
                        emit(c, u, k - u, LSR_R_URL_CREDENTIALS);
                        i = last_end = k + 1;
                        continue;
                    }
                }
                if (i + 1 < n && s[i + 1] == ':' && (en >> LSR_R_IPV6 & 1) && (m = try_ipv6(s, n, i))) {
                    emit(c, i, m, LSR_R_IPV6);
                    i = last_end = i + m;
                    continue;
                }
            } else if (ch == '-' && (en >> LSR_R_PRIVATE_KEY & 1) && (m = try_pem(s, n, i))) {
                emit(c, i, m, LSR_R_PRIVATE_KEY);
                i = last_end = i + m;
                continue;
            } else if (ch == '\\' && (c->flags & LSR_SPAN_IN_FIELDS) && i + 1 < n) {
                /* a JSON escape: what follows it starts a word of its own */
                i += s[i + 1] == 'u' ? 6 : 2;
                if (i > n) i = n;
                word_floor = last_end = i;
                continue;
            }
            i++;
            continue;
        }
        /* a word: [i, e) */
        size_t e = i + 1;
        while (e < n && IS(s[e], C_WORD)) e++;
        if (i > word_floor && IS(s[i - 1], C_WORD)) { /* the rest of a word a match ended in */
            i = e;
            continue;
        }
        if (IS(ch, C_DIGIT)) {
            if ((en >> LSR_R_CREDIT_CARD & 1) && (m = try_card(s, n, i))) rule = LSR_R_CREDIT_CARD;
            else if ((en >> LSR_R_SSN & 1) && (m = try_ssn(s, n, i))) rule = LSR_R_SSN;
            else if ((en >> LSR_R_IPV4 & 1) && (m = try_ipv4(s, n, i))) rule = LSR_R_IPV4;
        }
        if (rule < 0 && e < n && s[e] == ':' && e - i <= 4 && (en >> LSR_R_IPV6 & 1) &&
            run_of(s, n, i, C_HEX, 5) == e - i && (m = try_ipv6(s, n, i)))
            rule = LSR_R_IPV6;
        if (rule < 0 && IS(ch, C_ALPHA)) {
            if (ch == 'e' && (en >> LSR_R_JWT & 1) && (m = try_jwt(s, n, i))) rule = LSR_R_JWT;
            else if (ch == 'A' && (en >> LSR_R_AWS_KEY & 1) && (m = try_aws(s, n, i))) rule = LSR_R_AWS_KEY;
            else if (ch == 'g' && (en >> LSR_R_GITHUB_TOKEN & 1) && (m = try_github(s, n, i)))
                rule = LSR_R_GITHUB_TOKEN;
            else if (ch == 'x' && (en >> LSR_R_SLACK_TOKEN & 1) && (m = try_slack(s, n, i)))
                rule = LSR_R_SLACK_TOKEN;
        }
        if (rule >= 0) {
            emit(c, i, m, rule);
            i = last_end = i + m;
            continue;
        }
        if (!IS(ch, C_ALPHA) || !(en & ((1ull << LSR_R_BEARER) | (1ull << LSR_R_PASSWORD)))) {
            i = e;
            continue;
        }
        /* a key: the identifier may go on with - and . ("x-api-key", "db.password") */
        size_t w = e;
        while (w < n && (IS(s[w], C_WORD) || s[w] == '-' || s[w] == '.') && w - i < 64) w++;
        while (w > e && (s[w - 1] == '-' || s[w - 1] == '.')) w--;
        size_t wlen = w - i;
        /* a key is followed by '=' or ':' (after an optional quote and spaces): look first */
        size_t peek = w;
        if (peek < n && (s[peek] == '"' || s[peek] == '\'' || s[peek] == '\\')) peek++;
        if (peek < n && s[peek] == '"') peek++;
        while (peek < n && s[peek] == ' ') peek++;
        int keyish = peek < n && (s[peek] == '=' || s[peek] == ':');
        if (wlen >= 3 && (keyish || (wlen == 6 && w < n && s[w] == ' '))) {
            int quoted = i > 0 && (s[i - 1] == '"' || s[i - 1] == '\'');
            size_t vs, ve;
            if ((en >> LSR_R_BEARER & 1) && keyish &&
                ((wlen == 13 && starts_ci(s + i, wlen, "authorization")) ||
                 (wlen == 19 && starts_ci(s + i, wlen, "proxy-authorization"))) &&
                key_value(s, n, w, quoted, 1, &vs, &ve)) {
                emit(c, vs, ve - vs, LSR_R_BEARER);
                i = last_end = ve;
                continue;
            }
            if ((en >> LSR_R_BEARER & 1) && wlen == 6 && starts_ci(s + i, 6, "bearer") && w < n &&
                s[w] == ' ') {
                size_t t = w;
                while (t < n && s[t] == ' ') t++;
                size_t k = t;
                while (k < n && (IS(s[k], C_B64URL) || s[k] == '.' || s[k] == '~' || s[k] == '+' ||
                                 s[k] == '/' || s[k] == '=') && k - t < 4096)
                    k++;
                if (k - t >= 8) {
                    emit(c, t, k - t, LSR_R_BEARER);
                    i = last_end = k;
                    continue;
                }
            }
            if ((en >> LSR_R_PASSWORD & 1) && keyish && secret_key(s + i, wlen) &&
                key_value(s, n, w, quoted, 0, &vs, &ve)) {
                emit(c, vs, ve - vs, LSR_R_PASSWORD);
                i = last_end = ve;
                continue;
            }
        }
        i = e;
    }
}

int64_t lsr_san_scan_text(const uint8_t *s, size_t n, const lsr_san_config *cfg, lsr_span *spans,
                          uint32_t max_spans) {
    cls_init();
    scan_t c = {cfg, spans, max_spans, 0, 0, 0, 0, 0};
    scan_text(&c, s, n);
    return c.overflow ? LSR_EFULL : (int64_t)c.n;
}

/* ---- fields: walk the JSON so that replacements keep it valid ----------- */

static size_t skip_string(const uint8_t *s, size_t n, size_t p) {
    p++; /* opening quote */
    while (p < n && s[p] != '"') p += s[p] == '\\' ? 2 : 1;
    return p < n ? p + 1 : n;
}

static size_t skip_value(const uint8_t *s, size_t n, size_t p) {
    if (p >= n) return n;
    if (s[p] == '"') return skip_string(s, n, p);
    if (s[p] == '{' || s[p] == '[') {
        int depth = 0;
        while (p < n) {
            if (s[p] == '"') {
                p = skip_string(s, n, p);
                continue;
            }
            if (s[p] == '{' || s[p] == '[') depth++;
            else if (s[p] == '}' || s[p] == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return n;
    }
    while (p < n && (s[p] == 0 || !strchr(",}] ", s[p]))) p++; /* strchr matches the terminator */
    return p;
}

static int field_redacted(const scan_t *c, const uint8_t *key, size_t len) {
    const uint8_t *p = c->cfg->field_names, *end = p + c->cfg->field_names_len;
    if (!p || len == 0 || len > 255) return 0;
    while (p < end) { /* entries: one length byte, then the lowercase name */
        size_t nl = *p++;
        if (nl == len && p + nl <= end) {
            size_t t = 0;
            while (t < len && lower(key[t]) == p[t]) t++;
            if (t == len) return 1;
        }
        p += nl;
    }
    return 0;
}

static size_t walk(scan_t *c, const uint8_t *s, size_t n, size_t p, const uint8_t *buf, int depth);

static void scan_sub(scan_t *c, const uint8_t *s, size_t a, size_t b, const uint8_t *buf, uint8_t flags) {
    uint32_t base = c->base;
    uint8_t f = c->flags;
    c->base = base + (uint32_t)a;
    c->flags = f | flags;
    scan_text(c, s + a, b - a);
    c->base = base;
    c->flags = f;
    (void)buf;
}

static size_t ws(const uint8_t *s, size_t n, size_t p) {
    while (p < n && s[p] == ' ') p++;
    return p;
}

static size_t walk(scan_t *c, const uint8_t *s, size_t n, size_t p, const uint8_t *buf, int depth) {
    p = ws(s, n, p);
    if (p >= n || depth > 64) return n;
    uint8_t ch = s[p];
    if (ch == '"') {
        size_t e = skip_string(s, n, p);
        if (e - p >= 2) scan_sub(c, s, p + 1, e - 1, buf, 0);
        return e;
    }
    if (ch == '{' || ch == '[') {
        p++;
        for (;;) {
            p = ws(s, n, p);
            if (p >= n) return n;
            if (s[p] == '}' || s[p] == ']') return p + 1;
            if (s[p] == ',') {
                p++;
                continue;
            }
            if (ch == '{') {
                if (s[p] != '"') return n;
                size_t ke = skip_string(s, n, p);
                const uint8_t *key = s + p + 1;
                size_t klen = ke - p >= 2 ? ke - p - 2 : 0;
                if (klen) scan_sub(c, s, p + 1, ke - 1, buf, 0);
                p = ws(s, n, ke);
                if (p >= n || s[p] != ':') return n;
                p = ws(s, n, p + 1);
                if (enabled(c, LSR_R_FIELD) && field_redacted(c, key, klen)) {
                    size_t ve = skip_value(s, n, p);
                    uint8_t f = c->flags;
                    c->flags = f | LSR_SPAN_QUOTE;
                    emit(c, p, ve - p, LSR_R_FIELD);
                    c->flags = f;
                    p = ve;
                    continue;
                }
            }
            size_t next = walk(c, s, n, p, buf, depth + 1);
            p = next > p ? next : p + 1; /* always forward, whatever the bytes */
        }
    }
    /* a number or a literal: a match must stand for the whole token, quoted;
     * only the integer digits are a candidate (4111111111111111.0 is a card) */
    size_t e = skip_value(s, n, p);
    if (IS(ch, C_DIGIT) || ch == '-') {
        uint32_t before = c->n;
        size_t a = ch == '-' ? p + 1 : p, z = a;
        while (z < e && IS(s[z], C_DIGIT)) z++;
        scan_sub(c, s, a, z, buf, LSR_SPAN_QUOTE);
        if (c->n > before) {
            c->n = before + 1;
            c->spans[before].start = c->base + (uint32_t)p;
            c->spans[before].len = (uint32_t)(e - p);
        }
    }
    return e;
}

int64_t lsr_san_scan(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *keep,
                     const lsr_san_config *cfg, lsr_span *spans, uint32_t max_spans) {
    cls_init();
    scan_t c = {cfg, spans, max_spans, 0, 0, 0, 0, 0};
    for (uint32_t i = 0; i < n && !c.overflow; i++) {
        if (keep && !keep[i]) continue;
        const lsr_meta *m = &meta[i];
        c.rec = i;
        c.base = m->msg_off;
        c.flags = 0;
        scan_text(&c, buf + m->msg_off, m->msg_len);
        if (m->fields_len) {
            c.base = m->fields_off;
            c.flags = LSR_SPAN_IN_FIELDS;
            walk(&c, buf + m->fields_off, m->fields_len, 0, buf, 0);
        }
    }
    return c.overflow ? LSR_EFULL : (int64_t)c.n;
}

/* ---- rewrite ------------------------------------------------------------ */

size_t lsr_san_bound(uint32_t buf_len, uint32_t nspans) {
    return (size_t)buf_len + (size_t)nspans * 192 + 64;
}

static uint8_t *put(uint8_t *o, const void *p, size_t k) {
    memcpy(o, p, k);
    return o + k;
}

static uint8_t *replacement(uint8_t *o, const lsr_span *sp, const uint8_t *src, const uint8_t *names,
                            const uint32_t *name_off, uint32_t nnames, const uint8_t *repl) {
    const char *name = sp->rule < nnames ? (const char *)names + name_off[sp->rule] : "rule";
    size_t nl = strnlen(name, 64);
    if (sp->flags & LSR_SPAN_QUOTE) *o++ = '"';
    if (sp->repl_off != UINT32_MAX) {
        o = put(o, repl + sp->repl_off, sp->repl_len > 160 ? 160 : sp->repl_len);
    } else if (sp->action == LSR_A_MASK) {
        uint8_t last[4];
        int k = 0;
        for (size_t t = sp->len; t > 0 && k < 4; t--)
            if (IS(src[sp->start + t - 1], C_WORD)) last[3 - k++] = src[sp->start + t - 1];
        o = put(o, "[MASKED:", 8);
        o = put(o, name, nl);
        o = put(o, ":****", 5);
        o = put(o, last + 4 - k, (size_t)k);
        *o++ = ']';
    } else {
        o = put(o, "[REDACTED:", 10);
        o = put(o, name, nl);
        *o++ = ']';
    }
    if (sp->flags & LSR_SPAN_QUOTE) *o++ = '"';
    return o;
}

/* copy [a, b) of buf to o, replacing the spans that lie inside it */
static uint8_t *copy_region(uint8_t *o, const uint8_t *buf, uint32_t a, uint32_t b, const lsr_span *spans,
                            uint32_t nspans, uint32_t *si, const uint8_t *names, const uint32_t *name_off,
                            uint32_t nnames, const uint8_t *repl) {
    uint32_t p = a;
    while (*si < nspans && spans[*si].start < b) {
        const lsr_span *sp = &spans[*si];
        if (sp->start < p || sp->start + sp->len > b) { /* overlapping or straddling: skip it */
            (*si)++;
            continue;
        }
        o = put(o, buf + p, sp->start - p);
        o = replacement(o, sp, buf, names, name_off, nnames, repl);
        p = sp->start + sp->len;
        (*si)++;
    }
    return put(o, buf + p, b - p);
}

int64_t lsr_san_rewrite(const lsr_meta *meta, uint32_t n, const uint8_t *buf, uint8_t *keep,
                        const lsr_span *spans, uint32_t nspans, const uint8_t *names,
                        const uint32_t *name_off, uint32_t nnames, const uint8_t *repl,
                        lsr_meta *meta_out, uint8_t *out, size_t out_cap) {
    cls_init();
    uint32_t buf_len = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = meta[i].fields_off + meta[i].fields_len;
        if (e > buf_len) buf_len = e;
    }
    if (out_cap < lsr_san_bound(buf_len, nspans)) return LSR_EARG;
    for (uint32_t k = 0; k < nspans; k++)
        if (spans[k].action == LSR_A_DROP && spans[k].rec < n) keep[spans[k].rec] = 0;
    uint8_t *o = out;
    uint32_t si = 0;
    for (uint32_t i = 0; i < n; i++) {
        const lsr_meta *m = &meta[i];
        lsr_meta *mo = &meta_out[i];
        *mo = *m;
        while (si < nspans && spans[si].start < m->msg_off) si++;
        if (!keep[i]) {
            mo->msg_len = mo->logger_len = mo->fields_len = 0;
            mo->msg_off = mo->logger_off = mo->fields_off = (uint32_t)(o - out);
            continue;
        }
        mo->msg_off = (uint32_t)(o - out);
        o = copy_region(o, buf, m->msg_off, m->msg_off + m->msg_len, spans, nspans, &si, names, name_off,
                        nnames, repl);
        mo->msg_len = (uint32_t)(o - out) - mo->msg_off;
        mo->logger_off = (uint32_t)(o - out);
        o = put(o, buf + m->logger_off, m->logger_len);
        mo->fields_off = (uint32_t)(o - out);
        while (si < nspans && spans[si].start < m->fields_off) si++;
        uint32_t first = si;
        o = copy_region(o, buf, m->fields_off, m->fields_off + m->fields_len, spans, nspans, &si, names,
                        name_off, nnames, repl);
        mo->fields_len = (uint32_t)(o - out) - mo->fields_off;
        if (si != first && mo->fields_len && !lsr_json_valid(out + mo->fields_off, mo->fields_len)) {
            /* never write fields a replacement could have broken */
            static const char fallback[] = "{\"_sanitizer\":\"[REDACTED:fields]\"}";
            o = out + mo->fields_off;
            o = put(o, fallback, sizeof fallback - 1);
            mo->fields_len = sizeof fallback - 1;
        }
    }
    return (int64_t)(o - out);
}
