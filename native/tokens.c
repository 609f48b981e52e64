/*
 * logger_system sanitizer: provider token formats (see tokens.h).
 *
 * lsr_tok_match dispatches on the first byte of a word to the few formats
 * that begin with it.  Each format reads its fixed prefix, then runs of one
 * character class, each run capped; a candidate that fails is given up after
 * at most a few hundred bytes, while one that passes is consumed whole.
 * Nothing is retried from another offset, so the work per word start is
 * bounded unless the bytes it reads are redacted.
 */
#include "tokens.h"

#include <string.h>

#include "sanitize.h"

/* character classes */
#define K_DIGIT 0x0001u
#define K_LHEX 0x0002u   /* [0-9a-f] */
#define K_HEX 0x0004u    /* [0-9A-Fa-f] */
#define K_ALNUM 0x0008u  /* [A-Za-z0-9] */
#define K_WORD 0x0010u   /* [A-Za-z0-9_] */
#define K_B64URL 0x0020u /* [A-Za-z0-9_-] */
#define K_B64 0x0040u    /* [A-Za-z0-9+/] */
#define K_ALPHA 0x0080u  /* [A-Za-z] */
#define K_AZURE 0x0100u  /* [A-Za-z0-9_~.-]: Azure AD client secrets */
#define K_DOTTED 0x0200u /* [A-Za-z0-9_.-] */
#define K_B64EQ 0x0400u  /* [A-Za-z0-9_=-]: Atlassian tokens */
#define K_UPALNUM 0x0800u /* [A-Z0-9] */
#define K_LALNUM 0x1000u  /* [a-z0-9] */
#define K_LOWER 0x2000u   /* [a-z] */

static uint16_t T[256];
static int8_t B64[256];    /* standard base64 value, or -1 */
static int8_t BECH[256];   /* bech32 value (either case), or -1 */

static const char BECH32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

__attribute__((constructor)) static void tok_init(void) {
    for (int c = 0; c < 256; c++) {
        int digit = c >= '0' && c <= '9', low = c >= 'a' && c <= 'z', up = c >= 'A' && c <= 'Z';
        int alnum = digit || low || up;
        uint16_t v = 0;
        if (digit) v |= K_DIGIT;
        if (digit || (c >= 'a' && c <= 'f')) v |= K_LHEX;
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= K_HEX;
        if (alnum) v |= K_ALNUM | K_WORD | K_B64URL | K_B64 | K_AZURE | K_DOTTED | K_B64EQ;
        if (low || up) v |= K_ALPHA;
        if (up || digit) v |= K_UPALNUM;
        if (low || digit) v |= K_LALNUM;
        if (low) v |= K_LOWER;
        if (c == '_') v |= K_WORD | K_B64URL | K_AZURE | K_DOTTED | K_B64EQ;
        if (c == '-') v |= K_B64URL | K_AZURE | K_DOTTED | K_B64EQ;
        if (c == '+' || c == '/') v |= K_B64;
        if (c == '~') v |= K_AZURE;
        if (c == '.') v |= K_AZURE | K_DOTTED;
        if (c == '=') v |= K_B64EQ;
        T[c] = v;
        B64[c] = (int8_t)(up ? c - 'A' : low ? c - 'a' + 26 : digit ? c - '0' + 52 : -1);
        BECH[c] = -1;
    }
    for (int k = 0; k < 32; k++) {
        BECH[(uint8_t)BECH32[k]] = (int8_t)k;
        if (BECH32[k] >= 'a') BECH[(uint8_t)(BECH32[k] - 32)] = (int8_t)k;
    }
}

#define IN(c, k) (T[(uint8_t)(c)] & (k))

/* length of the run of class k at j, at most max */
static inline size_t run(const uint8_t *s, size_t n, size_t j, uint16_t k, size_t max) {
    size_t e = j, lim = n - j < max ? n : j + max;
    while (e < lim && IN(s[e], k)) e++;
    return e - j;
}

/* the text at j begins with lit */
static inline int at(const uint8_t *s, size_t n, size_t j, const char *lit, size_t len) {
    return j <= n && n - j >= len && memcmp(s + j, lit, len) == 0;
}
#define AT(j, lit) at(s, n, (j), (lit), sizeof(lit) - 1)

/* no character of class k at j: the token ends there */
static inline int ends(const uint8_t *s, size_t n, size_t j, uint16_t k) { return j >= n || !IN(s[j], k); }

