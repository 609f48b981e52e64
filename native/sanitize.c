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
#include "tokens.h"

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
static uint8_t SPECIAL[256]; /* the bytes outside words that the scan looks at */
static uint8_t SCALAR_END[256]; /* what ends a JSON number or literal for skip_value: , } ] and a blank */
static uint8_t KEY_NEXT[256]; /* the bytes that may follow a key name: quotes, blanks, separators */
static uint8_t KEYISH[256];   /* those, '-' and '.' (a key goes on with them): what may end a key's first word */
static uint8_t PLAIN[256];    /* neither a word byte nor SPECIAL: the scan passes over it */
static uint8_t FIRST[256];    /* e, A, g, x: the first letters of the JWT, AWS, GitHub and Slack rules */
static uint8_t CARD_SEP[256]; /* the separators of a card's digit groups: ' ', '-', '.', '_', '/' */
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
        SPECIAL[c] = c != 0 && strchr("@%:-\\()[]{}\"\n", c) != NULL;
        SCALAR_END[c] = c == ',' || c == '}' || c == ']' || c == ' ';
        KEY_NEXT[c] = c != 0 && strchr("\\\"' \t=:,", c) != NULL;
        KEYISH[c] = KEY_NEXT[c] || c == '-' || c == '.';
        PLAIN[c] = !(v & C_WORD) && !SPECIAL[c];
        FIRST[c] = c == 'e' || c == 'A' || c == 'g' || c == 'x';
        CARD_SEP[c] = c == ' ' || c == '-' || c == '.' || c == '_' || c == '/';
    }
    __atomic_store_n(&cls_ready, 1, __ATOMIC_RELEASE);
}

#define IS(c, k) (CLS[(uint8_t)(c)] & (k))
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    const lsr_san_config *cfg;
    lsr_span *spans;
    uint32_t max, n;
    int overflow;
    uint32_t rec, base;
    uint8_t flags;
    int card_ctx; /* the text is the value of a card-named field: a digit run in it is in a card context */
    struct name_memo *memo; /* what field names were judged to be, in this call */
} scan_t;

/* Field names repeat from record to record: what a short name was judged to
 * be is kept for the rest of the call, in a small table indexed by a hash. */
#define MEMO_SLOTS 128
#define MEMO_KEY 30
enum {
    NM_VALID = 1, NM_FIELD = 2, NM_SECRET = 4, NM_PASSWORD = 8, NM_CARD = 16, NM_NAME = 32, NM_VALUE = 64,
    NM_CLEAN = 128 /* the scan of the name itself (outside a card context) found nothing */
};
struct name_memo {
    uint64_t lo, hi; /* see name_words8 */
    uint8_t len, flags;
    uint8_t key[MEMO_KEY];
};

static inline int enabled(const scan_t *c, int rule) { return (int)((c->cfg->enabled >> rule) & 1u); }

static inline void fill_span(const scan_t *c, lsr_span *s, size_t start, size_t len, int rule) {
    s->rec = c->rec;
    s->start = c->base + (uint32_t)start;
    s->len = (uint32_t)len;
    s->rule = (uint16_t)rule;
    s->action = c->cfg->action[rule & 63];
    s->flags = c->flags;
    s->repl_off = UINT32_MAX;
    s->repl_len = 0;
}

static void emit(scan_t *c, size_t start, size_t len, int rule) {
    if (c->n >= c->max) {
        c->overflow = 1;
        return;
    }
    fill_span(c, &c->spans[c->n++], start, len, rule);
}

#if defined(__SSE2__)
/* a bit per byte of v that is a word byte ([A-Za-z0-9_]) */
static inline unsigned word_bits(__m128i v) {
    const __m128i bit5 = _mm_set1_epi8(0x20), under = _mm_set1_epi8('_');
    const __m128i a0 = _mm_set1_epi8((char)(128 - 'a')), a26 = _mm_set1_epi8((char)(-128 + 26));
    const __m128i d0 = _mm_set1_epi8((char)(128 - '0')), d10 = _mm_set1_epi8((char)(-128 + 10));
    /* a letter: (v | 0x20) in 'a'..'z'; a digit: v in '0'..'9' (signed compares after a shift) */
    __m128i al = _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(v, bit5), a0), a26);
    __m128i dg = _mm_cmplt_epi8(_mm_add_epi8(v, d0), d10);
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(al, dg), _mm_cmpeq_epi8(v, under)));
}
#endif

/* the end of the word bytes ([A-Za-z0-9_], C_WORD) from e: sixteen at a time where SSE2 is,
 * the last few of a text with one load of its last sixteen bytes */
static inline size_t word_end(const uint8_t *s, size_t n, size_t e) {
#if defined(__SSE2__)
    while (n - e >= 16) {
        unsigned other = word_bits(_mm_loadu_si128((const __m128i *)(const void *)(s + e))) ^ 0xFFFFu;
        if (other) return e + (size_t)__builtin_ctz(other);
        e += 16;
    }
    if (e < n && n >= 16) {
        size_t b = n - 16;
        unsigned other = (word_bits(_mm_loadu_si128((const __m128i *)(const void *)(s + b))) ^ 0xFFFFu) >> (e - b);
        return other ? e + (size_t)__builtin_ctz(other) : n;
    }
#endif
    while (e < n && IS(s[e], C_WORD)) e++;
    return e;
}

/* the word at i (s[i] is a word byte): returns its end, and the length of the digit run at i
 * (0 when s[i] is a letter or '_') in *digits, counted up to 20 */
static inline size_t word_at(const uint8_t *s, size_t n, size_t i, size_t *digits) {
#if defined(__SSE2__)
    if (n >= 16) {
        const __m128i d0 = _mm_set1_epi8((char)(128 - '0')), d10 = _mm_set1_epi8((char)(-128 + 10));
        size_t b = n - i >= 16 ? i : n - 16; /* the last sixteen bytes near the end of the text */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + b));
        unsigned sh = (unsigned)(i - b);
        unsigned other = (word_bits(v) ^ 0xFFFFu) >> sh;
        /* the digit run, for every word: a branch on the first byte here would be a coin toss */
        unsigned nd = (((unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(_mm_add_epi8(v, d0), d10)) ^ 0xFFFFu) >> sh) |
                      (1u << (16 - sh)); /* past the text (or the load): no digit */
        size_t r = (size_t)__builtin_ctz(nd);
        if (__builtin_expect(r == 16, 0))
            while (r < 20 && i + r < n && IS(s[i + r], C_DIGIT)) r++;
        *digits = r;
        if (other) return i + (size_t)__builtin_ctz(other);
        return b == i ? word_end(s, n, i + 16) : n;
    }
#endif
    size_t r = 0;
    while (r < 20 && i + r < n && IS(s[i + r], C_DIGIT)) r++;
    *digits = r;
    return word_end(s, n, i + 1);
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

/* The usual printed groupings: 4-4-4-4 (and 4-4-4-1..4-4-4-4-3 for the other
 * lengths), and 4-6-5 / 4-6-4 (Amex, Diners). */
static int standard_groups(const uint8_t *gl, int ng) {
    if (ng < 3 || gl[0] != 4) return 0;
    if (ng == 3 && gl[1] == 6 && (gl[2] == 4 || gl[2] == 5)) return 1;
    for (int g = 1; g < ng - 1; g++)
        if (gl[g] != 4) return 0;
    return gl[ng - 1] >= 1 && gl[ng - 1] <= 4;
}

/* Digits in groups split by one separator style for the whole number: a space,
 * two spaces, '-', '.', '_' or '/'.  The card is the longest run of 13-19
 * digits that ends where a group ends and passes the issuer prefix and Luhn
 * checks ("4111111111111111 2025" is a card followed by a year), and that has
 * a card context: printed groups, or a card word before it (*ctx, asked for
 * only when needed).  A bare run without a card word is not a card: random
 * 16-digit ids pass Luhn one time in ten and an issuer prefix often.  r is
 * the length of the digit run at i, at most 20. */
static inline int card_may_start(const uint8_t *s, size_t n, size_t i, size_t r) {
    if (r >= 13) return 1;
    /* a short run is a card only as the first group of one */
    uint8_t x = i + r < n ? s[i + r] : 0;
    if (!((r >= 3) & CARD_SEP[x])) return 0;
    /* and only if a digit follows its separator (a double blank is one separator too) */
    size_t q = i + r + 1;
    if (x == ' ' && q < n && s[q] == ' ') q++;
    if (q >= n || !IS(s[q], C_DIGIT)) return 0;
    /* and a card has 13 digits or more: count them up to the first byte that is neither a
     * digit nor a separator (try_card stops there or sooner) */
    size_t nd = r;
    for (size_t j = q; j < n && nd < 13; j++) {
        uint8_t b = s[j];
        if (IS(b, C_DIGIT)) nd++;
        else if (b != ' ' && b != '-' && b != '.' && b != '_' && b != '/') break;
    }
    return nd >= 13;
}

