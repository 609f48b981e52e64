/*
 * logger_system sanitizer: find PII and secrets in a whole drained batch.
 *
 * One pass over each record's message and over the string and number values
 * of its fields (a JSON walk, so replacements keep the JSON valid) finds
 * candidates by their first bytes and validates them on the spot (Luhn for
 * cards, the SSN rules, octet ranges, IPv6 grouping, ...).  The result is a
 * list of spans; a second call rewrites the batch with every span replaced.
 * Spans of rules that need a key (hash) or a user pattern are made or
 * completed by the caller between the two calls.  Both calls are linear in
 * the batch size.
 */
#ifndef LSR_SANITIZE_H
#define LSR_SANITIZE_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"

/* built-in rules, in this order; ids are stable */
enum {
    LSR_R_CREDIT_CARD = 0,
    LSR_R_SSN,
    LSR_R_EMAIL,
    LSR_R_IPV4,
    LSR_R_IPV6,
    LSR_R_JWT,
    LSR_R_AWS_KEY,
    LSR_R_GITHUB_TOKEN,
    LSR_R_SLACK_TOKEN,
    LSR_R_PRIVATE_KEY,
    LSR_R_PASSWORD,
    LSR_R_BEARER,
    LSR_R_URL_CREDENTIALS,
    /* provider token formats (native/tokens.c) */
    LSR_R_STRIPE_KEY,
    LSR_R_GOOGLE_API_KEY,
    LSR_R_GOOGLE_OAUTH,
    LSR_R_OPENAI_KEY,
    LSR_R_ANTHROPIC_KEY,
    LSR_R_SLACK_WEBHOOK,
    LSR_R_GITLAB_TOKEN,
    LSR_R_SENDGRID_KEY,
    LSR_R_NPM_TOKEN,
    LSR_R_PYPI_TOKEN,
    LSR_R_HUGGINGFACE_TOKEN,
    LSR_R_DIGITALOCEAN_TOKEN,
    LSR_R_SHOPIFY_TOKEN,
    LSR_R_TWILIO_KEY,
    LSR_R_MAILGUN_KEY,
    LSR_R_SQUARE_TOKEN,
    LSR_R_DATABRICKS_TOKEN,
    LSR_R_ATLASSIAN_TOKEN,
    LSR_R_POSTMAN_KEY,
    LSR_R_DOPPLER_TOKEN,
    LSR_R_TELEGRAM_BOT_TOKEN,
    LSR_R_DISCORD_TOKEN,
    LSR_R_AZURE_CLIENT_SECRET,
    LSR_R_HEROKU_KEY,
    LSR_R_AGE_SECRET_KEY,
    LSR_R_HASHICORP_TOKEN,
    LSR_R_NBUILTIN, /* below LSR_R_FIELD: one hit counter each, with the field rule and the policy's */
    LSR_R_FIELD = 63 /* a value of a field named in redact_fields */
};

enum { LSR_A_REDACT = 0, LSR_A_MASK = 1, LSR_A_HASH = 2, LSR_A_DROP = 3 };

#define LSR_SPAN_QUOTE 1u    /* replacement stands for a whole JSON value: emit it quoted */
#define LSR_SPAN_IN_FIELDS 2u

typedef struct {
    uint32_t rec;      /* record index in the batch */
    uint32_t start;    /* offset in the batch buffer */
    uint32_t len;
    uint16_t rule;     /* LSR_R_*, or 64 + index of a policy rule */
    uint8_t action;    /* LSR_A_* */
    uint8_t flags;     /* LSR_SPAN_* */
    uint32_t repl_off; /* replacement supplied by the caller (hash), or UINT32_MAX */
    uint32_t repl_len;
} lsr_span;

typedef struct {
    uint64_t enabled;           /* bit per built-in rule */
    uint8_t action[64];         /* action per built-in rule id (and [63] for fields) */
    const uint8_t *field_names; /* names as policy.field_key spells them, each after a length byte */
    uint32_t field_names_len;
} lsr_san_config;

/* Returns the number of spans found (sorted by start, not overlapping), or
 * LSR_EFULL if more than max_spans were needed. */
int64_t lsr_san_scan(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *keep,
                     const lsr_san_config *cfg, lsr_span *spans, uint32_t max_spans);

/* Scan one text on its own (tests, and the naive-free benchmark). */
int64_t lsr_san_scan_text(const uint8_t *s, size_t n, const lsr_san_config *cfg, lsr_span *spans,
                          uint32_t max_spans);

/* Rewrite the batch into out/meta_out with every span replaced.  names holds
 * the rule names ('\0'-terminated) at name_off[rule].  Records with a drop
 * span get keep[i] = 0.  Returns bytes written to out, or LSR_EARG if out_cap
 * is below lsr_san_bound(). */
int64_t lsr_san_rewrite(const lsr_meta *meta, uint32_t n, const uint8_t *buf, uint8_t *keep,
                        const lsr_span *spans, uint32_t nspans, const uint8_t *names,
                        const uint32_t *name_off, uint32_t nnames, const uint8_t *repl,
                        lsr_meta *meta_out, uint8_t *out, size_t out_cap);
size_t lsr_san_bound(uint32_t buf_len, uint32_t nspans);

#endif