/* exactly len characters of class k at j, and then none */
static inline int exact(const uint8_t *s, size_t n, size_t j, uint16_t k, size_t len) {
    return run(s, n, j, k, len + 1) == len;
}

/* ---- checksums ------------------------------------------------------------ */

/* BIP-173 bech32: the checksum over the human-readable part and the data */
static int bech32_ok(const char *hrp, const uint8_t *data, size_t len) {
    static const uint32_t G[5] = {0x3b6a57b2u, 0x26508e6du, 0x1ea119fau, 0x3d4233ddu, 0x2a1462b3u};
    uint32_t chk = 1;
    size_t hl = strlen(hrp);
#define STEP(v)                                                                                          \
    do {                                                                                                 \
        uint32_t b = chk >> 25;                                                                          \
        chk = ((chk & 0x1ffffffu) << 5) ^ (uint32_t)(v);                                                 \
        for (int g = 0; g < 5; g++)                                                                      \
            if (b >> g & 1) chk ^= G[g];                                                                 \
    } while (0)
    for (size_t k = 0; k < hl; k++) STEP((uint8_t)hrp[k] >> 5);
    STEP(0);
    for (size_t k = 0; k < hl; k++) STEP((uint8_t)hrp[k] & 31);
    for (size_t k = 0; k < len; k++) {
        int v = BECH[data[k]];
        if (v < 0) return 0;
        STEP(v);
    }
#undef STEP
    return chk == 1;
}

/* ---- formats ---------------------------------------------------------------
 * Each returns the token's length from i, or 0. */

/* Stripe secret and restricted keys: sk_live_, sk_test_, rk_live_, rk_test_ and
 * at least 20 base62 characters ending the word (an identifier such as
 * sk_test_mode_enabled goes on with '_').  Publishable keys (pk_) are made to
 * be published and are left alone.  Webhook signing secrets: whsec_ and
 * base64 (Stripe's are base62, Standard Webhooks' base64). */
static size_t stripe(const uint8_t *s, size_t n, size_t i) {
    if (AT(i, "whsec_")) {
        size_t k = run(s, n, i + 6, K_B64, 1024);
        if (k < 24) return 0;
        size_t e = i + 6 + k;
        for (int pad = 0; pad < 2 && e < n && s[e] == '='; pad++) e++;
        return e - i;
    }
    if (!(AT(i + 2, "_live_") || AT(i + 2, "_test_"))) return 0;
    size_t k = run(s, n, i + 8, K_ALNUM, 1024);
    return k >= 20 && ends(s, n, i + 8 + k, K_WORD) ? 8 + k : 0;
}

/* OpenAI: sk-proj-, sk-svcacct-, sk-admin-, sk-None- and a base64url body; the
 * legacy sk- and 48 base62 (with T3BlbkFJ in the middle); and any sk- with 32
 * or more base62 characters (other providers copied the form). */
static size_t openai(const uint8_t *s, size_t n, size_t i) {
    static const struct {
        const char *p;
        size_t len;
    } sub[] = {{"proj-", 5}, {"svcacct-", 8}, {"admin-", 6}, {"None-", 5}};
    for (size_t t = 0; t < sizeof sub / sizeof sub[0]; t++)
        if (at(s, n, i + 3, sub[t].p, sub[t].len)) {
            size_t j = i + 3 + sub[t].len, k = run(s, n, j, K_B64URL, 4096);
            return k >= 20 ? j + k - i : 0;
        }
    size_t k = run(s, n, i + 3, K_ALNUM, 1024);
    return k >= 32 && ends(s, n, i + 3 + k, K_B64URL) ? 3 + k : 0;
}

/* Anthropic: sk-ant-, a kind and version (api03, admin01, oat01, ...), '-'
 * and at least 32 base64url characters */
static size_t anthropic(const uint8_t *s, size_t n, size_t i) {
    size_t j = i + 7, a = run(s, n, j, K_LOWER, 12);
    if (a < 2 || a > 10) return 0;
    j += a;
    size_t d = run(s, n, j, K_DIGIT, 4);
    if (d < 1 || d > 3 || j + d >= n || s[j + d] != '-') return 0;
    j += d + 1;
    size_t k = run(s, n, j, K_B64URL, 4096);
    return k >= 32 ? j + k - i : 0;
}