static size_t try_card(const uint8_t *s, size_t n, size_t i, size_t r, int (*ctx)(void *), void *arg) {
    if (!card_may_start(s, n, i, r)) return 0;
    uint8_t d[20] = {0}, gl[20] = {0};
    size_t ends[20];
    int nd = 0, ng = 0, glen = 0, gat[20] = {0}; /* gat[k]: groups complete at k digits */
    uint8_t style = 0;
    size_t j = i;
    while (j < n && nd < 19) {
        if (IS(s[j], C_DIGIT)) {
            d[nd++] = (uint8_t)(s[j] - '0');
            glen++;
            ends[nd] = ++j;
            continue;
        }
        uint8_t st = s[j];
        size_t sl = 1;
        if (st == ' ' && j + 1 < n && s[j + 1] == ' ') st = 'D', sl = 2;
        else if (st != ' ' && st != '-' && st != '.' && st != '_' && st != '/') break;
        if (j + sl >= n || !IS(s[j + sl], C_DIGIT) || (style && st != style)) break;
        style = st;
        gl[ng++] = (uint8_t)glen;
        gat[nd] = ng;
        glen = 0;
        j += sl;
    }
    gl[ng++] = (uint8_t)glen;
    gat[nd] = ng;
    uint8_t sepc = style == 'D' ? ' ' : style;
    int known = -1;
    for (int k = nd; k >= 13; k--) {
        if (!gat[k]) continue; /* not at the end of a group */
        size_t e = ends[k];
        /* it ends a group, and then the text ends or a separator comes */
        int ends_here = e >= n || (!IS(s[e], C_DIGIT) &&
                                   (num_boundary_after(s, n, e) || s[e] == ' ' || s[e] == '-' ||
                                    (style && s[e] == sepc)));
        if (!ends_here || !card_prefix_ok(d, k) || !luhn_ok(d, k)) continue;
        if (style && standard_groups(gl, gat[k])) return e - i;
        if (known < 0) known = ctx(arg);
        if (known) return e - i;
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
    /* xoxb-, xoxp-, xoxa-, xoxe-, ...: any letter, so that a kind we do not know yet is caught */
    if (i + 5 > n || memcmp(s + i, "xox", 3) != 0 || s[i + 3] < 'a' || s[i + 3] > 'z' || s[i + 4] != '-')
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
    /* the label ends in "PRIVATE KEY" (PEM) or "PRIVATE KEY BLOCK" (PGP), the line in "-----" */
    size_t label = k - (i + 11);
    if (!(label >= 11 && memcmp(s + k - 11, "PRIVATE KEY", 11) == 0) &&
        !(label >= 17 && memcmp(s + k - 17, "PRIVATE KEY BLOCK", 17) == 0))
        return 0;
    if (k + 5 > n || memcmp(s + k, "-----", 5) != 0) return 0;
    const uint8_t *end = find(s + k + 5, n - k - 5, "-----END ");
    if (!end) return n - i; /* no end line: everything after BEGIN is key material */
    size_t e = (size_t)(end - s) + 9;
    const uint8_t *close = find(s + e, n - e, "-----");
    return close ? (size_t)(close - s) + 5 - i : n - i;
}

/* ---- names: one matcher for secret keys, in text and in fields ---------- */

/* A name is cut into words: at '-', '_', '.', ' ' (any byte that is not a
 * letter or a digit), at a lower-to-upper step ("dbPassword"), before the last
 * capital of a run of capitals that goes on in lower case ("APIKey" is "api
 * key"), and between letters and digits.
 *
 * A name is a secret name when its LAST word is a secret word ("password",
 * "token", "secret", "cookie", ...), or its last two words are a secret pair
 * ("api key", "access key", "session id", ...), after dropping trailing
 * digits and words that only say how the secret is kept ("password_hash",
 * "token_b64", "secret_value", "password2").  Why the end: a name says what it
 * holds last ("db_password", "aws_secret_access_key", "new_password",
 * "X-Amz-Signature"), and names that end in another word are about a secret,
 * not the secret ("token_count", "max_tokens", "password_hint",
 * "secret_name", "token_type", "aws_access_key_id").  Words match whole, so
 * "passport", "bypass", "compass", "tokenizer", "author" are not secret
 * names.  Choices, failing closed where a value could be a secret:
 * - a hash or an encoding of a secret is kept like the secret (a hash of a
 *   weak password gives the password back);
 * - one lowercase word that ends in a long secret word is a secret name too
 *   ("accesstoken", "clientsecret", "dbpassword", "jsessionid"); no common
 *   word ends that way without being about a secret;
 * - plurals are not, except of containers: "tokens" and "passwords" are
 *   counts in practice, "credentials", "cookies" and "secrets" hold them;
 * - "key" alone and "code" are secret only as URL query parameters (?key= is
 *   an API key, ?code= an OAuth code), which the caller decides; "key=" in
 *   text is too common to mean a secret;
 * - "session" alone is, like session id, session key, sessionid and
 *   session_token: "session=<id>" and {"session": "<id>"} hold the session
 *   itself (a field named "session" is replaced whole by default, and a key
 *   in text is judged by this same matcher); a value that is a literal or a
 *   number stays (see benign);
 * - card verification codes (cvv, cvc) are password-like: their values are
 *   short numbers, and secret;
 * - "authorization" is (its values are credentials), "auth" too, but not
 *   "authentication" or "author". */
typedef struct {
    const char *s;
    uint8_t len;
    uint8_t pw; /* password-like: a number is a secret too (PINs, numeric passwords) */
} word_t;
#define W(s, pw) {s, sizeof(s) - 1, pw}
static const word_t SECRET_WORDS[] = {
    W("password", 1),  W("passwd", 1),      W("pwd", 1),        W("passphrase", 1), W("passcode", 1),
    W("pin", 1),       W("otp", 1),         W("cvv", 1),        W("cvc", 1),        W("pass", 0),       W("secret", 0),     W("secrets", 0),
    W("token", 0),     W("apikey", 0),      W("cookie", 0),     W("cookies", 0),    W("auth", 0),
    W("authorization", 0), W("credential", 0), W("credentials", 0), W("creds", 0), W("signature", 0),
    W("sig", 0),       W("session", 0),     W("sessionid", 0),   W("sessid", 0),     W("jsessionid", 0), W("accountkey", 0),
    W("privatekey", 0),
    W("accesskey", 0), W("secretkey", 0),   W("authkey", 0),
};
/* the end of a one-word name, after two letters or more: "accesstoken" */
static const word_t SECRET_SUFFIXES[] = {
    W("password", 1),  W("passwd", 1),      W("passphrase", 1), W("secret", 0),     W("token", 0),
    W("apikey", 0),    W("accesskey", 0),   W("secretkey", 0),  W("privatekey", 0), W("accountkey", 0),
    W("sessionid", 0), W("sessid", 0),      W("signature", 0),  W("credentials", 0), W("cookie", 0),
};
/* "<word> key" is a secret pair */
static const word_t KEY_QUALIFIERS[] = {
    W("api", 0),     W("access", 0),     W("private", 0), W("secret", 0), W("account", 0), W("auth", 0),
    W("session", 0), W("signing", 0),    W("encryption", 0), W("master", 0), W("client", 0),
    W("shared", 0),  W("subscription", 0), W("app", 0),   W("consumer", 0), W("webhook", 0), W("hmac", 0),
    W("license", 0), W("sas", 0),
};
/* trailing words that say how a secret is kept, not what it is */
static const word_t STORAGE_WORDS[] = {
    W("hash", 0),   W("hashed", 0), W("digest", 0), W("enc", 0),    W("encrypted", 0), W("encoded", 0),
    W("b64", 0),    W("base64", 0), W("hex", 0),    W("value", 0),  W("val", 0),       W("raw", 0),
    W("plain", 0),  W("plaintext", 0), W("clear", 0), W("cleartext", 0), W("str", 0), W("string", 0),
    W("data", 0),   W("text", 0),   W("bytes", 0),  W("confirm", 0), W("confirmation", 0), W("again", 0),
    W("repeat", 0), W("bcrypt", 0), W("b", 0),      W("md", 0),     W("sha", 0), /* b64, md5, sha256 */
};
/* a word of a name that makes a digit run after it (or in its value) a card */
static const word_t CARD_WORDS[] = {
    W("card", 0),   W("cards", 0),  W("cc", 0),       W("ccn", 0),      W("pan", 0),     W("credit", 0),
    W("debit", 0),  W("visa", 0),   W("mastercard", 0), W("amex", 0),   W("payment", 0), W("payments", 0),
    W("creditcard", 0), W("cardnumber", 0), W("cardno", 0), W("ccnum", 0), W("ccnumber", 0),
    W("maestro", 0), W("jcb", 0),   W("diners", 0),   W("unionpay", 0), W("discover", 0),
};
#undef W
#define NWORDS(a) (sizeof(a) / sizeof(a[0]))

typedef struct {
    const uint8_t *p;
    size_t len;
} word_span;

#define MAX_NAME 128 /* longer names are not judged */
#define LAST_WORDS 8

static inline int is_alnum(uint8_t c) { return IS(c, C_ALPHA | C_DIGIT) != 0; }
static inline int is_upper(uint8_t c) { return IS(c, C_UPPER) != 0; }
static inline int is_digit(uint8_t c) { return IS(c, C_DIGIT) != 0; }

/* the last LAST_WORDS words of a name, in order; returns how many */
static int name_words(const uint8_t *w, size_t len, word_span *out) {
    word_span ring[LAST_WORDS];
    size_t total = 0, a = 0;
    for (size_t k = 0; k <= len; k++) {
        int cut = k == len, skip = 0;
        if (!cut) {
            uint8_t ch = w[k];
            if (!is_alnum(ch)) {
                cut = skip = 1;
            } else if (k > a) {
                uint8_t pr = w[k - 1];
                if (is_upper(ch) && (is_digit(pr) || (is_alnum(pr) && !is_upper(pr)))) cut = 1;
                else if (is_upper(ch) && is_upper(pr) && k + 1 < len && is_alnum(w[k + 1]) &&
                         !is_upper(w[k + 1]) && !is_digit(w[k + 1]))
                    cut = 1;
                else if (is_digit(ch) != is_digit(pr)) cut = 1;
            }
        }
        if (cut) {
            if (k > a) ring[total++ % LAST_WORDS] = (word_span){w + a, k - a};
            a = skip ? k + 1 : k;
        }
    }
    size_t nw = total < LAST_WORDS ? total : LAST_WORDS;
    for (size_t t = 0; t < nw; t++) out[t] = ring[(total - nw + t) % LAST_WORDS];
    return (int)nw;
}

static inline int word_is(word_span w, const word_t *lit) {
    if (w.len != lit->len) return 0;
    for (size_t t = 0; t < w.len; t++)
        if (lower(w.p[t]) != (uint8_t)lit->s[t]) return 0;
    return 1;
}

static int word_in(word_span w, const word_t *list, size_t nlist) {
    for (size_t k = 0; k < nlist; k++)
        if (word_is(w, &list[k])) return (int)k + 1;
    return 0;
}

static inline int all_digits(word_span w) {
    for (size_t t = 0; t < w.len; t++)
        if (!is_digit(w.p[t])) return 0;
    return 1;
}

/* 0: not a secret name; 1: a secret name; 2: a password-like one, whose
 * numbers are secrets too (see benign) */
static int secret_name(const uint8_t *w, size_t len) {
    if (len == 0 || len > MAX_NAME) return 0;
    word_span ws[LAST_WORDS];
    int nw = name_words(w, len, ws), k;
    while (nw > 1 && (all_digits(ws[nw - 1]) || word_in(ws[nw - 1], STORAGE_WORDS, NWORDS(STORAGE_WORDS))))
        nw--;
    if (nw == 0) return 0;
    word_span last = ws[nw - 1];
    if ((k = word_in(last, SECRET_WORDS, NWORDS(SECRET_WORDS)))) return SECRET_WORDS[k - 1].pw ? 2 : 1;
    if (nw >= 2 && last.len == 3 && lower(last.p[0]) == 'k' && lower(last.p[1]) == 'e' &&
        lower(last.p[2]) == 'y' && word_in(ws[nw - 2], KEY_QUALIFIERS, NWORDS(KEY_QUALIFIERS)))
        return 1;
    if (nw >= 2 && last.len == 2 && lower(last.p[0]) == 'i' && lower(last.p[1]) == 'd') {
        static const word_t sess[] = {{"session", 7, 0}, {"sess", 4, 0}};
        if (word_in(ws[nw - 2], sess, 2)) return 1;
    }
    for (size_t s = 0; s < NWORDS(SECRET_SUFFIXES); s++) {
        const word_t *x = &SECRET_SUFFIXES[s];
        if (last.len < (size_t)x->len + 2) continue;
        word_span tail = {last.p + last.len - x->len, x->len};
        int letters = 1;
        for (size_t t = 0; t < last.len - x->len; t++) letters &= IS(last.p[t], C_ALPHA) != 0;
        if (letters && word_is(tail, x)) return x->pw ? 2 : 1;
    }
    return 0;
}

/* a name with a card word in it: "card_number", "ccNum", "payment" */
static int card_name(const uint8_t *w, size_t len) {
    if (len == 0 || len > MAX_NAME) return 0;
    word_span ws[LAST_WORDS];
    int nw = name_words(w, len, ws);
    for (int k = 0; k < nw; k++)
        if (word_in(ws[k], CARD_WORDS, NWORDS(CARD_WORDS))) return 1;
    return 0;
}

/* a card word among the few words before i (at most 6 words, 96 bytes) */
static int card_word_before(const uint8_t *s, size_t i) {
    size_t j = i, stop = i > 96 ? i - 96 : 0;
    for (int words = 0; words < 6 && j > stop; words++) {
        while (j > stop && !is_alnum(s[j - 1])) j--;
        size_t e = j;
        while (j > stop && is_alnum(s[j - 1])) j--;
        if (e == j) break;
        if (card_name(s + j, e - j)) return 1;
    }
    return 0;
}

/* ---- values ------------------------------------------------------------- */

static inline int hexv(uint8_t c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The character at k as the text means it, and how many bytes it takes: in
 * fields (esc) the texts are JSON string contents, where an escape is one
 * character ("\\\"" is a quote, "\\n" a newline). */
static inline uint32_t dch(const uint8_t *s, size_t n, size_t k, int esc, size_t *adv) {
    uint8_t ch = s[k];
    *adv = 1;
    if (ch != '\\' || !esc || k + 1 >= n) return ch;
    *adv = 2;
    switch (s[k + 1]) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'b': return 8;
    case 'f': return 12;
    case 'u': {
        if (k + 6 > n) return 0xFFFD;
        uint32_t v = 0;
        for (int t = 2; t < 6; t++) {
            int h = hexv(s[k + t]);
            if (h < 0) return 0xFFFD;
            v = v * 16 + (uint32_t)h;
        }
        *adv = 6;
        return v;
    }
    default: return s[k + 1];
    }
}

/* decode [a, b) into out (up to cap bytes; characters past ASCII from \u escapes
 * become 0x80); returns the length, or cap + 1 if it does not fit */
static size_t decode_into(const uint8_t *s, size_t a, size_t b, int esc, uint8_t *out, size_t cap) {
    size_t k = a, o = 0, adv;
    while (k < b) {
        if (o >= cap) return cap + 1;
        uint32_t ch = dch(s, b, k, esc, &adv);
        out[o++] = ch < 0x80 || adv == 1 ? (uint8_t)ch : 0x80;
        k += adv;
    }
    return o;
}

enum {
    V_LINE = 1,   /* after ':': to the end of the line */
    V_QUERY = 2,  /* a URL query parameter: to '&' */
    V_CONN = 4,   /* a connection-string parameter (";AccountKey="): to ';' */
    V_JSON = 8,   /* after a quoted key and ':': an unquoted value ends at ',', '}' or ']' */
    V_INQ = 16,   /* the key is inside a double-quoted text: its quote ends the value */
    V_INBR = 32,  /* the key is inside brackets: a closing bracket ends the value */
    V_QUOTED = 64 /* only a quoted value will do */
};

/* The value after a key's separator (k is just after it).  A quoted value
 * runs to its closing quote, and an escaped quote never closes it, at any
 * depth of JSON inside JSON strings: the backslashes before the opening quote
 * tell how deep the value is (none, one, three, seven: each level of JSON
 * escapes them again), and a quote closes the value only if the backslashes
 * before it, undone level by level, leave it unescaped at that depth.  With no
 * closing quote, the value runs to the end of the text.  An unquoted value runs to
 * whitespace, or to the end of the line (V_LINE), or to what mode says.
 * Returns 1 with the value [vs, ve) and where the scan goes on, or 0. */
static int read_value(const uint8_t *s, size_t n, size_t k, int esc, unsigned mode, size_t *vs, size_t *ve,
                      size_t *next) {
    size_t adv;
    while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
    if (k >= n) return 0;
    uint32_t q = dch(s, n, k, esc, &adv);
    size_t k0 = k;
    unsigned b = 0;
    while (q == '\\' && b < 15 && k + adv < n) { /* the escapes of an opening quote */
        k += adv;
        b++;
        q = dch(s, n, k, esc, &adv);
    }
    if (q == '"' || q == '\'') {
        unsigned depth = 0, run = 0;
        while ((2u << depth) - 1 <= b) depth++;
        size_t v = k + adv, p = v, run_at = v, end = n, resume = n;
        while (p < n) {
            uint32_t ch = dch(s, n, p, esc, &adv);
            if (ch == q) {
                unsigned r = run;
                int closes = 0;
                for (unsigned t = 0; t < depth && !closes; t++) {
                    closes = !(r & 1); /* a quote of an outer level: that string ends here */
                    r >>= 1;
                }
                if (closes || !(r & 1)) {
                    end = run ? run_at : p;
                    resume = p + adv;
                    break;
                }
            }
            if (ch == '\\') {
                if (!run) run_at = p;
                run++;
            } else {
                run = 0;
            }
            p += adv;
        }
        if (end > n) end = n;
        if (resume > n) resume = n;
        if (end <= v) return 0;
        *vs = v;
        *ve = end;
        *next = resume;
        return 1;
    }
    k = k0;
    q = dch(s, n, k, esc, &adv);
    if (mode & V_QUOTED) return 0;
    size_t v = k, p = k, last = k;
    if (q == '{' || q == '[') { /* a structure: to the bracket that closes it */
        int depth = 0;
        while (p < n) {
            uint32_t ch = dch(s, n, p, esc, &adv);
            p += adv;
            if (ch == '{' || ch == '[') depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) break;
        }
        *vs = v;
        *ve = *next = p > n ? n : p;
        return 1;
    }
    while (p < n) {
        uint32_t ch = dch(s, n, p, esc, &adv);
        if (ch == '\n' || ch == '\r') break;
        if ((ch == ' ' || ch == '\t') && !(mode & (V_LINE | V_JSON))) break;
        if ((mode & V_QUERY) && ch == '&') break; /* not '#': an unencoded '#' may be in the secret */
        if ((mode & V_CONN) && ch == ';') break;
        if ((mode & V_JSON) && (ch == ',' || ch == '}' || ch == ']')) break;
        if ((mode & V_INQ) && ch == '"') break;
        if ((mode & V_INBR) && (ch == ')' || ch == ']' || ch == '}')) break;
        p += adv;
        if (ch != ' ' && ch != '\t') last = p;
    }
    size_t e = last; /* trailing blanks are not part of it */
    /* a final ',', ';' or '.' is punctuation of the text ("password=x, user=y") */
    if (e - v > 1 && (s[e - 1] == ',' || s[e - 1] == ';' || s[e - 1] == '.')) e--;
    if (e <= v) return 0;
    *vs = v;
    *ve = *next = e;
    return 1;
}

