/*
 * logger_system ring: a multi-producer, single-consumer ring of variable-length
 * records in a named POSIX shared-memory segment.
 *
 * Segment layout (host byte order, every offset a multiple of 64):
 *
 *   0            lsr_header       magic, geometry, ring id, the claim cursor
 *                                 (tail), the release cursor (head), producer
 *                                 counters, the writer's commit pair
 *   4096         lsr_slot[1024]   one slot per producing thread: owner pid and
 *                                 start time, and the range it is claiming
 *   69632        lsr_proc[512]    one entry per producing process: what it committed,
 *                                 dropped and still holds in the ring (fair share)
 *   102400       data[capacity]   the records; capacity is a power of two
 *
 * A record, 8-byte aligned, never split across the end of the data area:
 *
 *    0       8        16       24        32        40
 *   +--------+--------+--------+---------+---------+------------------------+
 *   | word   | ts_ns  |pid |tid|msg_len  |fields_len| msg | logger | fields |
 *   |        |        |        |lg_len lv|flags proc|                        |
 *   +--------+--------+--------+---------+---------+------------------------+
 *
 *   word (atomic, 64 bits) = check:16 | slot:16 | len:29 | state:3
 *     state 0  free: the consumer zeroed it; nothing claimed here yet
 *     state 1  claimed: the producer in `slot` is copying
 *     state 2  committed: the record is complete
 *     state 3  padding: skip `len` bytes to the end of the data area
 *     len      total bytes of the record including this header, multiple of 8
 *     check    a hash of (len, slot, state): garbage rarely passes it
 *   proc (32 bits) 1 + the producing process's lsr_proc entry (0: none), so that the
 *     writer can tell each process which of its bytes left the ring
 *
 * Protocol.  A producer writes the range it is about to claim into its slot,
 * then CASes tail forward; no lock is held while it copies.  It stores the
 * word as claimed, copies, and stores the word as committed (release).  The
 * consumer reads words at its cursor (acquire), processes what is committed,
 * zeroes what it consumed and only then moves head (release), so a producer
 * only ever claims zeroed memory.  A zero word at the cursor with tail beyond
 * it is a claim in flight: its owner is found through the slots, and if that
 * process is dead (pid and start time) the range is skipped and counted as
 * abandoned.  Nothing the consumer reads from the data area is trusted.
 */
#ifndef LSR_RING_H
#define LSR_RING_H

#include <stddef.h>
#include <stdint.h>

#define LSR_VERSION 2
#define LSR_MAGIC 0x31304752534c534cULL /* "LSLSRG01" */
#define LSR_HEADER_BYTES 4096
#define LSR_SLOTS 1024
#define LSR_SLOT_BYTES 64
#define LSR_PROCS 512
#define LSR_PROC_BYTES 64
#define LSR_PROCS_OFFSET (LSR_HEADER_BYTES + LSR_SLOTS * LSR_SLOT_BYTES)
#define LSR_DATA_OFFSET (LSR_PROCS_OFFSET + LSR_PROCS * LSR_PROC_BYTES)
#define LSR_REC_HEADER 40
#define LSR_MIN_CAPACITY (64u * 1024u)
#define LSR_MAX_CAPACITY (1ULL << 30)
#define LSR_NO_CLAIM UINT64_MAX

/* return codes: >= 0 success, < 0 one of these */
#define LSR_OK 0
#define LSR_EFULL (-1)       /* ring full, record dropped and counted */
#define LSR_ETOOBIG (-2)     /* record larger than max_record */
#define LSR_ENOSLOT (-3)     /* every producer slot is taken */
#define LSR_ESYS (-4)        /* a system call failed: see errno */
#define LSR_EBADRING (-5)    /* the segment is not a ring of this version */
#define LSR_EARG (-6)        /* bad argument */
#define LSR_EEXIST (-7)      /* another writer holds the ring */
#define LSR_EPERM (-8)       /* segment owned by another user or open to others */
#define LSR_EREMOVED (-9)    /* the ring was removed (`ring rm`): nothing more goes into it */
#define LSR_EWAIT (-10)      /* full, and the call may wait (block = LSR_BLOCK_ASK): nothing counted,
                                the caller waits (LSR_BLOCK) or drops (lsr_count) */