static inline int lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int at_ci(const uint8_t *s, size_t n, size_t j, const char *lit) {
    size_t len = strlen(lit);
    if (j > n || n - j < len) return 0;
    for (size_t t = 0; t < len; t++)
        if (lower(s[j + t]) != (uint8_t)lit[t]) return 0;
    return 1;
}

/* Slack incoming webhooks: https://hooks.slack.com/services/T.../B.../secret,
 * and the workflow and trigger URLs, whose path is the secret too.  The whole
 * URL is the match. */
static size_t slack_webhook(const uint8_t *s, size_t n, size_t i) {
    size_t j = i;
    if (at_ci(s, n, j, "https://")) j += 8;
    else if (at_ci(s, n, j, "http://")) j += 7;
    else return 0;
    if (!at_ci(s, n, j, "hooks.slack.com/")) return 0;
    j += 16;
    if (AT(j, "services/")) {
        j += 9;
        for (int part = 0; part < 2; part++) { /* T<team>/ then B<channel>/ */
            if (j >= n || s[j] != (part ? 'B' : 'T')) return 0;
            size_t k = run(s, n, j + 1, K_UPALNUM, 16);
            if (k < 6 || k > 14 || j + 1 + k >= n || s[j + 1 + k] != '/') return 0;
            j += k + 2;
        }
        size_t k = run(s, n, j, K_ALNUM, 64);
        return k >= 16 && ends(s, n, j + k, K_WORD) ? j + k - i : 0;
    }
    if (AT(j, "workflows/")) j += 10;
    else if (AT(j, "triggers/")) j += 9;
    else return 0;
    size_t k = j;
    while (k < n && (IN(s[k], K_ALNUM) || s[k] == '/') && k - j < 256) k++;
    return k - j >= 20 ? k - i : 0;
}

/* Slack app-level tokens xapp-1-..., and rotating tokens xoxe-1-...,
 * xoxe.xoxp-1-..., xoxe.xoxb-1-... (the scanner's slack_token takes xox[abposr]-) */
static size_t slack_more(const uint8_t *s, size_t n, size_t i) {
    size_t j;
    if (AT(i, "xapp-")) j = i + 5;
    else if (AT(i, "xoxe.xoxp-") || AT(i, "xoxe.xoxb-")) j = i + 10;
    else if (AT(i, "xoxe-")) j = i + 5;
    else return 0;
    if (j + 1 >= n || !IN(s[j], K_DIGIT) || s[j + 1] != '-') return 0;
    size_t k = j + 2;
    while (k < n && (IN(s[k], K_ALNUM) || s[k] == '-') && k - j < 1024) k++;
    while (k > j + 2 && s[k - 1] == '-') k--;
    return k - (j + 2) >= 20 ? k - i : 0;
}

/* GitLab: personal, deploy, runner, pipeline trigger, CI build, feed,
 * incoming mail, agent, OAuth application, service account, feature flag and
 * workspace tokens; the body may carry GitLab's routing suffix (.01.xxxx).
 * GR1348941: runner registration tokens. */
static size_t gitlab(const uint8_t *s, size_t n, size_t i) {
    static const char *const P[] = {"pat-", "dt-",  "rt-",  "ptt-",  "cbt-", "ft-",
                                    "imt-", "agent-", "oas-", "soat-", "ffct-", "wt-"};
    size_t j = 0;
    if (!AT(i, "gl")) return 0;
    for (size_t t = 0; t < sizeof P / sizeof P[0] && !j; t++) {
        size_t len = strlen(P[t]); /* constant folded */
        if (at(s, n, i + 2, P[t], len)) j = i + 2 + len;
    }
    if (!j) return 0;
    size_t k = j + run(s, n, j, K_DOTTED, 1024);
    /* a trailing '.' is the text's full stop; a trailing '-' may be the token's own
     * (the body is [A-Za-z0-9_-]): keep it when the body needs it to be whole */
    while (k > j && s[k - 1] == '.') k--;
    size_t trimmed = k;
    while (trimmed > j && s[trimmed - 1] == '-') trimmed--;
    if (trimmed - j >= 20) k = trimmed;
    return k - j >= 20 ? k - i : 0;
}

static size_t gitlab_runner(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "GR1348941")) return 0;
    size_t k = run(s, n, i + 9, K_B64URL, 1024);
    return k >= 20 ? 9 + k : 0;
}