/* Values of secret-named keys that are not secrets: booleans and their kin,
 * numbers (unless the name is password-like, or the number is long enough to
 * be a card or a numeric secret: more than 12 digits) and absolute paths
 * ("pwd=/srv/app").  Everything else is a secret. */
static int benign(const uint8_t *v, size_t len, int pw) {
    static const char *const lits[] = {"true", "false", "null", "none", "nil", "yes", "no", "on", "off",
                                       "undefined"};
    if (len == 0) return 1;
    if (len <= 9)
        for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
            size_t l = strlen(lits[k]), t = 0;
            while (t < len && t < l && lower(v[t]) == (uint8_t)lits[k][t]) t++;
            if (t == len && l == len) return 1;
        }
    size_t k = 0, digits = 0;
    if (v[0] == '-' || v[0] == '+') k++;
    while (k < len && is_digit(v[k])) k++, digits++;
    size_t intdigits = digits;
    if (k < len && v[k] == '.' && digits) {
        k++;
        while (k < len && is_digit(v[k])) k++, digits++;
    }
    if (k == len && digits) return !pw && intdigits <= 12;
    if (v[0] == '/' && len >= 2 && (is_alnum(v[1]) || v[1] == '.' || v[1] == '_' || v[1] == '~')) {
        /* a path, unless it looks drawn at random (a base64 secret may start with '/'): a part
         * of 10 or more characters mixing upper case, lower case and digits, or a whole of 24 or
         * more in the base64 alphabet alone that mixes all three */
        size_t seg = 0;
        int mix = 0, all = 0, b64 = 1;
        for (k = 1; k < len; k++) {
            uint8_t ch = v[k];
            all |= (ch >= 'A' && ch <= 'Z') ? 1 : (ch >= 'a' && ch <= 'z') ? 2 : is_digit(ch) ? 4 : 0;
            if (!(is_alnum(ch) || ch == '/' || ch == '+' || ch == '=')) b64 = 0;
        }
        if (len >= 24 && b64 && all == 7) return 0;
        for (k = 1; k <= len; k++) {
            uint8_t ch = k < len ? v[k] : '/';
            if (ch == '/') {
                if (seg >= 10 && mix == 7) return 0;
                if (k < len && v[k - 1] == '/') return 0;
                seg = 0;
                mix = 0;
                continue;
            }
            if (!(is_alnum(ch) || ch == '.' || ch == '_' || ch == '~' || ch == '-' || ch == '+')) return 0;
            seg++;
            mix |= (ch >= 'A' && ch <= 'Z') ? 1 : (ch >= 'a' && ch <= 'z') ? 2 : is_digit(ch) ? 4 : 0;
        }
        return 1;
    }
    return 0;
}

