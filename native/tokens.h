/*
 * logger_system sanitizer: provider token formats (Stripe, Google, GitLab, ...).
 *
 * lsr_tok_match is asked at the start of a word (s[i] is a word character and
 * s[i - 1] is not): it returns the length of the token that starts there and
 * sets *rule, or returns 0.  enabled has a bit per rule id.
 */
#ifndef LSR_TOKENS_H
#define LSR_TOKENS_H

#include <stddef.h>
#include <stdint.h>

size_t lsr_tok_match(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule);

#endif