/* SendGrid: SG. 22 base64url . 43 base64url */
static size_t sendgrid(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "SG.") || run(s, n, i + 3, K_B64URL, 23) != 22 || i + 25 >= n || s[i + 25] != '.')
        return 0;
    /* the secret part is 43 long; a few more or less is still a SendGrid key (fail closed) */
    size_t k = run(s, n, i + 26, K_B64URL, 51);
    return k >= 40 && k <= 50 && ends(s, n, i + 26 + k, K_B64URL) ? 26 + k : 0;
}

/* npm: npm_ and exactly 36 base62.  The last 6 are said to be a base62 CRC32 of
 * the first 30, but no check of ours has been shown against a token npm issued:
 * a wrong one would let real tokens through, so the shape alone decides (the
 * prefix and the exact length are specific enough). */
static size_t npm(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "npm_") || !exact(s, n, i + 4, K_ALNUM, 36) || !ends(s, n, i + 40, K_WORD)) return 0;
    return 40;
}

/* PyPI: a macaroon whose first bytes name pypi.org (or test.pypi.org) */
static size_t pypi(const uint8_t *s, size_t n, size_t i) {
    size_t j;
    if (AT(i, "pypi-AgEIcHlwaS5vcmc")) j = i + 20;
    else if (AT(i, "pypi-AgENdGVzdC5weXBpLm9yZw")) j = i + 27;
    else return 0;
    size_t k = run(s, n, j, K_B64URL, 16384);
    return k >= 50 ? j + k - i : 0;
}

/* Hugging Face: hf_ (user) and api_org_ (organisation) and 34 base62 */
static size_t huggingface(const uint8_t *s, size_t n, size_t i) {
    size_t j = AT(i, "hf_") ? i + 3 : AT(i, "api_org_") ? i + 8 : 0;
    if (!j || !exact(s, n, j, K_ALNUM, 34) || !ends(s, n, j + 34, K_WORD)) return 0;
    return j + 34 - i;
}

/* DigitalOcean: dop_v1_ (personal), doo_v1_ (OAuth), dor_v1_ (refresh) and 64 hex */
static size_t digitalocean(const uint8_t *s, size_t n, size_t i) {
    if (!(AT(i, "dop_v1_") || AT(i, "doo_v1_") || AT(i, "dor_v1_"))) return 0;
    return exact(s, n, i + 7, K_LHEX, 64) && ends(s, n, i + 71, K_WORD) ? 71 : 0;
}

/* Databricks: dapi and 32 hex, with an optional -<digit> suffix */
static size_t databricks(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "dapi") || !exact(s, n, i + 4, K_LHEX, 32) || !ends(s, n, i + 36, K_WORD)) return 0;
    size_t e = i + 36;
    if (e + 1 < n && s[e] == '-' && IN(s[e + 1], K_DIGIT) && ends(s, n, e + 2, K_WORD)) e += 2;
    return e - i;
}

/* Doppler: dp.pt. (personal), dp.st. (service), dp.ct. (CLI), dp.sa.
 * (service account), dp.scim., dp.audit. and 40 or more characters */
static size_t doppler(const uint8_t *s, size_t n, size_t i) {
    static const char *const P[] = {"dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."};
    size_t j = 0;
    for (size_t t = 0; t < sizeof P / sizeof P[0] && !j; t++) {
        size_t len = strlen(P[t]);
        if (at(s, n, i, P[t], len)) j = i + len;
    }
    if (!j) return 0;
    size_t k = j + run(s, n, j, K_DOTTED, 1024);
    while (k > j && (s[k - 1] == '.' || s[k - 1] == '-')) k--;
    return k - j >= 40 ? k - i : 0;
}

/* Shopify: shpat_ (admin API), shpss_ (shared secret), shpca_ (custom app),
 * shppa_ (private app) and 32 hex */
static size_t shopify(const uint8_t *s, size_t n, size_t i) {
    if (!(AT(i, "shpat_") || AT(i, "shpss_") || AT(i, "shpca_") || AT(i, "shppa_"))) return 0;
    return exact(s, n, i + 6, K_HEX, 32) && ends(s, n, i + 38, K_WORD) ? 38 : 0;
}

/* Square: sq0atp- and 22, sq0csp- and 43 base64url; EAAA and 60 (access tokens) */
static size_t square(const uint8_t *s, size_t n, size_t i) {
    if (AT(i, "sq0atp-")) return exact(s, n, i + 7, K_B64URL, 22) ? 29 : 0;
    if (AT(i, "sq0csp-")) return exact(s, n, i + 7, K_B64URL, 43) ? 50 : 0;
    if (AT(i, "EAAA")) return exact(s, n, i + 4, K_B64URL, 60) ? 64 : 0;
    return 0;
}