/* a bare "Basic <base64>": the credentials decode to "user:password" */
static size_t try_basic(const uint8_t *s, size_t n, size_t t) {
    size_t k = t;
    while (k < n && (is_alnum(s[k]) || s[k] == '+' || s[k] == '/') && k - t < 4096) k++;
    size_t body = k - t;
    while (k < n && s[k] == '=' && k - t - body < 2) k++;
    size_t len = k - t;
    if (len < 8 || len % 4 || (k < n && (IS(s[k], C_WORD) || s[k] == '='))) return 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t x = t; x < t + body; x++) {
        uint8_t ch = s[x];
        int v = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
              : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' ? 62 : 63;
        acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (((acc >> bits) & 0xFF) == ':') return len;
        }
    }
    return 0;
}

/* ---- e-mail ------------------------------------------------------------- */

/* a letter past ASCII (UTF-8, starting at k, ending before lim): the code
 * points of letters and marks, not of spaces, punctuation, symbols or format
 * characters; returns its length or 0 */
static size_t utf8_letter(const uint8_t *s, size_t k, size_t lim) {
    uint8_t b = s[k];
    size_t l = b >= 0xF0 && b < 0xF5 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
    if (!l || b >= 0xF5 || k + l > lim) return 0;
    uint32_t cp = b & (0x7F >> l);
    for (size_t t = 1; t < l; t++) {
        if ((s[k + t] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k + t] & 0x3F);
    }
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return 0;        /* Latin-1 punctuation, x, / */
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0;                 /* punctuation, symbols, arrows */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;                 /* CJK punctuation */
    if (cp >= 0xD800 && cp <= 0xF8FF) return 0;                 /* surrogates, private use */
    if ((cp >= 0xFE00 && cp <= 0xFE0F) || cp == 0xFEFF) return 0; /* variation selectors, BOM */
    if (cp >= 0xFF00 && cp <= 0xFF20) return 0;                 /* fullwidth punctuation */
    if (cp == 0x061C || cp == 0x180E) return 0;                 /* format characters */
    return l;
}

/* an address around an '@' at [at, dom) ("@", "%40" or "\\u0040"); floor:
 * where the local part may begin at the earliest.  Local parts and domain
 * labels may hold letters past ASCII (josé@example.com, user@exämple.de); the
 * top-level label is ASCII letters, all letters past ASCII (an IDN), or
 * punycode. */
static size_t try_email(const uint8_t *s, size_t n, size_t at, size_t dom, size_t floor, size_t *start) {
    size_t a = at;
    while (a > floor && at - a < 96) {
        uint8_t b = s[a - 1];
        if (b < 0x80) {
            if (!IS(b, C_LOCAL)) break;
            a--;
            continue;
        }
        size_t st = a - 1;
        while (st > floor && (s[st] & 0xC0) == 0x80 && a - st < 4) st--;
        if (utf8_letter(s, st, a) != a - st) break;
        a = st;
    }
    while (a < at && (s[a] == '.' || s[a] == '-' || s[a] == '+')) a++;
    if (a == at || s[at - 1] == '.') return 0;
    size_t j = dom, labels = 0, last_start = j, last_end = j;
    for (;;) {
        size_t k = j, l;
        while (k < n && k - j < 63) {
            if (IS(s[k], C_ALPHA | C_DIGIT) || s[k] == '-') k++;
            else if (s[k] >= 0x80 && (l = utf8_letter(s, k, n))) k += l;
            else break;
        }
        if (k == j) break;
        labels++;
        last_start = j;
        last_end = k;
        j = k;
        if (j + 1 < n && s[j] == '.' && (IS(s[j + 1], C_ALPHA | C_DIGIT) || s[j + 1] >= 0x80)) {
            j++;
            continue;
        }
        break;
    }
    if (labels < 2) return 0;
    /* the top-level label */
    size_t t = last_start;
    if (IS(s[t], C_ALPHA)) {
        if (last_end - t >= 5 && (s[t] | 32) == 'x' && (s[t + 1] | 32) == 'n' && s[t + 2] == '-' && s[t + 3] == '-') {
            j = last_end; /* punycode */
        } else {
            while (t < last_end && IS(s[t], C_ALPHA)) t++;
            if (t - last_start < 2 || (t < last_end && s[t] < 0x80)) return 0;
            j = t; /* "comé": a letter after the address is not part of it */
        }
    } else {
        if (s[t] < 0x80) return 0;
        for (; t < last_end; t++)
            if (s[t] < 0x80) return 0;
        j = last_end;
    }
    *start = a;
    return j;
}