/* what a producer does when the ring is full (lsr_write's `block`) */
#define LSR_DROP 0           /* drop at once */
#define LSR_BLOCK 1          /* wait up to timeout_ns while a writer is alive, then drop */
#define LSR_BLOCK_ASK 2      /* as LSR_BLOCK, but return LSR_EWAIT instead of starting to wait */

/* A writer is alive while its heartbeat is younger than this (the writer beats
 * on every loop, at least every 50 ms); producers never wait for a dead one. */
#define LSR_WRITER_TIMEOUT_NS 5000000000ull

/* producer-side counters, updated with relaxed atomics */
enum {
    LSR_C_COMMITTED = 0,
    LSR_C_DROPPED,
    LSR_C_TRUNCATED,
    LSR_C_FORMAT_ERRORS,
    LSR_C_WRITER_ERRORS,
    LSR_C_BLOCKED,
    LSR_C_WARNINGS,      /* warning records the writer logged about its own health */
    /* Why records were dropped: each of these is also counted in LSR_C_DROPPED.
     * Backpressure (see lsr_write): a process waits for room at most once; after
     * a wait that timed out, its calls drop at once until one finds room. */
    LSR_C_DROP_STALLED,  /* dropped at once: an earlier wait of this process timed out */
    LSR_C_DROP_IN_LOOP,  /* dropped instead of waiting on a thread running an event loop */
    LSR_C_DROP_NO_SLOT,  /* every producer slot was taken */
    LSR_C_DROP_REMOVED,  /* the ring was removed and no ring has its name */
    LSR_C_DROP_NO_WRITER,/* block mode, but no live writer to make room */
    LSR_C_BLOCK_TIMEOUTS,/* waits that ended with no room (the record dropped) */
    LSR_C_LOST,          /* records the ring had released that a writer found missing from the files */
    LSR_C_DAMAGED_FILES, /* damaged newest files a writer moved aside at start */
    LSR_C_HEADER_REPAIRS,/* header fields a writer found inconsistent and set right (lsr_check) */
    LSR_C_DROP_OVER_SHARE,/* refused under pressure: the process held more than its fair share */
    LSR_C_DROP_DAMAGED,  /* the segment with the ring's name was not a ring when the process came */
    LSR_NCOUNTERS = 24
};

/* Fair share.  When a claim would leave less than capacity / LSR_FAIR_RESERVE free, a
 * process that holds (committed, not yet released by the writer) more than capacity /
 * active bytes is refused as if the ring were full: it drops (LSR_C_DROP_OVER_SHARE) or
 * waits, and the room left stays for the others.  `active` is the number of processes that
 * called within LSR_ACTIVE_NS, counted by the writer at each release.  The accounting is
 * what each process says of itself: it keeps a runaway process from crowding out the rest,
 * not a hostile one, which can write the segment as it likes. */
#define LSR_FAIR_RESERVE 4
#define LSR_ACTIVE_NS 10000000000ull

/* one producing process, as lsr_procs_read reports it */
typedef struct {
    uint32_t pid;
    uint32_t alive;      /* pid and start time still name a running process */
    uint64_t start;      /* its start time, clock ticks since boot */
    uint64_t committed;  /* records it put in the ring */
    uint64_t dropped;    /* records of its calls that did not get in, every reason */
    uint64_t bytes;      /* bytes of its committed records */
    uint64_t held;       /* of those, bytes still in the ring (not released by the writer) */
    uint64_t last_ns;    /* CLOCK_REALTIME of its last call */
    uint64_t over_share; /* of its drops, those refused for holding more than its share */
} lsr_proc_stat;

/* writer-side totals: they move only together with head (see lsr_release) */
typedef struct {
    uint64_t head;
    uint64_t written;
    uint64_t malformed;
    uint64_t abandoned;
    uint64_t filtered;
    uint64_t sanitized;
    uint64_t sanitize_dropped;
    uint64_t denied;          /* refused by the writer's access rules */
    uint64_t released_ns;     /* CLOCK_MONOTONIC of the last release that moved head */
    /* Where the writer's directory stream stood at this release: set (absolute, not added)
     * from a delta whose stream_tag is non-zero, so that a writer starting later can tell
     * records the ring released from records its files hold. */
    uint64_t last_seq;        /* seq of the last record written into a file (LSR_NO_SEQ: none) */
    uint64_t next_n;          /* the stream's number for the next record written */
    uint64_t stream_tag;      /* which directory stream (0: none published) */
    uint64_t lost_mark;       /* 1 + the n where a loss already counted begins, while nothing was
                                 written after it (0: none): a restart does not count it again */
    uint64_t reserved[3];
} lsr_totals;
#define LSR_NO_SEQ UINT64_MAX