/* Twilio API key SIDs: SK and 32 hex (account SIDs, AC..., are identifiers) */
static size_t twilio(const uint8_t *s, size_t n, size_t i) {
    return AT(i, "SK") && exact(s, n, i + 2, K_HEX, 32) && ends(s, n, i + 34, K_WORD) ? 34 : 0;
}

/* Mailgun private API keys: key- and 32 base62 */
static size_t mailgun(const uint8_t *s, size_t n, size_t i) {
    return AT(i, "key-") && exact(s, n, i + 4, K_ALNUM, 32) && ends(s, n, i + 36, K_B64URL) ? 36 : 0;
}

/* Atlassian API tokens: ATATT3 and base64url with an =<8 hex> tail, 192 in all */
static size_t atlassian(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "ATATT3")) return 0;
    size_t k = run(s, n, i + 6, K_B64EQ, 1024);
    return k >= 150 ? 6 + k : 0;
}

/* Postman: PMAK- 24 hex - 34 hex */
static size_t postman(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "PMAK-") || run(s, n, i + 5, K_HEX, 25) != 24 || i + 29 >= n || s[i + 29] != '-')
        return 0;
    return exact(s, n, i + 30, K_HEX, 34) && ends(s, n, i + 64, K_WORD) ? 64 : 0;
}

/* Heroku platform API keys in the HRKU- form (the older ones are bare UUIDs) */
static size_t heroku(const uint8_t *s, size_t n, size_t i) {
    return AT(i, "HRKU-AA") && exact(s, n, i + 7, K_B64URL, 58) ? 65 : 0;
}

/* age identities: AGE-SECRET-KEY-1 and 58 bech32 characters with a valid checksum */
static size_t age(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i, "AGE-SECRET-KEY-1") || !exact(s, n, i + 16, K_UPALNUM, 58)) return 0;
    return bech32_ok("age-secret-key", s + i + 16, 58) ? 74 : 0;
}

/* HashiCorp: Vault service, batch and recovery tokens (hvs., hvb., hvr.) and
 * Terraform Cloud API tokens (14 base62 .atlasv1. 60-70 characters) */
static size_t vault(const uint8_t *s, size_t n, size_t i) {
    if (!(AT(i, "hvs.") || AT(i, "hvb.") || AT(i, "hvr."))) return 0;
    size_t k = run(s, n, i + 4, K_B64URL, 4096);
    return k >= 24 ? 4 + k : 0;
}

static size_t terraform(const uint8_t *s, size_t n, size_t i) {
    if (!AT(i + 14, ".atlasv1.") || run(s, n, i, K_ALNUM, 15) != 14) return 0;
    size_t k = run(s, n, i + 23, K_B64EQ, 128);
    return k >= 60 && k <= 90 ? 23 + k : 0;
}

/* Google: GOCSPX- and 28 (OAuth client secrets), ya29. access tokens, 1//0
 * refresh tokens */
static size_t google_oauth(const uint8_t *s, size_t n, size_t i) {
    if (AT(i, "GOCSPX-")) return exact(s, n, i + 7, K_B64URL, 28) ? 35 : 0;
    if (AT(i, "ya29.")) {
        size_t k = run(s, n, i + 5, K_B64URL, 8192);
        return k >= 20 ? 5 + k : 0;
    }
    if (AT(i, "1//0")) {
        size_t k = run(s, n, i + 4, K_B64URL, 8192);
        return k >= 30 ? 4 + k : 0;
    }
    return 0;
}

/* Telegram bot tokens: the bot id (6-12 digits), ':', AA and 33 base64url */
static size_t telegram(const uint8_t *s, size_t n, size_t i) {
    size_t d = run(s, n, i, K_DIGIT, 13);
    if (d < 6 || d > 12 || !AT(i + d, ":AA")) return 0;
    return exact(s, n, i + d + 3, K_B64URL, 33) ? d + 36 : 0;
}

/* Discord bot tokens: base64 of the bot's decimal id (17-20 digits), '.', 6
 * base64url (a timestamp), '.', 27-38 base64url (the HMAC).  The first part
 * must decode to digits. */
