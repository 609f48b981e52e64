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

static inline int lsr_tok_has_byte(uint64_t w, uint8_t b) { /* some byte of w is b */
    w ^= 0x0101010101010101ull * b;
    return ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull) != 0;
}

static inline int lsr_tok_maybe(const uint8_t *s, size_t n, size_t i) {
    if (i >= n || n - i < 16) return 0; /* no format is shorter */
    const uint8_t *p = s + i;
    unsigned key = p[0] | (unsigned)p[1] << 8;
    if (lsr_tok_pairs[key >> 6] >> (key & 63) & 1) return 1; /* a prefix format */
    uint32_t a;
    memcpy(&a, p + 2, 4);
    if (lsr_tok_has_byte(a, '~')) return 1;     /* Azure: Q~ ends in p[2..5] */
    if (p[14] == '.' && p[15] == 'a') return 1;              /* Terraform: .atlasv1. */
    if ((unsigned)p[0] - 0x31u >= 9u) return 0;
    uint64_t b;
    memcpy(&b, p + 6, 8); /* Telegram: a bot id of 6-12 digits, then ':' */
    return lsr_tok_has_byte(b, ':');
}

/* Walks the word starts of a text as the scanner does (resuming after each
 * match, else after the word) and counts matches per rule id into hits[64].
 * Returns the number of bytes matched.  For tests and the benchmarks. */
size_t lsr_tok_scan(const uint8_t *s, size_t n, uint64_t enabled, uint64_t *hits);

#endif