/* hits per sanitizer rule, named by the writer that counts them */
#define LSR_RULES 64
#define LSR_RULE_NAME 40
typedef struct {
    char name[LSR_RULE_NAME];
    uint64_t hits;
} lsr_rule_stat;

typedef struct {
    uint64_t capacity_bytes;
    uint64_t used_bytes;
    uint64_t high_water_bytes;
    uint64_t tail;
    uint64_t ring_id;
    uint64_t created_ns;
    uint32_t max_record;
    uint32_t live_slots;
    int32_t writer_pid;
    uint32_t owner_uid;
    uint64_t writer_heartbeat_ns;
    uint32_t active_procs;     /* processes that called recently, as the writer last counted */
    uint32_t _pad;
    uint64_t counters[LSR_NCOUNTERS];
    lsr_totals totals;
    lsr_rule_stat rules[LSR_RULES];
} lsr_stats;

/* one decoded record of a drained batch; offsets point into the batch buffer */
typedef struct {
    uint64_t seq;
    uint64_t ts_ns;
    uint32_t pid;
    uint32_t tid;
    uint32_t msg_off;
    uint32_t msg_len;
    uint32_t logger_off;
    uint32_t logger_len;
    uint32_t fields_off;
    uint32_t fields_len;
    uint32_t level;
    uint32_t flags;
} lsr_meta;

#define LSR_FLAG_TRUNCATED 1u
#define LSR_FLAG_FORMAT_ERROR 2u

typedef struct {
    lsr_meta *meta;       /* caller-owned, max_records entries */
    uint8_t *buf;         /* caller-owned, buf_cap bytes */
    uint32_t max_records;
    uint32_t buf_cap;
    /* out */
    uint32_t n;           /* records decoded into meta/buf */
    uint32_t buf_len;
    uint64_t end;         /* cursor after the last record consumed */
    uint64_t malformed;   /* records skipped as malformed in this drain */
    uint64_t abandoned;   /* claims of dead producers skipped in this drain */
    int32_t stalled;      /* 1: stopped at a claim still in flight */
} lsr_batch;

typedef struct lsr_ring lsr_ring;

/* open or create; mode is the segment mode when created (0600 by default).  create: 0
 * attach only, 1 create if missing; | LSR_OPEN_NOWAIT: a segment still being made is not
 * waited for (LSR_EBADRING at once), for a producer looking again from a hold (ring.py). */
#define LSR_OPEN_NOWAIT 2
int lsr_open(const char *name, uint64_t capacity, uint32_t max_record,
             uint32_t mode, int create, int allow_foreign, lsr_ring **out);
void lsr_close(lsr_ring *r);
int lsr_unlink(const char *name);
/* A segment that is not a ring of this version (lsr_open: LSR_EBADRING): mark it removed if
 * its header can be mapped, so producers that still map it move, then remove its name. */
int lsr_discard(const char *name);
int lsr_after_fork(lsr_ring *r);
int lsr_created(const lsr_ring *r);
/* mark a ring whose name was removed: producers get LSR_EREMOVED from then on */
void lsr_mark_removed(lsr_ring *r);
int lsr_removed(const lsr_ring *r);

/* producers */
int lsr_slot_acquire(lsr_ring *r);
void lsr_slot_release(lsr_ring *r, int slot);
/* block: LSR_DROP, LSR_BLOCK or LSR_BLOCK_ASK; a slot < 0 (none could be had)
 * drops the record, counted as LSR_C_DROP_NO_SLOT */
int lsr_write(lsr_ring *r, int slot, uint32_t level, uint32_t flags,
              const char *msg, size_t msg_len,
              const char *logger, size_t logger_len,
              const char *fields, size_t fields_len,
              int block, int64_t timeout_ns);
void lsr_count(lsr_ring *r, int counter, uint64_t n);