static size_t discord(const uint8_t *s, size_t n, size_t i) {
    size_t a = run(s, n, i, K_ALNUM, 29);
    if (a < 23 || a > 27 || a % 4 == 1 || i + a >= n || s[i + a] != '.') return 0;
    uint32_t acc = 0;
    int bits = 0, digits = 0;
    for (size_t k = 0; k < a; k++) {
        acc = (acc << 6) | (uint32_t)B64[s[i + k]];
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            uint8_t byte = (uint8_t)(acc >> bits);
            if (byte < '0' || byte > '9' || (digits == 0 && byte == '0')) return 0;
            digits++;
        }
        acc &= (1u << bits) - 1;
    }
    if (digits < 17 || digits > 20 || acc != 0) return 0;
    size_t j = i + a + 1;
    if (run(s, n, j, K_B64URL, 7) != 6 || j + 6 >= n || s[j + 6] != '.') return 0;
    j += 7;
    size_t k = run(s, n, j, K_B64URL, 39);
    return k >= 27 && k <= 38 ? j + k - i : 0;
}

/* Azure AD (Entra ID) client secrets: 3 characters, a digit, Q~ and 31-34
 * more of [A-Za-z0-9_~.-].  The word may start after the first of them (they
 * include '.', '~' and '-'); the match starts at the word. */
static size_t azure(const uint8_t *s, size_t n, size_t i) {
    for (size_t d = 0; d <= 3; d++) {
        size_t m = i + d; /* the digit */
        if (m + 2 >= n || s[m + 1] != 'Q' || s[m + 2] != '~' || !IN(s[m], K_DIGIT)) continue;
        if (d < 3 && i < 3 - d) return 0;
        for (size_t t = m - 3; t < m; t++)
            if (!IN(s[t], K_AZURE)) return 0;
        size_t e = m + 3 + run(s, n, m + 3, K_AZURE, 40);
        while (e > m + 3 && s[e - 1] == '.') e--; /* a sentence's full stop */
        size_t k = e - (m + 3);
        return k >= 31 && k <= 34 ? e - i : 0;
    }
    return 0;
}

/* ---- dispatch -------------------------------------------------------------
 * A word start costs a bitmap lookup on its first two bytes (the pairs that
 * begin a format), a look for '~' a few bytes in (Azure) and one for '.' 14
 * bytes in (Terraform); only then the formats of that pair are tried. */

uint64_t lsr_tok_pairs[1024];
uint32_t lsr_tok_head_mask[256], lsr_tok_head_bits[256];
uint8_t lsr_tok_after[256];

static void pair(uint8_t a, uint8_t b) {
    unsigned k = a | (unsigned)b << 8;
    lsr_tok_pairs[k >> 6] |= 1ull << (k & 63);
}

