/*
 * The line layout of logger_system's files read back, and RFC 5424 messages made of it
 * (lines.c, which also writes the layout: lsr_format_jsonl, declared in ring.h).
 */
#ifndef LSR_LINES_H
#define LSR_LINES_H

#include "ring.h"

/* lsr_lines_parse's status of one line */
#define LSR_LINE_OK 0    /* the layout exactly: its columns are in meta and buf */
#define LSR_LINE_HOST 1  /* the layout with a log server's trailing "host": columns as for OK */
#define LSR_LINE_OTHER 2 /* not the layout: meta zero, the general JSON path decides */

/* The lines of s (each ended by a newline, the last one may not be) -> one meta and one
 * status per line; logger, msg and fields of the lines taken are appended to buf (which
 * needs n bytes), decoded (logger, msg) or as they are (fields; {} holds none).  A line's
 * "n" must be first_n plus its index.  Returns the number of lines, LSR_EARG if there are
 * more than max_records or buf_cap < n. */
int64_t lsr_lines_parse(const uint8_t *s, size_t n, uint64_t first_n, lsr_meta *meta, uint8_t *status,
                        uint32_t max_records, uint8_t *buf, size_t buf_cap, uint64_t *buf_len);

/* How records become RFC 5424 messages (logger_system/ship/syslog.py's SyslogFormat says
 * the mapping; this is its fast path for the records the layout gives). */
typedef struct {
    const uint8_t *host_app; /* "HOSTNAME APP-NAME", both already header tokens */
    uint32_t host_app_len;
    uint32_t facility;        /* 0..23 */
    const uint8_t *sd_id;     /* "ls@PEN" */
    uint32_t sd_id_len;
    const uint8_t *fields_sd_id; /* "fields@PEN" */
    uint32_t fields_sd_id_len;
    uint32_t max_octets; /* a longer message has its MSG cut to fit; 0: no limit */
    uint32_t framed;     /* 1: each message preceded by RFC 5425's "MSG-LEN SP" */
} lsr_syslog_cfg;

/* One message per record whose skip[i] is zero, record i numbered first_n + i, one after
 * the other in out; ends[i] is where record i's message ends (it starts where record i-1's
 * ends).  A record made no message of here (skipped, or one the general path must make: a
 * field that is a list, an object or a float not as Python writes it, a key that cannot be a
 * PARAM-NAME) has an empty span.
 * Returns the bytes written, LSR_EARG if out_cap < lsr_syslog_bound. */
int64_t lsr_syslog_format(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *skip,
                          uint64_t first_n, const lsr_syslog_cfg *cfg, uint8_t *out, size_t out_cap,
                          uint64_t *ends);
size_t lsr_syslog_bound(uint32_t n, uint32_t buf_len, const lsr_syslog_cfg *cfg);

/* shared with ring.c */
int lsr_utf8_valid(const uint8_t *s, size_t n);

#endif