/* ---- the scan ----------------------------------------------------------- */

typedef struct {
    const scan_t *c;
    const uint8_t *s;
    size_t i;
} card_at;

static int card_context(void *arg) {
    const card_at *a = arg;
    return a->c->card_ctx || card_word_before(a->s, a->i);
}

static inline int name_is(const uint8_t *w, size_t len, const char *lit) {
    return strlen(lit) == len && starts_ci(w, len, lit);
}

/* an identifier-like string (a header or field name) that is a secret name;
 * argument dashes ("--password") do not count */
static int secret_string(const uint8_t *v, size_t len) {
    size_t k = 0;
    while (k < len && k < 2 && v[k] == '-') k++;
    if (k == len || !IS(v[k], C_ALPHA)) return 0;
    for (size_t t = k; t < len; t++)
        if (!(IS(v[t], C_WORD) || v[t] == '-' || v[t] == '.')) return 0;
    return secret_name(v + k, len - k);
}

static inline int is_auth_header(const uint8_t *w, size_t len) {
    return name_is(w, len, "authorization") || name_is(w, len, "proxy-authorization");
}

static inline unsigned judge_name(scan_t *c, const uint8_t *s, size_t a, size_t b, struct name_memo **out);

/* past the blanks, a ',' and the blanks after it from t; n when there is no ',' */
static size_t after_comma(const uint8_t *s, size_t n, size_t t) {
    while (t < n && (s[t] == ' ' || s[t] == '\t')) t++;
    if (t >= n || s[t] != ',') return n;
    t++;
    while (t < n && (s[t] == ' ' || s[t] == '\t')) t++;
    return t;
}

/* a quoted key lit at t, blanks and ':'; *after: past the ':'.  Either quote, JSON-escaped in
 * fields, and escaped as deep as the JSON around it in text ({\"name\": ...} inside a string):
 * as many backslashes before the closing quote as before the opening one. */
static int quoted_key_at(const uint8_t *s, size_t n, size_t t, int esc, const char *lit, size_t *after) {
    size_t adv = 1, len = strlen(lit), depth = 0;
    uint32_t q = t < n ? dch(s, n, t, esc, &adv) : 0;
    while (q == '\\' && depth < 15 && t + adv < n) { /* the escapes of the opening quote */
        t += adv;
        depth++;
        q = dch(s, n, t, esc, &adv);
    }
    if (q != '"' && q != '\'') return 0;
    t += adv;
    if (t + len >= n || !starts_ci(s + t, len, lit)) return 0;
    t += len;
    for (size_t k = 0; k <= depth; k++) {
        if (t >= n || dch(s, n, t, esc, &adv) != (k < depth ? '\\' : q)) return 0;
        t += adv;
    }
    while (t < n && (s[t] == ' ' || s[t] == '\t')) t++;
    if (t >= n || s[t] != ':') return 0;
    *after = t + 1;
    return 1;
}

/* the value [a, b) of a HAR "name" key: whether it is a secret name (secret_name's 1 or 2), and
 * in *auth whether it is an Authorization header */
static int har_secret_name(const uint8_t *s, size_t a, size_t b, int esc, int *auth) {
    uint8_t nm[MAX_NAME];
    size_t nl = decode_into(s, a, b, esc, nm, sizeof nm);
    if (nl > sizeof nm) return 0;
    *auth = is_auth_header(nm, nl);
    return secret_string(nm, nl);
}


/* after a match: the scan goes on at pos, past the rest of a word the match ended in (only
 * after a match can the scan stand inside a word) */
#define RESUME(pos)                                                                                     \
    do {                                                                                                \
        i = last_end = (pos);                                                                           \
        if (i < n && i > 0 && IS(s[i], C_WORD) && IS(s[i - 1], C_WORD)) i = word_end(s, n, i);          \
    } while (0)