__attribute__((constructor)) static void pairs_init(void) {
    static const char *const P[] = {"AI", "AT", "AG", "EA", "GO", "GR", "HR", "HT", "Ht", "PM", "SG", "SK",
                                    "ap", "do", "da", "dp", "gl", "hf", "ht", "hT", "hv", "ke", "np", "py",
                                    "rk", "sk", "sh", "sq", "wh", "xa", "xo", "ya", "1/"};
    for (size_t t = 0; t < sizeof P / sizeof P[0]; t++) pair((uint8_t)P[t][0], (uint8_t)P[t][1]);
    for (const char *a = "MNO"; *a; a++) /* Discord: base64 of a decimal id begins so */
        for (const char *b = "DTjz"; *b; b++) pair((uint8_t)*a, (uint8_t)*b);
    /* The first four bytes of the prefix formats, '?' where any byte may stand, every
     * spelling that dispatch takes.  Per first byte, the bits on which all of its spellings
     * agree make a mask: a word whose first four bytes differ from them there is none of
     * them ("api" and "app" are not "api_", "docs" not "dop_"). */
    static const char *const H[] = {
        "AIza", "ATAT", "AGE-", "EAAA", "GOCS", "GR13", "HRKU", "HTTP", "Http", "PMAK", "SG.?", "SK??",
        "api_", "dop_", "doo_", "dor_", "dapi", "dp.p", "dp.s", "dp.c", "dp.a", "glpa", "gldt", "glrt",
        "glpt", "glcb", "glft", "glim", "glag", "gloa", "glso", "glff", "glwt", "hf_?", "hvs.", "hvb.",
        "hvr.", "http", "hTTP", "key-", "npm_", "pypi", "rk_l", "rk_t", "sk_l", "sk_t", "sk-?", "shpa",
        "shps", "shpc", "shpp", "sq0a", "sq0c", "whse", "xapp", "xoxe", "ya29", "1//0", "M???", "N???",
        "O???"};
    lsr_tok_after[':'] = LSR_TOK_AFTER_TELEGRAM;
    lsr_tok_after['.'] = LSR_TOK_AFTER_TERRAFORM | LSR_TOK_AFTER_AZURE;
    lsr_tok_after['-'] = lsr_tok_after['~'] = LSR_TOK_AFTER_AZURE;
    uint32_t seen_and[256], seen_or[256], any[256];
    memset(any, 0, sizeof any);
    for (size_t t = 0; t < sizeof H / sizeof H[0]; t++) {
        uint8_t f = (uint8_t)H[t][0];
        uint32_t bits = 0, wild = 0;
        for (int k = 0; k < 4; k++) {
            uint8_t ch = (uint8_t)H[t][k];
            if (ch == '?') wild |= 0xFFu << (8 * k);
            else bits |= (uint32_t)ch << (8 * k);
        }
        if (!any[f]) {
            seen_and[f] = bits;
            seen_or[f] = bits;
            lsr_tok_head_mask[f] = ~wild;
            any[f] = 1;
        } else {
            seen_and[f] &= bits;
            seen_or[f] |= bits;
            lsr_tok_head_mask[f] &= ~wild;
        }
    }
    for (int f = 0; f < 256; f++) {
        if (!any[f]) continue; /* no prefix format begins with f: the pairs turn it away */
        lsr_tok_head_mask[f] &= ~(seen_and[f] ^ seen_or[f]); /* the bits where spellings agree */
        lsr_tok_head_bits[f] = seen_and[f] & lsr_tok_head_mask[f];
    }
}

