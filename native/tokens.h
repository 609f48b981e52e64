/*
 * logger_system sanitizer: provider token formats.
 *
 * Credentials that services issue with a fixed prefix (Stripe sk_live_,
 * Google AIza, OpenAI sk-proj-, GitLab glpat-, npm_, ...) are recognised at
 * the start of a word by their first bytes, then checked against the shape of
 * the format (fixed lengths, alphabets, separators) and its checksum where it
 * has one (npm's CRC32, the bech32 of age keys, the digits inside a Discord
 * token).  A call reads a bounded number of bytes unless it matches, and a
 * match covers the whole token, so a scanner that resumes after each match
 * stays linear in its input.
 */
#ifndef LSR_TOKENS_H
#define LSR_TOKENS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Called at the start of a word at position i (s[i] is [A-Za-z0-9_], s[i-1]
 * is not or i == 0).  Returns the length of the token that starts at i and
 * sets *rule to its LSR_R_* id, whose bit is set in `enabled`; or returns 0
 * (and leaves *rule alone). */
size_t lsr_tok_match(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule);

/* The first check lsr_tok_match makes, for a scanner to inline: 0 when no
 * format can begin at i (most word starts), so the call can be skipped.  It
 * reads s[i..i+15] only when n - i >= 16. */
extern uint64_t lsr_tok_pairs[1024] __attribute__((visibility("hidden"))); /* 2-byte prefixes */
/* what the byte after a word may be when a format without a prefix begins at the word */
enum { LSR_TOK_AFTER_TELEGRAM = 1, LSR_TOK_AFTER_TERRAFORM = 2, LSR_TOK_AFTER_AZURE = 4 };
extern uint8_t lsr_tok_after[256] __attribute__((visibility("hidden")));
/* what the first four bytes of a prefix format are, per first byte: (load & mask) == bits */
extern uint32_t lsr_tok_head_mask[256] __attribute__((visibility("hidden")));
extern uint32_t lsr_tok_head_bits[256] __attribute__((visibility("hidden")));

static inline int lsr_tok_has_byte(uint64_t w, uint8_t b) { /* some byte of w is b */
    w ^= 0x0101010101010101ull * b;
    return ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull) != 0;
}

/* The same check for a scanner that knows the word at i already: it is
 * [i, i + wl) ([A-Za-z0-9_] bytes) and x the byte after it (0 at the end).
 * Past the 2-byte prefixes, only three formats can begin a word, each after
 * a word of a known kind: Telegram's bot id is the word (6-12 digits) and
 * ':' follows it; Terraform's first part is the word (14) and ".atlasv1."
 * follows; an Azure secret has its "Q~" within six bytes, so its word is at
 * most 5 long and ends at '~', '.' or '-' (the secret's other bytes). */
static inline int lsr_tok_maybe_word(const uint8_t *s, size_t n, size_t i, size_t wl, uint8_t x) {
    if (i >= n || n - i < 16) return 0; /* no format is shorter */
    const uint8_t *p = s + i;
    unsigned key = p[0] | (unsigned)p[1] << 8;
    if (lsr_tok_pairs[key >> 6] >> (key & 63) & 1) { /* a prefix format, if its next bytes agree */
        uint32_t h = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if ((h & lsr_tok_head_mask[p[0]]) == lsr_tok_head_bits[p[0]]) return 1;
    }
    unsigned xa = lsr_tok_after[x];
    if (!xa) return 0; /* most words: none of the three */
    if (xa & LSR_TOK_AFTER_TELEGRAM) return wl >= 6 && wl <= 12 && (unsigned)p[0] - 0x31u < 9u;
    if ((xa & LSR_TOK_AFTER_TERRAFORM) && wl == 14 && p[15] == 'a') return 1;
    if (wl > 5) return 0; /* the Azure bit is set for every byte left */
    uint32_t a;
    memcpy(&a, p + 2, 4);
    return lsr_tok_has_byte(a, '~');
}

static inline int lsr_tok_maybe(const uint8_t *s, size_t n, size_t i) {
    if (i >= n || n - i < 16) return 0;
    size_t e = i;
    while (e < n && (((s[e] | 32u) - 'a' < 26u) || s[e] - (unsigned)'0' < 10u || s[e] == '_')) e++;
    return lsr_tok_maybe_word(s, n, i, e - i, e < n ? s[e] : 0);
}

/* lsr_tok_match without its first check, for a scanner that made it (with
 * lsr_tok_maybe or lsr_tok_maybe_word) and got 1. */
size_t lsr_tok_match_checked(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule);

/* Walks the word starts of a text as the scanner does (resuming after each
 * match, else after the word) and counts matches per rule id into hits[64].
 * Returns the number of bytes matched.  For tests and the benchmarks. */
size_t lsr_tok_scan(const uint8_t *s, size_t n, uint64_t enabled, uint64_t *hits);

#endif