/* A producer's fixed arguments, so that the per-record call passes only what varies. */
typedef struct {
    lsr_ring *ring;
    const char *logger;
    uint32_t logger_len;
    int32_t block;            /* LSR_DROP, LSR_BLOCK or LSR_BLOCK_ASK */
    int64_t timeout_ns;
    int64_t writer_timeout_ns; /* heartbeat age past which the writer is taken as gone; 0: default */
} lsr_producer;
int lsr_emit(const lsr_producer *p, int slot, uint32_t level, uint32_t flags,
             const char *msg, size_t msg_len, const char *fields, size_t fields_len);
/* lsr_emit after LSR_EWAIT: wait (as LSR_BLOCK) */
int lsr_emit_wait(const lsr_producer *p, int slot, uint32_t level, uint32_t flags,
                  const char *msg, size_t msg_len, const char *fields, size_t fields_len);

/* The header fields lsr_check validates (lsr_repair.field). */
enum {
    LSR_F_MAGIC = 0, LSR_F_VERSION, LSR_F_HEADER_BYTES, LSR_F_CAPACITY, LSR_F_MAX_RECORD,
    LSR_F_OWNER_UID, LSR_F_RING_ID, LSR_F_CREATED_NS, LSR_F_READY, LSR_F_TAIL, LSR_F_HEAD,
    LSR_F_HIGH_WATER, LSR_F_WRITER_PID, LSR_F_WRITER_START, LSR_F_HEARTBEAT, LSR_F_TOTALS,
    LSR_F_ACTIVE, LSR_NFIELDS
};
typedef struct {
    uint32_t field;       /* LSR_F_* */
    uint32_t _pad;
    uint64_t found;       /* the value found in the segment */
    uint64_t repaired_to; /* the value stored in its place */
} lsr_repair;

/* the writer */
int lsr_writer_acquire(lsr_ring *r);
/* The writer, before each drain: every header field against the others and against what
 * this mapping knows (its geometry, kept at open; the head and totals it released).  An
 * inconsistent field is set right, counted (LSR_C_HEADER_REPAIRS) and described in out[]
 * (up to max entries).  Returns the number of repairs, or LSR_EBADRING when the ring
 * cannot be set right (the writer then replaces it), LSR_EARG if r is not the writer. */
int lsr_check(lsr_ring *r, lsr_repair *out, uint32_t max);
void lsr_writer_release(lsr_ring *r);
void lsr_heartbeat(lsr_ring *r);
int lsr_drain(lsr_ring *r, uint64_t from, lsr_batch *b);
int lsr_recover(lsr_ring *r, uint64_t at, int64_t grace_ns, uint64_t *skip_to, int *reason);
int lsr_release(lsr_ring *r, uint64_t upto, const lsr_totals *delta);
uint64_t lsr_head(const lsr_ring *r);
uint64_t lsr_tail(const lsr_ring *r);
void lsr_stats_read(const lsr_ring *r, lsr_stats *s);
/* the processes of the ring's process table whose last call is at or after since_ns
 * (CLOCK_REALTIME; 0: all), up to max, into out; returns how many */
int lsr_procs_read(const lsr_ring *r, uint64_t since_ns, lsr_proc_stat *out, uint32_t max);
/* name rule slot idx (the writer, at start) and add hits to it */
int lsr_rule_name(lsr_ring *r, uint32_t idx, const char *name);
void lsr_rule_hits(lsr_ring *r, uint32_t idx, uint64_t n);

/* batch formatting: one JSON object per line for the records whose keep[i] is non-zero;
 * the kept records are numbered ("n", right after "seq") first_n, first_n + 1, ... */
int64_t lsr_format_jsonl(const lsr_meta *meta, uint32_t n, const uint8_t *buf,
                         const uint8_t *keep, uint64_t first_n, uint8_t *out, size_t out_cap);
size_t lsr_format_bound(uint32_t n, uint32_t buf_len);
int lsr_json_valid(const uint8_t *s, size_t n);

/* testing and measurement */
/* 0: producers keep no per-process account (no fair share): for measuring its cost */
void lsr_test_accounting(int on);
/* claim len bytes like a producer and fill them with raw bytes, no framing */
int lsr_inject(lsr_ring *r, const uint8_t *bytes, size_t n);
/* 1: stop (SIGSTOP) after the claim CAS, 2: after the claimed word; 0: off */
void lsr_test_pause(int mode);
/* claim+copy+commit+drain+release of n records of `payload` bytes; returns seconds */
double lsr_bench(lsr_ring *r, uint64_t n, uint32_t payload);

#endif