static void scan_text(scan_t *c, const uint8_t *s, size_t n) {
    size_t i = 0, last_end = 0;
    int depth = 0, dq = 0; /* brackets open and double quotes seen on this line */
    const uint64_t en = c->cfg->enabled;
    const int esc = (c->flags & LSR_SPAN_IN_FIELDS) != 0;
    const uint64_t kv_rules = (1ull << LSR_R_BEARER) | (1ull << LSR_R_PASSWORD);
    const uint8_t kv_on = (en & kv_rules) != 0;
    while (i < n) {
        uint8_t ch = s[i];
        size_t m = 0;
        int rule = -1;
        if (!IS(ch, C_WORD)) {
            if (!SPECIAL[ch]) {
                i++;
                continue;
            }
            if (ch == '@') {
                size_t a, e;
                if ((en >> LSR_R_EMAIL & 1) && (e = try_email(s, n, i, i + 1, last_end, &a))) {
                    emit(c, a, e - a, LSR_R_EMAIL);
                    RESUME(e);
                    continue;
                }
            } else if (ch == '%') { /* "user%40example.com" */
                size_t a, e;
                if (i + 2 < n && s[i + 1] == '4' && s[i + 2] == '0' && (en >> LSR_R_EMAIL & 1) &&
                    (e = try_email(s, n, i, i + 3, last_end, &a))) {
                    emit(c, a, e - a, LSR_R_EMAIL);
                    RESUME(e);
                    continue;
                }
            } else if (ch == ':') {
                if (i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/' && (en >> LSR_R_URL_CREDENTIALS & 1)) {
                    size_t u = i + 3, k = u;
                    int colon = 0;
                    while (k < n && IS(s[k], C_USERINFO) && k - u < 256) colon |= s[k++] == ':';
                    if (k < n && s[k] == '@' && colon && k > u) {
                        emit(c, u, k - u, LSR_R_URL_CREDENTIALS);
                        RESUME(k + 1);
                        continue;
                    }
                }
                if (i + 1 < n && s[i + 1] == ':' && (en >> LSR_R_IPV6 & 1) && (m = try_ipv6(s, n, i))) {
                    emit(c, i, m, LSR_R_IPV6);
                    RESUME(i + m);
                    continue;
                }
            } else if (ch == '-' && (en >> LSR_R_PRIVATE_KEY & 1) && (m = try_pem(s, n, i))) {
                emit(c, i, m, LSR_R_PRIVATE_KEY);
                RESUME(i + m);
                continue;
            } else if (ch == '\\' && i + 1 < n) {
                /* "\u0040" is an '@', and so is "\\u0040" (its escape in a JSON string, in
                 * fields or in JSON-in-text) and each deeper escape of it */
                size_t u = i;
                while (u + 1 < n && s[u + 1] == '\\' && u - i < 15) u++;
                if (u + 5 < n && s[u + 1] == 'u' && s[u + 2] == '0' && s[u + 3] == '0' && s[u + 4] == '4' &&
                    s[u + 5] == '0' && (en >> LSR_R_EMAIL & 1)) {
                    size_t a, e;
                    if ((e = try_email(s, n, i, u + 6, last_end, &a))) {
                        emit(c, a, e - a, LSR_R_EMAIL);
                        RESUME(e);
                        continue;
                    }
                }
                if (esc) {
                    /* a JSON escape: what follows it starts a word of its own */
                    uint8_t x = s[i + 1];
                    if (x == 'n' || x == 'r') depth = dq = 0;
                    else if (x == '"') dq ^= 1;
                    i += x == 'u' ? 6 : 2;
                    if (i > n) i = n;
                    last_end = i; /* and what follows starts a word */
                    continue;
                }
            } else if (ch == '(' || ch == '[' || ch == '{') {
                depth++;
            } else if (ch == ')' || ch == ']' || ch == '}') {
                depth -= depth > 0;
            } else if (ch == '"') {
                dq ^= 1;
            } else if (ch == '\n') {
                depth = dq = 0;
            }
            i++;
            continue;
        }
        /* a word: [i, e), and x the byte after it */
        size_t r; /* the digit run at i, up to 20 */
        size_t e = word_at(s, n, i, &r);
        /* where the scan goes on after a word that is nothing: past a separator that the
         * scan would pass over anyway */
        size_t after = e < n && PLAIN[s[e]] ? e + 1 : e;
        size_t wl = e - i;
        uint8_t x = e < n ? s[e] : 0;
        /* provider tokens first: a token that starts with digits is more than a number */
        if (lsr_tok_maybe_word(s, n, i, wl, x) && (m = lsr_tok_match_checked(s, n, i, en, &rule)) &&
            rule >= 0 && rule < 64) {
            emit(c, i, m, rule);
            RESUME(i + m);
            continue;
        }
        rule = -1;
        if (IS(ch, C_DIGIT)) {
            if ((en >> LSR_R_CREDIT_CARD & 1) && card_may_start(s, n, i, r)) {
                card_at at = {c, s, i};
                if ((m = try_card(s, n, i, r, card_context, &at))) rule = LSR_R_CREDIT_CARD;
            }
            /* an SSN's area is three digits and then its separator */
            if (rule < 0 && r == 3 && (en >> LSR_R_SSN & 1) && (m = try_ssn(s, n, i))) rule = LSR_R_SSN;
            /* an IPv4 address begins with 1-3 digits and a '.', where this word ends */
            else if (rule < 0 && x == '.' && wl <= 3 && (en >> LSR_R_IPV4 & 1) && (m = try_ipv4(s, n, i)))
                rule = LSR_R_IPV4;
        }
        if (rule < 0 && x == ':' && wl <= 4 && (en >> LSR_R_IPV6 & 1) && run_of(s, n, i, C_HEX, 5) == wl &&
            (m = try_ipv6(s, n, i)))
            rule = LSR_R_IPV6;
        if (rule < 0 && FIRST[ch]) {
            if (ch == 'e' && (en >> LSR_R_JWT & 1) && (m = try_jwt(s, n, i))) rule = LSR_R_JWT;
            else if (ch == 'A' && (en >> LSR_R_AWS_KEY & 1) && (m = try_aws(s, n, i))) rule = LSR_R_AWS_KEY;
            else if (ch == 'g' && (en >> LSR_R_GITHUB_TOKEN & 1) && (m = try_github(s, n, i)))
                rule = LSR_R_GITHUB_TOKEN;
            else if (ch == 'x' && (en >> LSR_R_SLACK_TOKEN & 1) && (m = try_slack(s, n, i)))
                rule = LSR_R_SLACK_TOKEN;
        }
        if (rule >= 0) {
            emit(c, i, m, rule);
            RESUME(i + m);
            continue;
        }
        /* what may follow a key ("Bearer" and "Basic" are followed by a blank) */
        if (!((IS(ch, C_ALPHA) != 0) & KEYISH[x] & kv_on)) {
            i = after;
            continue;
        }
        if (x == ' ' || x == '\t') {
            /* after the blanks: a separator, or a word for "Bearer <token>" and "Basic <...>" */
            size_t t = e + 1;
            while (t < n && (s[t] == ' ' || s[t] == '\t')) t++;
            uint8_t y = t < n ? s[t] : 0;
            if (y != '=' && y != ':' && y != ',' && !((wl == 6 || wl == 5) && x == ' ' && (en >> LSR_R_BEARER & 1))) {
                i = after;
                continue;
            }
        }
        /* "Bearer <token>", and a bare "Basic <base64 of user:password>" */
        if ((en >> LSR_R_BEARER & 1) && (wl == 6 || wl == 5) && e < n && s[e] == ' ') {
            size_t t = e;
            while (t < n && s[t] == ' ') t++;
            if (wl == 6 && starts_ci(s + i, 6, "bearer")) {
                size_t k = t;
                while (k < n && (IS(s[k], C_B64URL) || s[k] == '.' || s[k] == '~' || s[k] == '+' ||
                                 s[k] == '/' || s[k] == '=') && k - t < 4096)
                    k++;
                if (k - t >= 8) {
                    emit(c, t, k - t, LSR_R_BEARER);
                    RESUME(k);
                    continue;
                }
            } else if (wl == 5 && starts_ci(s + i, 5, "basic") && (m = try_basic(s, n, t))) {
                emit(c, t, m, LSR_R_BEARER);
                RESUME(t + m);
                continue;
            }
        }
        /* a key: the identifier may go on with - and . ("x-api-key", "db.password") */
        size_t w = e;
        if (w < n && (s[w] == '-' || s[w] == '.'))
            while (w < n && (IS(s[w], C_WORD) || s[w] == '-' || s[w] == '.') && w - i < MAX_NAME) w++;
        while (w > e && (s[w - 1] == '-' || s[w - 1] == '.')) w--;
        size_t wlen = w - i, adv;
        if (wlen < 3) {
            i = after;
            continue;
        }
        /* what the checks below ask of the bytes after it, in short: a closing quote (escaped
         * or not), blanks, or the separator itself; blanks then a word is no key either */
        if (w >= n || !KEY_NEXT[s[w]] ||
            ((s[w] == ' ' || s[w] == '\t') && w + 1 < n && IS(s[w + 1], C_WORD))) {
            i = after;
            continue;
        }
        /* its opening quote, if any (argument dashes before it: "--password") */
        size_t ks = i;
        while (ks > 0 && i - ks < 2 && s[ks - 1] == '-') ks--;
        uint8_t oq = 0;
        size_t qs = ks;
        if (ks > 0 && (s[ks - 1] == '"' || s[ks - 1] == '\'')) {
            oq = s[ks - 1];
            qs = ks - 1;
            while (qs > 0 && ks - qs < 16 && s[qs - 1] == '\\') qs--;
        }
        /* a key is followed by '=', ':' or '=>' (after its closing quote and blanks) */
        size_t p = w;
        {   /* its closing quote (even without an opening one: a cut-off JSON text) */
            size_t t = p;
            while (t < n && t - p < 16 && s[t] == '\\') t++;
            if (t < n && (oq ? s[t] == oq : s[t] == '"' || s[t] == '\'')) {
                if (!oq) oq = s[t];
                p = t + 1;
            }
        }
        while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
        uint8_t sep = p < n ? s[p] : 0;
        if (!(sep == '=' || sep == ':' || (sep == ',' && oq))) {
            i = after;
            continue;
        }
        size_t k = p + 1;
        if (sep == '=' && k < n && s[k] == '>') k++;
        uint8_t before = qs > 0 ? s[qs - 1] : 0;
        unsigned mode = 0;
        if (sep == ':') mode = oq ? V_JSON : V_LINE;
        else if (sep == '=') mode = before == '?' || before == '&' ? V_QUERY : before == ';' ? V_CONN : 0;
        else mode = V_QUOTED;
        if (depth > 0) mode |= V_INBR;
        if (dq && !oq) mode |= V_INQ;
        size_t vs, ve, next;
        const uint8_t *key = s + i;
        /* a header pair ["Authorization", "Basic ..."], ("Cookie", "...") or an
         * argument list [..., "--password", "..."]: a quoted secret name, a comma,
         * a quoted value */
        if (sep == ',') {
            size_t b = qs;
            while (b > 0 && qs - b < 8 && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
            int pair = b > 0 && (s[b - 1] == '[' || s[b - 1] == '(');
            if (!(pair || (ks < i && b > 0 && s[b - 1] == ','))) {
                i = after;
                continue;
            }
        }
        int auth = is_auth_header(key, wlen), sn;
        if (c->memo && wlen <= MEMO_KEY) { /* an identifier has no escapes: judged like a field name */
            struct name_memo *slot;
            unsigned f = judge_name(c, s, i, w, &slot);
            sn = f & NM_PASSWORD ? 2 : f & NM_SECRET ? 1 : 0;
        } else {
            sn = secret_name(key, wlen);
        }
        if (!sn && (mode & V_QUERY) && (name_is(key, wlen, "key") || name_is(key, wlen, "code"))) sn = 1;
        /* HAR-style {"name": "password", "value": "..."}, in either order: the value of a
         * "value" key is the secret when the object's "name" is a secret name */
        if (!sn && oq && sep == ':' && (en & kv_rules)) {
            if (name_is(key, wlen, "name")) {
                size_t ns, ne, nn, t;
                if (read_value(s, n, k, esc, V_QUOTED, &ns, &ne, &nn) &&
                    (sn = har_secret_name(s, ns, ne, esc, &auth)) && (t = after_comma(s, n, nn)) < n &&
                    quoted_key_at(s, n, t, esc, "value", &t)) {
                    k = t;
                    mode = V_JSON | (mode & V_INBR);
                    goto secret;
                }
                sn = 0;
            } else if (name_is(key, wlen, "value")) {
                size_t t, ns, ne, nn;
                unsigned vmode = V_JSON | (mode & V_INBR);
                if (read_value(s, n, k, esc, vmode, &vs, &ve, &next) && (t = after_comma(s, n, next)) < n &&
                    quoted_key_at(s, n, t, esc, "name", &t) && read_value(s, n, t, esc, V_QUOTED, &ns, &ne, &nn) &&
                    (sn = har_secret_name(s, ns, ne, esc, &auth))) {
                    mode = vmode;
                    goto secret;
                }
                sn = 0;
            }
        }
        if (!sn) {
            i = after;
            continue;
        }
    secret:
        if (auth && !(en >> LSR_R_BEARER & 1)) auth = 0; /* then it is the password rule's */
        if (!auth && !(en >> LSR_R_PASSWORD & 1)) {
            i = after;
            continue;
        }
        if (!read_value(s, n, k, esc, mode, &vs, &ve, &next)) {
            i = after;
            continue;
        }
        if (!auth) {
            uint8_t buf[64];
            size_t bl = decode_into(s, vs, ve, esc, buf, sizeof buf);
            if (bl <= sizeof buf && benign(buf, bl, sn == 2)) { /* left to the other rules */
                i = after;
                continue;
            }
            /* "secret: false ok", "token: 512 for tenant acme": after ':' the value runs to the
             * end of the line, but a first word that is a literal, a number or a path is the
             * value, and the rest is prose */
            if (mode & V_LINE) {
                size_t w = vs;
                while (w < ve && s[w] != ' ' && s[w] != '\t') w++;
                if (w < ve) {
                    bl = decode_into(s, vs, w, esc, buf, sizeof buf);
                    if (bl <= sizeof buf && benign(buf, bl, sn == 2)) {
                        i = after;
                        continue;
                    }
                }
            }
        }
        emit(c, vs, ve - vs, auth ? LSR_R_BEARER : LSR_R_PASSWORD);
        RESUME(next);
    }
}

#undef RESUME

int64_t lsr_san_scan_text(const uint8_t *s, size_t n, const lsr_san_config *cfg, lsr_span *spans,
                          uint32_t max_spans) {
    cls_init();
    scan_t c = {cfg, spans, max_spans, 0, 0, 0, 0, 0, 0, NULL};
    scan_text(&c, s, n);
    return c.overflow ? LSR_EFULL : (int64_t)c.n;
}

/* ---- fields: walk the JSON so that replacements keep it valid ----------- */

/* past the JSON string at p: the first quote after an even run of backslashes */
/* the first '"' at or after p, or n: sixteen bytes at a time where SSE2 is (fields strings are short) */
static inline size_t find_quote(const uint8_t *s, size_t n, size_t p) {
#if defined(__SSE2__)
    const __m128i q = _mm_set1_epi8('"');
    while (n - p >= 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + p)), q));
        if (m) return p + (size_t)__builtin_ctz(m);
        p += 16;
    }
    if (p < n && n >= 16) {
        size_t b = n - 16;
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + b)), q)) >> (p - b);
        return m ? p + (size_t)__builtin_ctz(m) : n;
    }