/* the formats that may begin at i (lsr_tok_maybe said some may) */
static size_t dispatch(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule) {
    size_t m = 0;
    int r = -1;
    const uint8_t *p = s + i, c1 = p[1], c2 = p[2], c3 = p[3];
    unsigned key = p[0] | (unsigned)c1 << 8;
    int pfx = (int)(lsr_tok_pairs[key >> 6] >> (key & 63) & 1);
#define TRY(id, fn)                                                                                      \
    do {                                                                                                 \
        if (r < 0 && (enabled >> (id) & 1) && (m = fn(s, n, i)) != 0) r = (id);                          \
    } while (0)
    if (pfx) switch (s[i]) {
    case 'A':
        if (c1 == 'I') {
            if (c2 == 'z' && c3 == 'a' && (enabled >> LSR_R_GOOGLE_API_KEY & 1) &&
                exact(s, n, i + 4, K_B64URL, 35)) {
                m = 39;
                r = LSR_R_GOOGLE_API_KEY;
            }
        } else if (c1 == 'T') {
            if (c2 == 'A') TRY(LSR_R_ATLASSIAN_TOKEN, atlassian);
        } else if (c2 == 'E') {
            TRY(LSR_R_AGE_SECRET_KEY, age);
        }
        break;
    case 'E':
        if (c2 == 'A' && c3 == 'A') TRY(LSR_R_SQUARE_TOKEN, square);
        break;
    case 'G':
        if (c1 == 'O') TRY(LSR_R_GOOGLE_OAUTH, google_oauth);
        else if (c2 == '1') TRY(LSR_R_GITLAB_TOKEN, gitlab_runner);
        break;
    case 'H':
        if (c1 == 'R') TRY(LSR_R_HEROKU_KEY, heroku);
        else TRY(LSR_R_SLACK_WEBHOOK, slack_webhook); /* HTTPS:// */
        break;
    case 'P': TRY(LSR_R_POSTMAN_KEY, postman); break;
    case 'S':
        if (c1 == 'G') {
            if (c2 == '.') TRY(LSR_R_SENDGRID_KEY, sendgrid);
        } else {
            TRY(LSR_R_TWILIO_KEY, twilio);
        }
        break;
    case 'a':
        if (c3 == '_') TRY(LSR_R_HUGGINGFACE_TOKEN, huggingface); /* api_org_ */
        break;
    case 'd':
        if (c1 == 'o') {
            if (c3 == '_') TRY(LSR_R_DIGITALOCEAN_TOKEN, digitalocean);
        } else if (c1 == 'a') {
            if (c2 == 'p' && c3 == 'i') TRY(LSR_R_DATABRICKS_TOKEN, databricks);
        } else if (c2 == '.') {
            TRY(LSR_R_DOPPLER_TOKEN, doppler);
        }
        break;
    case 'g': TRY(LSR_R_GITLAB_TOKEN, gitlab); break;
    case 'h':
        if (c1 == 'f') {
            if (c2 == '_') TRY(LSR_R_HUGGINGFACE_TOKEN, huggingface);
        } else if (c1 == 'v') {
            if (c3 == '.') TRY(LSR_R_HASHICORP_TOKEN, vault);
        } else if ((c2 | 32) == 't' && (c3 | 32) == 'p') {
            TRY(LSR_R_SLACK_WEBHOOK, slack_webhook);
        }
        break;
    case 'k':
        if (c2 == 'y' && c3 == '-') TRY(LSR_R_MAILGUN_KEY, mailgun);
        break;
    case 'n':
        if (c2 == 'm' && c3 == '_') TRY(LSR_R_NPM_TOKEN, npm);
        break;
    case 'p':
        if (c2 == 'p' && c3 == 'i') TRY(LSR_R_PYPI_TOKEN, pypi);
        break;
    case 'r':
        if (c2 == '_') TRY(LSR_R_STRIPE_KEY, stripe);
        break;
    case 's':
        if (c1 == 'k') {
            if (c2 == '-') {
                if (AT(i + 3, "ant-")) TRY(LSR_R_ANTHROPIC_KEY, anthropic);
                else TRY(LSR_R_OPENAI_KEY, openai);
            } else if (c2 == '_') {
                TRY(LSR_R_STRIPE_KEY, stripe);
            }
        } else if (c1 == 'h') {
            if (c2 == 'p') TRY(LSR_R_SHOPIFY_TOKEN, shopify);
        } else if (c2 == '0') {
            TRY(LSR_R_SQUARE_TOKEN, square);
        }
        break;
    case 'w':
        if (c2 == 's' && c3 == 'e') TRY(LSR_R_STRIPE_KEY, stripe);
        break;
    case 'x':
        if (c2 == 'p' || c2 == 'x') TRY(LSR_R_SLACK_TOKEN, slack_more);
        break;
    case 'y':
        if (c2 == '2') TRY(LSR_R_GOOGLE_OAUTH, google_oauth);
        break;
    case 'M': case 'N': case 'O': TRY(LSR_R_DISCORD_TOKEN, discord); break;
    case '1': TRY(LSR_R_GOOGLE_OAUTH, google_oauth); break; /* 1//0 */
    default: break;
    }
    if (r < 0) { /* the formats without a prefix, looked for only now */
        uint32_t a;
        uint64_t w;
        memcpy(&w, p + 6, 8);
        if ((unsigned)p[0] - 0x31u < 9u && lsr_tok_has_byte(w, ':')) TRY(LSR_R_TELEGRAM_BOT_TOKEN, telegram);
        memcpy(&a, p + 2, 4);
        if (r < 0 && lsr_tok_has_byte(a, '~')) TRY(LSR_R_AZURE_CLIENT_SECRET, azure);
        if (r < 0 && p[14] == '.' && p[15] == 'a') TRY(LSR_R_HASHICORP_TOKEN, terraform);
    }
#undef TRY
    if (r < 0) return 0;
    *rule = r;
    return m;
}

size_t lsr_tok_match(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule) {
    if (!lsr_tok_maybe(s, n, i)) return 0;
    return dispatch(s, n, i, enabled, rule);
}

size_t lsr_tok_match_checked(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule) {
    return dispatch(s, n, i, enabled, rule);
}

size_t lsr_tok_scan(const uint8_t *s, size_t n, uint64_t enabled, uint64_t *hits) {
    size_t i = 0, matched = 0;
    while (i < n) {
        if (!IN(s[i], K_WORD)) {
            i++;
            continue;
        }
        int rule = -1;
        size_t m = lsr_tok_match(s, n, i, enabled, &rule);
        if (m) {
            if (hits && rule >= 0 && rule < 64) hits[rule]++;
            matched += m;
            i += m;
            while (i < n && i > 0 && IN(s[i], K_WORD) && IN(s[i - 1], K_WORD)) i++; /* rest of the word */
            continue;
        }
        while (i < n && IN(s[i], K_WORD)) i++;
    }
    return matched;
}
