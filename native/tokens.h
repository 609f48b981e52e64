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

/* Called at the start of a word at position i (s[i] is [A-Za-z0-9_], s[i-1]
 * is not or i == 0).  Returns the length of the token that starts at i and
 * sets *rule to its LSR_R_* id, whose bit is set in `enabled`; or returns 0
 * (and leaves *rule alone). */
size_t lsr_tok_match(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule);

/* Walks the word starts of a text as the scanner does (resuming after each
 * match, else after the word) and counts matches per rule id into hits[64].
 * Returns the number of bytes matched.  For tests and the benchmarks. */
size_t lsr_tok_scan(const uint8_t *s, size_t n, uint64_t enabled, uint64_t *hits);

#endif