#endif
    while (p < n && s[p] != '"') p++;
    return p;
}

static inline size_t skip_string(const uint8_t *s, size_t n, size_t p) {
    size_t from = ++p; /* after the opening quote */
    while (p < n) {
        size_t k = find_quote(s, n, p), b = k;
        if (k >= n) return n;
        while (b > from && s[b - 1] == '\\') b--;
        if (((k - b) & 1) == 0) return k + 1;
        p = from = k + 1; /* an escaped quote: the backslashes before it are behind us */
    }
    return n;
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
    while (p < n && !SCALAR_END[s[p]]) p++;
    return p;
}

/* A name of redact_fields: the entries come normalised (see policy.field_key):
 * ASCII letters in lower case, without '-', '_', '.' and spaces, so that
 * "clientSecret" also names client_secret, client-secret and ClientSecret. */
static int field_redacted(const scan_t *c, const uint8_t *key, size_t len) {
    const uint8_t *p = c->cfg->field_names, *end = p + c->cfg->field_names_len;
    if (!p || len == 0) return 0;
    uint8_t norm[256];
    size_t nl = 0;
    for (size_t t = 0; t < len; t++) {
        uint8_t ch = key[t];
        if (ch == '-' || ch == '_' || ch == '.' || ch == ' ') continue;
        if (nl == sizeof norm) return 0;
        norm[nl++] = (uint8_t)lower(ch);
    }
    if (!nl) return 0;
    while (p < end) { /* entries: one length byte, then the name */
        size_t el = *p++;
        if (el == nl && p + el <= end && p[0] == norm[0] && memcmp(p, norm, nl) == 0) return 1;
        p += el;
    }
    return 0;
}

static size_t walk(scan_t *c, const uint8_t *s, size_t n, size_t p, int depth);

static void scan_sub(scan_t *c, const uint8_t *s, size_t a, size_t b, uint8_t flags) {
    uint32_t base = c->base;
    uint8_t f = c->flags;
    c->base = base + (uint32_t)a;
    c->flags = f | flags;
    scan_text(c, s + a, b - a);
    c->base = base;
    c->flags = f;
}

static size_t ws(const uint8_t *s, size_t n, size_t p) {
    while (p < n && s[p] == ' ') p++;
    return p;
}

/* a value of a secret-named field, [p, e): replaced whole unless it is benign
 * (an empty string, a literal, a number that may stay, a path) */
static int secret_value(const uint8_t *s, size_t p, size_t e, int pw) {
    if (e <= p) return 0;
    if (s[p] == '{' || s[p] == '[') return e - p > 2;
    uint8_t buf[64];
    size_t bl = s[p] == '"' ? decode_into(s, p + 1, e > p + 1 ? e - 1 : p + 1, 1, buf, sizeof buf)
                            : decode_into(s, p, e, 0, buf, sizeof buf);
    return !(bl <= sizeof buf && benign(buf, bl, pw));
}

/* a JSON string at p that is a secret name ("password", "Authorization") */
static int secret_string_at(const uint8_t *s, size_t n, size_t p, size_t *end) {
    *end = skip_string(s, n, p);
    uint8_t nm[MAX_NAME];
    size_t nl = decode_into(s, p + 1, *end > p + 1 ? *end - 1 : p + 1, 1, nm, sizeof nm);
    return nl <= sizeof nm ? secret_string(nm, nl) : 0;
}

/* A name's memo key: its first and last eight bytes (overlapping for 8-16 bytes), or for a
 * shorter one its bytes packed in the low end of lo; with the length, the whole name when it
 * is at most 16 long. */
static inline void name_words8(const uint8_t *s, size_t a, size_t b, uint64_t *lo, uint64_t *hi) {
    size_t len = b - a;
    uint64_t x = 0, y = 0;
    if (len >= 8) {
        memcpy(&x, s + a, 8);
        memcpy(&y, s + b - 8, 8);
    } else if (len && b >= 8) { /* the eight bytes that end the name, its own in the high end */
        memcpy(&x, s + b - 8, 8);
        x >>= 64 - 8 * len;
    } else {
        for (size_t t = len; t-- > 0;) x = x << 8 | s[a + t];
    }
    *lo = x;
    *hi = y;
}

/* judge_name past the memo: the name decoded and asked of each matcher */
static unsigned judge_name_full(scan_t *c, const uint8_t *s, size_t a, size_t b) {
    uint8_t key[256];
    size_t kl = decode_into(s, a, b, 1, key, sizeof key);
    if (kl > sizeof key) kl = 0;
    unsigned f = NM_VALID;
    if (enabled(c, LSR_R_FIELD) && field_redacted(c, key, kl)) f |= NM_FIELD;
    int sn = secret_name(key, kl);
    if (sn) f |= sn == 2 ? NM_SECRET | NM_PASSWORD : NM_SECRET;
    if (card_name(key, kl)) f |= NM_CARD;
    if (name_is(key, kl, "name")) f |= NM_NAME;
    if (name_is(key, kl, "value")) f |= NM_VALUE;
    return f;
}

/* what a field name [a, b) (raw JSON string contents) is: NM_* bits */
static inline unsigned judge_name(scan_t *c, const uint8_t *s, size_t a, size_t b, struct name_memo **out) {
    size_t len = b - a;
    struct name_memo *slot = NULL;
    *out = NULL;
    uint64_t lo = 0, hi = 0;
    if (len <= MEMO_KEY && c->memo) {
        /* the slot only saves work: the key is compared in full below */
        name_words8(s, a, b, &lo, &hi);
        uint64_t h = (lo ^ (hi << 1) ^ len) * 0x9E3779B97F4A7C15ull;
        slot = &c->memo[(h >> 40) % MEMO_SLOTS];
        if ((slot->flags & NM_VALID) && slot->len == len && slot->lo == lo && slot->hi == hi &&
            (len <= 16 || memcmp(slot->key, s + a, len) == 0)) {
            *out = slot;
            return slot->flags;
        }
    }
    unsigned f = judge_name_full(c, s, a, b);
    if (slot) {
        slot->len = (uint8_t)len;
        slot->flags = (uint8_t)f;
        slot->lo = lo;
        slot->hi = hi;
        memcpy(slot->key, s + a, len);
        *out = slot;
    }
    return f;
}

static void emit_whole(scan_t *c, size_t p, size_t e, int rule) {
    if (e <= p) return; /* nothing there (fields cut short): nothing to replace */
    uint8_t f = c->flags;
    c->flags = f | LSR_SPAN_QUOTE;
    emit(c, p, e - p, rule);
    c->flags = f;
}

/* the spans [first, end) (those a value's walk made) replaced by one for the whole value [p, e),
 * the spans after them kept in order */
static void replace_whole(scan_t *c, uint32_t first, uint32_t end, size_t p, size_t e, int rule) {
    if (e <= p || c->overflow) return;
    if (first == end && c->n >= c->max) { /* no room for one more: the caller retries with more */
        c->overflow = 1;
        return;
    }
    uint32_t tail = c->n - end;
    if (first + 1 != end) memmove(&c->spans[first + 1], &c->spans[end], (size_t)tail * sizeof(lsr_span));
    c->n = first + 1 + tail;
    uint8_t f = c->flags;
    c->flags = f | LSR_SPAN_QUOTE;
    fill_span(c, &c->spans[first], p, e - p, rule);
    c->flags = f;
}

/* a value at p that is not an object or a list: a string, a number or a literal */
static inline size_t walk_scalar(scan_t *c, const uint8_t *s, size_t n, size_t p) {
    uint8_t ch = s[p];
    if (ch == '"') {
        size_t e = skip_string(s, n, p);
        if (e - p >= 2) scan_sub(c, s, p + 1, e - 1, 0);
        return e;
    }
    /* a number or a literal: a match must stand for the whole token, quoted;
     * only the integer digits are a candidate (4111111111111111.0 is a card) */
    if (IS(ch, C_DIGIT) || ch == '-') {
        uint32_t before = c->n;
        size_t a = ch == '-' ? p + 1 : p, e = a, z = a;
        while (e < n && !SCALAR_END[s[e]]) e++; /* the token's end, as skip_value finds it */
        if (e - a < 13) return e; /* no rule finds anything in fewer digits than a card has */
        while (z < e && IS(s[z], C_DIGIT)) z++;
        if (z - a < 13) return e;
        scan_sub(c, s, a, z, LSR_SPAN_QUOTE);
        if (c->n > before) {
            c->n = before + 1;
            c->spans[before].start = c->base + (uint32_t)p;
            c->spans[before].len = (uint32_t)(e - p);
        }
        return e;
    }
    return skip_value(s, n, p);
}

static size_t walk(scan_t *c, const uint8_t *s, size_t n, size_t p, int depth) {
    p = ws(s, n, p);
    if (p >= n || depth > 64) return n;
    uint8_t ch = s[p];
    const int pw_on = enabled(c, LSR_R_PASSWORD);
    if (ch != '{' && ch != '[') return walk_scalar(c, s, n, p);
    {
        int har = 0;  /* this object had "name": <a secret name>: its "value" is the secret */
        int pair = 0; /* in a list, the last item was a secret name: the next is its value */
        /* this object's "value" before its "name": where it is and the spans its walk made */
        size_t hv_at = 0, hv_end = 0;
        uint32_t hv_span = 0, hv_spans_end = 0;
        int hv = 0;
        p++;
        for (;;) {
            p = ws(s, n, p);
            if (p >= n) return n;
            if (s[p] == '}' || s[p] == ']') return p + 1;
            if (s[p] == ',') {
                p++;
                continue;
            }
            int card = c->card_ctx, sn = 0, is_name = 0, is_value = 0;
            if (ch == '{') {
                if (s[p] != '"') return n;
                size_t ke = skip_string(s, n, p);
                struct name_memo *slot;
                unsigned nm = judge_name(c, s, p + 1, ke - p >= 2 ? ke - 1 : p + 1, &slot);
                if (ke - p >= 2 && !((nm & NM_CLEAN) && !c->card_ctx)) {
                    uint32_t before = c->n;
                    scan_sub(c, s, p + 1, ke - 1, 0);
                    if (slot && c->n == before && !c->card_ctx && !c->overflow) slot->flags |= NM_CLEAN;
                }
                p = ws(s, n, ke);
                if (p >= n || s[p] != ':') return n;
                p = ws(s, n, p + 1);
                if (nm & NM_FIELD) {
                    size_t ve = skip_value(s, n, p);
                    emit_whole(c, p, ve, LSR_R_FIELD);
                    p = ve;
                    continue;
                }
                if (nm & (NM_SECRET | NM_CARD | NM_NAME | NM_VALUE)) { /* most names are none of them */
                    sn = nm & NM_PASSWORD ? 2 : nm & NM_SECRET ? 1 : 0;
                    if (!sn && har && (nm & NM_VALUE)) sn = 1;
                    is_value = !sn && !har && !hv && (nm & NM_VALUE);
                    is_name = (nm & NM_NAME) != 0;
                    card = card || (nm & NM_CARD);
                }
            } else if (pair) {
                sn = pair;
            }
            pair = 0;
            if (sn && pw_on) {
                size_t ve = skip_value(s, n, p);
                if (secret_value(s, p, ve, sn == 2)) {
                    emit_whole(c, p, ve, LSR_R_PASSWORD);
                    p = ve;
                    continue;
                }
            }
            if (p >= n) return n; /* a key with nothing after its ':' */
            if ((is_name || ch == '[') && s[p] == '"') {
                size_t se;
                int name = secret_string_at(s, n, p, &se);
                if (is_name) har |= name != 0;
                else pair = name;
                if (is_name && name && hv && pw_on && secret_value(s, hv_at, hv_end, 0))
                    replace_whole(c, hv_span, hv_spans_end, hv_at, hv_end, LSR_R_PASSWORD);
            }
            int saved = c->card_ctx;
            c->card_ctx = card;
            uint32_t spans_before = c->n;
            /* a string or a number here and now; an object or a list one level down */
            size_t next = s[p] != '{' && s[p] != '[' && depth < 64 ? walk_scalar(c, s, n, p)
                                                                    : walk(c, s, n, p, depth + 1);
            c->card_ctx = saved;
            if (is_value && !c->overflow) {
                hv = 1;
                hv_at = p;
                hv_end = next > n ? n : next;
                hv_span = spans_before;
                hv_spans_end = c->n;
            }
            p = next > p ? next : p + 1; /* always forward, whatever the bytes */
        }
    }
}

int64_t lsr_san_scan(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *keep,
                     const lsr_san_config *cfg, lsr_span *spans, uint32_t max_spans) {
    cls_init();
    struct name_memo memo[MEMO_SLOTS];
    memset(memo, 0, sizeof memo);
    scan_t c = {cfg, spans, max_spans, 0, 0, 0, 0, 0, 0, memo};
    for (uint32_t i = 0; i < n && !c.overflow; i++) {
        if (keep && !keep[i]) continue;
        const lsr_meta *m = &meta[i];
        c.rec = i;
        c.base = m->msg_off;
        c.flags = 0;
        c.card_ctx = 0;
        scan_text(&c, buf + m->msg_off, m->msg_len);
        if (m->fields_len) {
            c.base = m->fields_off;
            c.flags = LSR_SPAN_IN_FIELDS;
            walk(&c, buf + m->fields_off, m->fields_len, 0, 0);
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

/* the record's message, logger name and fields follow one another in buf, in that order */
static inline int laid_out_whole(const lsr_meta *m) {
    return m->msg_off + m->msg_len == m->logger_off && m->logger_off + m->logger_len == m->fields_off;
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
        while (si < nspans && spans[si].start < m->msg_off) si++;
        uint32_t end = m->fields_off + m->fields_len;
        if (keep[i] && laid_out_whole(m) && (si >= nspans || spans[si].start >= end)) {
            /* records that no span touches, one after the other in buf: one copy for the run */
            uint32_t j = i, start = m->msg_off;
            while (j + 1 < n && keep[j + 1] && laid_out_whole(&meta[j + 1]) && meta[j + 1].msg_off == end &&
                   (si >= nspans || spans[si].start >= meta[j + 1].fields_off + meta[j + 1].fields_len)) {
                j++;
                end = meta[j].fields_off + meta[j].fields_len;
            }
            int64_t delta = (int64_t)(o - out) - (int64_t)start;
            for (uint32_t k = i; k <= j; k++) {
                meta_out[k] = meta[k];
                meta_out[k].msg_off = (uint32_t)((int64_t)meta[k].msg_off + delta);
                meta_out[k].logger_off = (uint32_t)((int64_t)meta[k].logger_off + delta);
                meta_out[k].fields_off = (uint32_t)((int64_t)meta[k].fields_off + delta);
            }
            o = put(o, buf + start, end - start);
            i = j;
            continue;
        }
        *mo = *m;
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
