/*
 * logger_system ring: claim / commit / drain / release / recovery.
 * The layout and the protocol are described in ring.h; this file keeps them.
 *
 * Invariants this file holds:
 *   - head <= tail, tail - head <= capacity, both only grow.
 *   - Every byte in [head, head + capacity) that is not in [head, tail) is zero.
 *   - A producer holds no lock: its only shared write before copying is the
 *     CAS on tail, and its slot tells the consumer which range it claimed.
 *   - The consumer never follows a length it has not bounds-checked against
 *     the data area and tail, and copies a header out before trusting it.
 */
#define _GNU_SOURCE
#include "ring.h"
#include "lines.h"

#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define ST_FREE 0u
#define ST_CLAIMED 1u
#define ST_COMMITTED 2u
#define ST_PADDING 3u

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ADD_RLX(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() do { } while (0)
#endif

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t capacity;
    uint32_t max_record;
    uint32_t owner_uid;
    uint64_t ring_id;
    uint64_t created_ns;
    uint32_t ready;   /* set last by the creator (release) */
    uint32_t removed; /* set once, after the name was removed */
    uint8_t _pad0[64 - 56];

    uint64_t tail; /* claim cursor: producers CAS it */
    uint8_t _pad1[56];
    uint64_t head; /* release cursor: only the writer stores it */
    uint8_t _pad2[56];
    uint64_t high_water;
    uint8_t _pad3[56];
    uint64_t counters[LSR_NCOUNTERS];

    int32_t writer_pid;
    uint32_t active; /* processes that called recently: only the writer stores it (fair share) */
    uint64_t writer_start;
    uint64_t heartbeat_ns;
    uint8_t _pad5[40];

    /* the writer's totals, double-buffered: totals[gen & 1] is current */
    uint64_t totals_gen;
    uint8_t _pad6[56];
    lsr_totals totals[2];
    lsr_rule_stat rules[LSR_RULES];
} hdr_t;

_Static_assert(sizeof(hdr_t) <= LSR_HEADER_BYTES, "header too large");
_Static_assert(offsetof(hdr_t, tail) == 64 && offsetof(hdr_t, head) == 128 &&
               offsetof(hdr_t, counters) == 256 && offsetof(hdr_t, writer_pid) == 448 &&
               offsetof(hdr_t, totals_gen) == 512 && offsetof(hdr_t, totals) == 576,
               "header layout (tests/test_hostile_header.py and test_fuzz_ring.py store at these)");
_Static_assert(sizeof(lsr_totals) == 128, "totals layout");

typedef struct {
    uint32_t pid; /* 0: free */
    uint32_t tid;
    uint64_t start; /* owner's start time, clock ticks since boot */
    uint32_t gen;   /* odd while pending_pos/len are being rewritten */
    uint32_t proc;  /* 1 + the owner's proc_t index (0: none), for its counts below */
    uint64_t pending_pos;
    uint64_t pending_len;
    /* The owning thread's commits not yet added to its process's entry: it adds them every
     * LSR_FLUSH_RECORDS records or LSR_FLUSH_NS, so that the call needs no atomic add on a
     * line all the process's threads share; readers add these in (lsr_procs_read). */
    uint64_t unflushed;
    uint64_t unflushed_bytes;
    uint64_t flushed_ns;
} slot_t;

_Static_assert(sizeof(slot_t) == LSR_SLOT_BYTES, "slot layout");

/* One producing process.  Its own threads add to it (relaxed atomics); the writer adds to
 * `released` what of its records it released.  held = bytes - released. */
typedef struct {
    uint32_t pid; /* 0: free */
    uint32_t _pad0;
    uint64_t start;
    uint64_t committed;
    uint64_t dropped;
    uint64_t bytes;
    uint64_t released;
    uint64_t last_ns;
    uint64_t over_share;
} proc_t;

_Static_assert(sizeof(proc_t) == LSR_PROC_BYTES, "process entry layout");

typedef struct {
    uint64_t word;
    uint64_t ts_ns;
    uint32_t pid;
    uint32_t tid;
    uint32_t msg_len;
    uint16_t logger_len;
    uint8_t level;
    uint8_t flags;
    uint32_t fields_len;
    uint32_t proc; /* 1 + the producer's proc_t index, 0: none */
} rec_t;

_Static_assert(sizeof(rec_t) == LSR_REC_HEADER, "record header layout");

struct lsr_ring {
    hdr_t *h;
    slot_t *slots;
    proc_t *procs;
    uint8_t *data;
    /* the geometry and identity, copied at open and never read from the segment again */
    uint64_t cap;
    uint64_t mask;
    uint32_t max_rec;
    uint32_t owner_uid;
    uint64_t ring_id;
    uint64_t created_ns;
    size_t map_len;
    /* the writer's own account, kept from lsr_writer_acquire on: what it released */
    int writer;
    int bad;        /* found past repair at acquire: lsr_check says LSR_EBADRING */
    uint64_t whead;
    uint64_t wend;     /* where its last drain ended: tail is never behind it */
    uint64_t bad_beat; /* a heartbeat from the future that lsr_heartbeat replaced, for lsr_check */
    lsr_repair noted[4]; /* fields lsr_release found damaged and overwrote, for lsr_check */
    int nnoted;
    uint64_t wgen;
    lsr_totals wtotals;
    uint32_t pid;   /* this process, refreshed after fork */
    uint64_t start; /* this process's start time */
    int created;
    int stalled;    /* this process's last wait for room timed out (atomic, relaxed) */
    /* this process's entry in the process table: looked up on its first call */
    proc_t *proc;
    uint32_t proc_no; /* 1 + its index, 0: none */
    int proc_looked;  /* 1: looked up (proc may still be NULL: the table was full) */
    uint64_t reserve_at; /* used bytes past which fair share applies: cap - cap / LSR_FAIR_RESERVE */
    /* the writer: bytes of each process's records drained, not yet released */
    uint64_t pend[LSR_PROCS];
    int pending;
    uint32_t wactive;
};

static int g_test_pause;
static int g_accounting = 1;

void lsr_test_accounting(int on) { g_accounting = on != 0; }

void lsr_test_pause(int mode) { g_test_pause = mode; }

/* ---- small helpers ------------------------------------------------------ */

static inline uint64_t align8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static uint64_t now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint16_t word_check(uint64_t len, uint32_t slot, uint32_t state) {
    uint64_t x = (len << 19) ^ ((uint64_t)slot << 3) ^ state ^ 0x6c6f67u;
    x *= 0x9e3779b97f4a7c15ull;
    return (uint16_t)(x >> 48);
}

static inline uint64_t make_word(uint64_t len, uint32_t slot, uint32_t state) {
    return ((uint64_t)word_check(len, slot, state) << 48) | ((uint64_t)(slot & 0xffffu) << 32) |
           ((len >> 3) << 3 & 0xffffffffull) | state;
}

static inline uint32_t w_state(uint64_t w) { return (uint32_t)(w & 7u); }
static inline uint64_t w_len(uint64_t w) { return (w & 0xfffffff8ull); }
static inline uint32_t w_slot(uint64_t w) { return (uint32_t)((w >> 32) & 0xffffu); }
static inline int w_valid(uint64_t w) {
    uint32_t st = w_state(w);
    return st >= ST_CLAIMED && st <= ST_PADDING && w_len(w) >= 8 && w_slot(w) < LSR_SLOTS &&
           (uint16_t)(w >> 48) == word_check(w_len(w), w_slot(w), st);
}

static inline uint64_t *word_at(const lsr_ring *r, uint64_t pos) {
    return (uint64_t *)(r->data + (pos & r->mask));
}

/* start time of a process in clock ticks since boot, and whether it is a zombie */
static int proc_stat(uint32_t pid, uint64_t *start, char *state) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parens */
    if (!p || p[1] != ' ') return -1;
    p += 2;
    *state = *p;
    /* state is field 3; starttime is field 22 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

/* Alive means: the pid exists, is not a zombie, and started when its owner did. */
static int proc_alive(uint32_t pid, uint64_t start) {
    if (pid == 0) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    uint64_t st;
    char state;
    if (proc_stat(pid, &st, &state) != 0) return 0;
    if (state == 'Z' || state == 'X') return 0;
    return st == start;
}

static void self_identity(lsr_ring *r) {
    char state;
    r->pid = (uint32_t)getpid();
    if (proc_stat(r->pid, &r->start, &state) != 0) r->start = 0;
}

static uint64_t random_u64(void) {
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
        close(fd);
    }
    if (v == 0) v = now_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
    return v;
}

/* ---- open / close ------------------------------------------------------- */

static int map_segment(int fd, lsr_ring *r, size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return LSR_ESYS;
    r->h = (hdr_t *)p;
    r->slots = (slot_t *)((uint8_t *)p + LSR_HEADER_BYTES);
    r->procs = (proc_t *)((uint8_t *)p + LSR_PROCS_OFFSET);
    r->data = (uint8_t *)p + LSR_DATA_OFFSET;
    r->map_len = len;
    return LSR_OK;
}

static int init_segment(int fd, lsr_ring *r, uint64_t capacity, uint32_t max_record) {
    size_t len = LSR_DATA_OFFSET + capacity;
    if (ftruncate(fd, (off_t)len) != 0) return LSR_ESYS;
    int rc = map_segment(fd, r, len);
    if (rc) return rc;
    hdr_t *h = r->h; /* ftruncate gave zeroed memory */
    h->version = LSR_VERSION;
    h->header_bytes = LSR_HEADER_BYTES;
    h->capacity = capacity;
    h->max_record = max_record;
    h->owner_uid = (uint32_t)geteuid();
    h->ring_id = random_u64();
    h->created_ns = now_ns(CLOCK_REALTIME);
    for (int i = 0; i < LSR_SLOTS; i++) r->slots[i].pending_pos = LSR_NO_CLAIM;
    h->magic = LSR_MAGIC;
    STORE_REL(&h->ready, 1u);
    return LSR_OK;
}

static int attach_segment(int fd, lsr_ring *r, int allow_foreign, uint32_t max_record, int nowait) {
    struct stat st;
    /* the creator may still be sizing it: wait up to a second (nowait: not at all) */
    const int tries = nowait ? 0 : 1000;
    for (int i = 0;; i++) {
        if (fstat(fd, &st) != 0) return LSR_ESYS;
        if ((size_t)st.st_size >= LSR_DATA_OFFSET + LSR_MIN_CAPACITY) break;
        if (i >= tries) return LSR_EBADRING;
        usleep(1000);
    }
    if (!allow_foreign && (st.st_uid != geteuid() || (st.st_mode & 0022))) return LSR_EPERM;
    int rc = map_segment(fd, r, (size_t)st.st_size);
    if (rc) return rc;
    for (int i = 0; !LOAD_ACQ(&r->h->ready); i++) {
        if (i >= tries) return LSR_EBADRING;
        usleep(1000);
    }
    hdr_t *h = r->h;
    /* The geometry is the mapping's size, not what the header says: a capacity field that
     * disagrees with it, or a max_record out of range, is the writer's to set right. */
    uint64_t cap = (uint64_t)st.st_size - LSR_DATA_OFFSET;
    if (h->magic != LSR_MAGIC || h->version != LSR_VERSION || h->header_bytes != LSR_HEADER_BYTES ||
        cap < LSR_MIN_CAPACITY || cap > LSR_MAX_CAPACITY || (cap & (cap - 1)))
        return LSR_EBADRING;
    uint32_t mr = LOAD_RLX(&h->max_record);
    if (mr < 64 || mr > cap / 4) mr = max_record >= 64 && max_record <= cap / 4 ? max_record : (uint32_t)(cap / 4);
    r->cap = cap;
    r->max_rec = mr;
    return LSR_OK;
}

int lsr_open(const char *name, uint64_t capacity, uint32_t max_record, uint32_t mode, int create,
             int allow_foreign, lsr_ring **out) {
    *out = NULL;
    if (!name || name[0] != '/' || strchr(name + 1, '/') || strlen(name) > 250) return LSR_EARG;
    if (capacity < LSR_MIN_CAPACITY || capacity > LSR_MAX_CAPACITY || (capacity & (capacity - 1)))
        return LSR_EARG;
    if (max_record < 64 || max_record > capacity / 4) return LSR_EARG;
    int nowait = (create & LSR_OPEN_NOWAIT) != 0;
    create &= 1;
    lsr_ring *r = calloc(1, sizeof *r);
    if (!r) return LSR_ESYS;
    int rc, fd = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (create) {
            fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
            if (fd >= 0) {
                if (fchmod(fd, mode & 0777) != 0 ||
                    (rc = init_segment(fd, r, capacity, max_record)) != LSR_OK) {
                    if (fd >= 0) rc = LSR_ESYS;
                    int saved = errno;
                    close(fd);
                    shm_unlink(name);
                    free(r);
                    errno = saved;
                    return rc;
                }
                r->created = 1;
                r->cap = capacity;
                r->max_rec = max_record;
                break;
            }
            if (errno != EEXIST) {
                free(r);
                return LSR_ESYS;
            }
        }
        fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd >= 0) {
            rc = attach_segment(fd, r, allow_foreign, max_record, nowait);
            if (rc != LSR_OK) {
                int saved = errno;
                if (r->h) munmap(r->h, r->map_len);
                close(fd);
                free(r);
                errno = saved;
                return rc;
            }
            break;
        }
        if (errno != ENOENT || !create) {
            free(r);
            return LSR_ESYS;
        }
        /* removed between our two opens: try again */
    }
    if (fd < 0) {
        free(r);
        return LSR_ESYS;
    }
    close(fd);
    r->mask = r->cap - 1;
    r->reserve_at = r->cap - r->cap / LSR_FAIR_RESERVE;
    r->owner_uid = r->h->owner_uid;
    r->ring_id = r->h->ring_id;
    r->created_ns = r->h->created_ns;
    self_identity(r);
    *out = r;
    return LSR_OK;
}

void lsr_close(lsr_ring *r) {
    if (!r) return;
    if (r->h) munmap(r->h, r->map_len);
    free(r);
}

int lsr_unlink(const char *name) { return shm_unlink(name) == 0 ? LSR_OK : LSR_ESYS; }

int lsr_discard(const char *name) {
    if (!name || name[0] != '/' || strchr(name + 1, '/') || strlen(name) > 250) return LSR_EARG;
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) return LSR_ESYS;
    /* the name first, as `ring rm` does: a producer that sees the mark finds a new ring */
    int rc = shm_unlink(name) == 0 ? LSR_OK : LSR_ESYS, saved = errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (size_t)st.st_size >= LSR_HEADER_BYTES) {
        void *p = mmap(NULL, LSR_HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            STORE_REL(&((hdr_t *)p)->removed, 1u);
            munmap(p, LSR_HEADER_BYTES);
        }
    }
    close(fd);
    errno = saved;
    return rc;
}

int lsr_after_fork(lsr_ring *r) {
    self_identity(r);
    r->stalled = 0; /* a new process: it may wait once too */
    r->proc = NULL;  /* and it has an entry of its own */
    r->proc_no = 0;
    r->proc_looked = 0;
    return LSR_OK;
}

int lsr_created(const lsr_ring *r) { return r->created; }

void lsr_mark_removed(lsr_ring *r) { STORE_REL(&r->h->removed, 1u); }

int lsr_removed(const lsr_ring *r) { return (int)LOAD_ACQ(&r->h->removed); }

/* ---- the process table ------------------------------------------------- */

#define LSR_FLUSH_RECORDS 64
#define LSR_FLUSH_NS 100000000ull

/* Add slot s's unflushed commits to the entry of the process `owner` (a slot being given
 * back, or taken over from a dead owner), if that entry is still the owner's. */
static void slot_flush(lsr_ring *r, slot_t *s, uint32_t owner) {
    uint32_t pn = LOAD_RLX(&s->proc);
    uint64_t n = LOAD_RLX(&s->unflushed), b = LOAD_RLX(&s->unflushed_bytes);
    if (n && pn - 1u < LSR_PROCS && LOAD_RLX(&r->procs[pn - 1u].pid) == owner) {
        ADD_RLX(&r->procs[pn - 1u].committed, n);
        ADD_RLX(&r->procs[pn - 1u].bytes, b);
    }
    STORE_RLX(&s->unflushed, 0);
    STORE_RLX(&s->unflushed_bytes, 0);
}

/* Take entry e (its pid already CASed to ours) for this process, its counts from zero. */
static proc_t *proc_take(lsr_ring *r, int i) {
    proc_t *e = &r->procs[i];
    STORE_RLX(&e->start, r->start);
    STORE_RLX(&e->committed, 0);
    STORE_RLX(&e->dropped, 0);
    STORE_RLX(&e->bytes, 0);
    STORE_RLX(&e->released, 0);
    STORE_RLX(&e->over_share, 0);
    STORE_RLX(&e->last_ns, now_ns(CLOCK_REALTIME_COARSE));
    return e;
}

/* This process's entry: the one with its pid and start time (another mapping of this ring
 * in the process made it), else a free one, else the one of a dead process that called
 * least recently.  None when every entry is a live process's: then this process is not
 * accounted (and never refused for its share). */
static proc_t *proc_find(lsr_ring *r) {
    const uint32_t me = r->pid;
    int free_i = -1;
    for (int i = 0; i < LSR_PROCS; i++) {
        uint32_t pid = LOAD_ACQ(&r->procs[i].pid);
        if (pid == me && LOAD_RLX(&r->procs[i].start) == r->start) {
            r->proc_no = (uint32_t)i + 1;
            return &r->procs[i];
        }
        if (pid == 0 && free_i < 0) free_i = i;
    }
    for (int i = free_i < 0 ? LSR_PROCS : free_i; i < LSR_PROCS; i++) {
        uint32_t zero = 0;
        if (LOAD_RLX(&r->procs[i].pid) == 0 &&
            __atomic_compare_exchange_n(&r->procs[i].pid, &zero, me, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            r->proc_no = (uint32_t)i + 1;
            return proc_take(r, i);
        }
    }
    for (;;) {
        int oldest = -1;
        uint32_t owner = 0;
        uint64_t oldest_ns = UINT64_MAX;
        for (int i = 0; i < LSR_PROCS; i++) {
            proc_t *e = &r->procs[i];
            uint32_t pid = LOAD_ACQ(&e->pid);
            uint64_t last = LOAD_RLX(&e->last_ns);
            if (last < oldest_ns && !proc_alive(pid, LOAD_RLX(&e->start))) {
                oldest = i;
                owner = pid;
                oldest_ns = last;
            }
        }
        if (oldest < 0) return NULL;
        if (__atomic_compare_exchange_n(&r->procs[oldest].pid, &owner, me, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            r->proc_no = (uint32_t)oldest + 1;
            return proc_take(r, oldest);
        }
    }
}

/* The entry of the calling process, looked up on its first call; NULL while another of
 * its threads is looking (that call goes unaccounted) or when it has none. */
static inline proc_t *proc_of(lsr_ring *r) {
    int looked = LOAD_ACQ(&r->proc_looked);
    if (looked == 1) return r->proc;
    if (looked != 0 || !g_accounting) return NULL;
    if (!__atomic_compare_exchange_n(&r->proc_looked, &looked, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return NULL;
    r->proc = proc_find(r);
    STORE_REL(&r->proc_looked, 1);
    return r->proc;
}

/* Whether process entry e, adding len bytes, would hold more than its fair share. */
static inline int over_share(const lsr_ring *r, const proc_t *e, uint64_t len) {
    uint32_t active = LOAD_RLX(&r->h->active);
    if (active <= 1) return 0;
    if (active > LSR_PROCS) active = LSR_PROCS;
    uint64_t bytes = LOAD_RLX(&e->bytes), released = LOAD_RLX(&e->released);
    uint64_t held = bytes > released ? bytes - released : 0;
    return held + len > r->cap / active;
}

static void proc_dropped(proc_t *e, int reason) {
    if (!e) return;
    ADD_RLX(&e->dropped, 1);
    if (reason == LSR_C_DROP_OVER_SHARE) ADD_RLX(&e->over_share, 1);
    STORE_RLX(&e->last_ns, now_ns(CLOCK_REALTIME_COARSE));
}

/* ---- producer slots ----------------------------------------------------- */

static void slot_set_pending(slot_t *s, uint64_t pos, uint64_t len) {
    uint32_t g = LOAD_RLX(&s->gen);
    STORE_RLX(&s->gen, g + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    STORE_RLX(&s->pending_len, len);
    STORE_RLX(&s->pending_pos, pos);
    STORE_REL(&s->gen, g + 2);
}

int lsr_slot_acquire(lsr_ring *r) {
    proc_t *e = proc_of(r);
    uint32_t me = r->pid;
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    uint64_t head = LOAD_ACQ(&r->h->head);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < LSR_SLOTS; i++) {
            slot_t *s = &r->slots[i];
            uint32_t owner = LOAD_ACQ(&s->pid);
            if (owner != 0) {
                /* second pass: take over slots of dead processes whose claim is settled */
                if (pass == 0 || proc_alive(owner, LOAD_RLX(&s->start))) continue;
                uint32_t g = LOAD_ACQ(&s->gen);
                uint64_t pos = LOAD_ACQ(&s->pending_pos);
                if ((g & 1u) == 0 && pos != LSR_NO_CLAIM && pos >= head) continue;
            }
            if (__atomic_compare_exchange_n(&s->pid, &owner, me, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED)) {
                if (owner) slot_flush(r, s, owner); /* the dead owner's last commits */
                s->start = r->start;
                s->tid = tid;
                STORE_RLX(&s->proc, e ? r->proc_no : 0u);
                STORE_RLX(&s->unflushed, 0);
                STORE_RLX(&s->unflushed_bytes, 0);
                STORE_RLX(&s->flushed_ns, 0);
                slot_set_pending(s, LSR_NO_CLAIM, 0);
                return i;
            }
        }
    }
    return LSR_ENOSLOT;
}

void lsr_slot_release(lsr_ring *r, int slot) {
    if (slot < 0 || slot >= LSR_SLOTS) return;
    slot_t *s = &r->slots[slot];
    if (LOAD_RLX(&s->pid) != r->pid) return; /* not ours (inherited across fork) */
    slot_flush(r, s, r->pid);
    slot_set_pending(s, LSR_NO_CLAIM, 0);
    STORE_REL(&s->pid, 0u);
}

/* ---- producer write ----------------------------------------------------- */

static int writer_alive(const lsr_ring *r, uint64_t timeout_ns) {
    int32_t pid = LOAD_ACQ(&r->h->writer_pid);
    if (pid <= 0) return 0;
    uint64_t beat = LOAD_ACQ(&r->h->heartbeat_ns);
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    return beat + timeout_ns > now; /* a recent heartbeat */
}

static void backoff(unsigned *spins) {
    unsigned s = (*spins)++;
    if (s < 64) {
        CPU_RELAX();
    } else if (s < 96) {
        sched_yield();
    } else {
        unsigned us = s - 95;
        struct timespec ts = {0, (long)(us < 1000 ? us : 1000) * 1000L};
        nanosleep(&ts, NULL);
    }
}

void lsr_count(lsr_ring *r, int counter, uint64_t n) {
    if (counter >= 0 && counter < LSR_NCOUNTERS) ADD_RLX(&r->h->counters[counter], n);
}

/* Backpressure.  A call that finds the ring full drops at once (LSR_DROP), or
 * waits for room while a writer is alive (LSR_BLOCK), at most timeout_ns.  A
 * wait that times out marks this process stalled: from then on its calls drop
 * at once (counted as LSR_C_DROP_STALLED) instead of waiting again, until one
 * of them finds room, which clears the mark.  So a stopped, stuck or missing
 * writer costs a process at most one timeout, not one per call.  LSR_BLOCK_ASK
 * returns LSR_EWAIT where LSR_BLOCK would start to wait, so that the caller can
 * refuse to wait where waiting is never right (an event loop's thread).
 * Under pressure (see LSR_FAIR_RESERVE) a process over its fair share finds the ring full
 * as well: in drop mode it drops (LSR_C_DROP_OVER_SHARE), in block mode it waits. */
static int write_rec(lsr_ring *r, int slot, uint32_t level, uint32_t flags, const char *msg,
                     size_t msg_len, const char *logger, size_t logger_len, const char *fields,
                     size_t fields_len, int block, int64_t timeout_ns, uint64_t writer_timeout_ns) {
    hdr_t *h = r->h;
    int reason = -1;
    if (slot >= LSR_SLOTS || logger_len > 0xffff || level > 255) return LSR_EARG;
    if (LOAD_RLX(&h->removed)) return LSR_EREMOVED;
    proc_t *e = proc_of(r);
    if (slot < 0) {
        ADD_RLX(&h->counters[LSR_C_DROPPED], 1);
        ADD_RLX(&h->counters[LSR_C_DROP_NO_SLOT], 1);
        proc_dropped(e, LSR_C_DROP_NO_SLOT);
        return LSR_ENOSLOT;
    }
    uint64_t body = (uint64_t)LSR_REC_HEADER + msg_len + logger_len + fields_len;
    if (body > r->max_rec) {
        ADD_RLX(&h->counters[LSR_C_DROPPED], 1);
        proc_dropped(e, -1);
        return LSR_ETOOBIG;
    }
    const uint64_t len = align8(body), cap = r->cap;
    slot_t *s = &r->slots[slot];
    uint64_t tail, head, need, deadline = 0;
    unsigned spins = 0;
    for (;;) {
        tail = LOAD_ACQ(&h->tail);
        head = LOAD_ACQ(&h->head);
        uint64_t to_end = cap - (tail & r->mask);
        need = to_end < len ? to_end + len : len;
        uint64_t used = tail - head + need;
        int over = used <= cap && used > r->reserve_at && e && over_share(r, e, len);
        if (used > cap || over) {
            if (block == LSR_DROP || timeout_ns <= 0) {
                if (over) reason = LSR_C_DROP_OVER_SHARE;
                goto full;
            }
            if (deadline == 0) {
                if (LOAD_RLX(&r->stalled)) {
                    reason = LSR_C_DROP_STALLED;
                    goto full;
                }
                if (!writer_alive(r, writer_timeout_ns)) {
                    reason = LSR_C_DROP_NO_WRITER;
                    goto full;
                }
                if (block == LSR_BLOCK_ASK) {
                    if (LOAD_RLX(&s->pending_pos) != LSR_NO_CLAIM) slot_set_pending(s, LSR_NO_CLAIM, 0);
                    return LSR_EWAIT;
                }
            } else if (!writer_alive(r, writer_timeout_ns)) {
                reason = LSR_C_DROP_NO_WRITER;
                goto full;
            }
            /* a claim intent left by a lost CAS must not hold the consumer while we wait */
            if (LOAD_RLX(&s->pending_pos) != LSR_NO_CLAIM) slot_set_pending(s, LSR_NO_CLAIM, 0);
            uint64_t now = now_ns(CLOCK_MONOTONIC);
            if (deadline == 0) {
                deadline = now + (uint64_t)timeout_ns;
                ADD_RLX(&h->counters[LSR_C_BLOCKED], 1);
            } else if (now >= deadline) {
                STORE_RLX(&r->stalled, 1);
                reason = LSR_C_BLOCK_TIMEOUTS;
                goto full;
            }
            backoff(&spins);
            continue;
        }
        slot_set_pending(s, tail, need);
        if (__atomic_compare_exchange_n(&h->tail, &tail, tail + need, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (g_test_pause == 1) raise(SIGSTOP);
    uint64_t pos = tail;
    if (need != len) {
        uint64_t pad = cap - (tail & r->mask);
        STORE_REL(word_at(r, pos), make_word(pad, (uint32_t)slot, ST_PADDING));
        pos += pad;
    }
    uint8_t *p = r->data + (pos & r->mask);
    rec_t *rec = (rec_t *)p;
    STORE_RLX(&rec->word, make_word(len, (uint32_t)slot, ST_CLAIMED));
    if (g_test_pause == 2) raise(SIGSTOP);
    rec->ts_ns = now_ns(CLOCK_REALTIME);
    rec->pid = r->pid;
    rec->tid = s->tid;
    rec->msg_len = (uint32_t)msg_len;
    rec->logger_len = (uint16_t)logger_len;
    rec->level = (uint8_t)level;
    rec->flags = (uint8_t)flags;
    rec->fields_len = (uint32_t)fields_len;
    rec->proc = e ? r->proc_no : 0;
    uint8_t *q = p + LSR_REC_HEADER;
    memcpy(q, msg, msg_len);
    memcpy(q + msg_len, logger, logger_len);
    memcpy(q + msg_len + logger_len, fields, fields_len);
    STORE_REL(&rec->word, make_word(len, (uint32_t)slot, ST_COMMITTED));
    slot_set_pending(s, LSR_NO_CLAIM, 0);
    ADD_RLX(&h->counters[LSR_C_COMMITTED], 1);
    if (e && LOAD_RLX(&s->proc) == r->proc_no) { /* only this thread writes these three */
        uint64_t n = LOAD_RLX(&s->unflushed) + 1, b = LOAD_RLX(&s->unflushed_bytes) + len;
        if (n >= LSR_FLUSH_RECORDS || rec->ts_ns - LOAD_RLX(&s->flushed_ns) >= LSR_FLUSH_NS) {
            ADD_RLX(&e->committed, n);
            ADD_RLX(&e->bytes, b);
            STORE_RLX(&e->last_ns, rec->ts_ns);
            STORE_RLX(&s->flushed_ns, rec->ts_ns);
            n = b = 0;
        }
        STORE_RLX(&s->unflushed, n);
        STORE_RLX(&s->unflushed_bytes, b);
    }
    if (LOAD_RLX(&r->stalled)) STORE_RLX(&r->stalled, 0); /* there is room again */
    uint64_t used = tail + need - head, hw = LOAD_RLX(&h->high_water);
    while (used > hw &&
           !__atomic_compare_exchange_n(&h->high_water, &hw, used, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    return LSR_OK;
full:
    ADD_RLX(&h->counters[LSR_C_DROPPED], 1);
    if (reason >= 0) ADD_RLX(&h->counters[reason], 1);
    proc_dropped(e, reason);
    if (LOAD_RLX(&s->pending_pos) != LSR_NO_CLAIM) slot_set_pending(s, LSR_NO_CLAIM, 0);
    return LSR_EFULL;
}

int lsr_write(lsr_ring *r, int slot, uint32_t level, uint32_t flags, const char *msg, size_t msg_len,
              const char *logger, size_t logger_len, const char *fields, size_t fields_len, int block,
              int64_t timeout_ns) {
    return write_rec(r, slot, level, flags, msg, msg_len, logger, logger_len, fields, fields_len,
                     block, timeout_ns, LSR_WRITER_TIMEOUT_NS);
}

static uint64_t writer_timeout(const lsr_producer *p) {
    return p->writer_timeout_ns > 0 ? (uint64_t)p->writer_timeout_ns : LSR_WRITER_TIMEOUT_NS;
}

int lsr_emit(const lsr_producer *p, int slot, uint32_t level, uint32_t flags, const char *msg,
             size_t msg_len, const char *fields, size_t fields_len) {
    return write_rec(p->ring, slot, level, flags, msg, msg_len, p->logger, p->logger_len, fields,
                     fields_len, p->block, p->timeout_ns, writer_timeout(p));
}

int lsr_emit_wait(const lsr_producer *p, int slot, uint32_t level, uint32_t flags, const char *msg,
                  size_t msg_len, const char *fields, size_t fields_len) {
    return write_rec(p->ring, slot, level, flags, msg, msg_len, p->logger, p->logger_len, fields,
                     fields_len, LSR_BLOCK, p->timeout_ns, writer_timeout(p));
}

int lsr_inject(lsr_ring *r, const uint8_t *bytes, size_t n) {
    hdr_t *h = r->h;
    if (n == 0 || n % 8 || n > r->cap / 4) return LSR_EARG;
    uint64_t tail = LOAD_ACQ(&h->tail);
    for (;;) {
        uint64_t head = LOAD_ACQ(&h->head);
        if (r->cap - (tail & r->mask) < n || tail - head + n > r->cap) return LSR_EFULL;
        if (__atomic_compare_exchange_n(&h->tail, &tail, tail + n, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            break;
    }
    /* raw bytes with no framing, as a hostile or broken process would leave them */
    memcpy(r->data + (tail & r->mask), bytes, n);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return LSR_OK;
}

/* ---- the writer --------------------------------------------------------- */

static lsr_totals totals_read(const hdr_t *h) {
    lsr_totals t;
    for (;;) {
        uint64_t g = LOAD_ACQ(&h->totals_gen);
        memcpy(&t, (const void *)&h->totals[g & 1], sizeof t);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD_RLX(&h->totals_gen) == g) return t;
    }
}

static void zero_range(lsr_ring *r, uint64_t from, uint64_t to) {
    while (from < to) {
        uint64_t idx = from & r->mask;
        uint64_t n = r->cap - idx;
        if (n > to - from) n = to - from;
        memset(r->data + idx, 0, n);
        from += n;
    }
}

void lsr_heartbeat(lsr_ring *r) {
    uint64_t now = now_ns(CLOCK_MONOTONIC), old = LOAD_RLX(&r->h->heartbeat_ns);
    if (r->writer && old > now + 1000000000ull) r->bad_beat = old; /* reported by lsr_check */
    STORE_REL(&r->h->heartbeat_ns, now);
}

int lsr_writer_acquire(lsr_ring *r) {
    hdr_t *h = r->h;
    int32_t cur = LOAD_ACQ(&h->writer_pid);
    if (cur == (int32_t)r->pid) return LSR_OK;
    if (cur > 0 && proc_alive((uint32_t)cur, LOAD_RLX(&h->writer_start))) return LSR_EEXIST;
    if (!__atomic_compare_exchange_n(&h->writer_pid, &cur, (int32_t)r->pid, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return LSR_EEXIST;
    h->writer_start = r->start;
    /* Where the previous writer stopped.  The published totals come first (lsr_release): a
     * head behind them by at most the capacity is a release not completed, finished here.
     * Any other disagreement is damage: the writer takes what agrees with tail, and
     * lsr_check sets the rest right; when nothing agrees, the ring is replaced. */
    uint64_t gen = LOAD_ACQ(&h->totals_gen);
    lsr_totals t = totals_read(h);
    uint64_t head = LOAD_ACQ(&h->head), tail = LOAD_ACQ(&h->tail);
#define FITS(x) (((x) & 7u) == 0 && (x) <= tail && tail - (x) <= r->cap)
    if (t.head == head && (head & 7u) == 0) {
        r->whead = head; /* tail, if it disagrees, is found again from here */
    } else if (t.head > head && t.head - head <= r->cap && FITS(t.head) && FITS(head)) {
        zero_range(r, head, t.head);
        STORE_REL(&h->head, t.head);
        r->whead = t.head;
    } else if (FITS(t.head)) {
        r->whead = t.head;
    } else if (FITS(head)) {
        r->whead = head;
    } else {
        r->whead = t.head & ~(uint64_t)7u;
        r->bad = 1;
    }
#undef FITS
    r->wend = r->whead;
    /* the active count stays as the last writer left it, until this one counts again */
    uint32_t active = LOAD_RLX(&h->active);
    r->wactive = active <= LSR_PROCS ? active : 0;
    t.head = r->whead;
    r->wtotals = t;
    r->wgen = gen;
    r->writer = 1;
    lsr_heartbeat(r);
    return LSR_OK;
}

void lsr_writer_release(lsr_ring *r) {
    int32_t me = (int32_t)r->pid;
    r->writer = 0;
    __atomic_compare_exchange_n(&r->h->writer_pid, &me, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

uint64_t lsr_head(const lsr_ring *r) { return r->writer ? r->whead : totals_read(r->h).head; }
uint64_t lsr_tail(const lsr_ring *r) { return LOAD_ACQ(&r->h->tail); }

/* ---- the writer's check of the header ----------------------------------- */

typedef struct {
    lsr_ring *r;
    lsr_repair *out;
    uint32_t max;
    int n;
} repairs_t;

static void repaired(repairs_t *rp, uint32_t field, uint64_t found, uint64_t to) {
    if ((uint32_t)rp->n < rp->max) {
        lsr_repair *e = &rp->out[rp->n];
        e->field = field;
        e->_pad = 0;
        e->found = found;
        e->repaired_to = to;
    }
    rp->n++;
    ADD_RLX(&rp->r->h->counters[LSR_C_HEADER_REPAIRS], 1);
}

#define FIX(rp, field, lvalue, want)                                       \
    do {                                                                   \
        __typeof__(lvalue) found_ = LOAD_RLX(&(lvalue));                   \
        __typeof__(lvalue) want_ = (__typeof__(lvalue))(want);             \
        if (found_ != want_) {                                             \
            STORE_REL(&(lvalue), want_);                                   \
            repaired((rp), (field), (uint64_t)found_, (uint64_t)want_);    \
        }                                                                  \
    } while (0)

/* The live claim (a producer's slot intent) that covers pos, within [from, limit): its
 * end, or 0 if none. */
static uint64_t claim_covering(const lsr_ring *r, uint64_t pos, uint64_t limit) {
    uint64_t best = 0;
    for (int i = 0; i < LSR_SLOTS; i++) {
        const slot_t *s = &r->slots[i];
        uint32_t owner = LOAD_ACQ(&s->pid);
        if (owner == 0) continue;
        uint64_t p = LOAD_ACQ(&s->pending_pos), len = LOAD_ACQ(&s->pending_len);
        if (p == LSR_NO_CLAIM || len == 0 || len > r->cap || p > pos || pos - p >= len) continue;
        if (p + len > limit || ((p + len) & 7u)) continue;
        if (!proc_alive(owner, LOAD_RLX(&s->start))) continue;
        if (p + len > best) best = p + len;
    }
    return best;
}

/* The furthest tail the writer can justify from where its drains reached (`from`): over the
 * record words found there (claimed, committed, padding: plausible, within the data area),
 * and over ranges that live producers say they are claiming, never beyond head + capacity. */
static uint64_t justified_tail(const lsr_ring *r, uint64_t from) {
    const uint64_t limit = r->whead + r->cap;
    uint64_t p = from;
    while (p < limit) {
        uint64_t w = LOAD_ACQ(word_at(r, p)), room = r->cap - (p & r->mask);
        if (w != 0 && w_valid(w) && w_len(w) <= room && w_len(w) <= limit - p &&
            (w_state(w) != ST_PADDING || w_len(w) == room)) {
            p += w_len(w);
            continue;
        }
        uint64_t end = claim_covering(r, p, limit); /* a claim in flight: its word not yet stored */
        if (end > p) {
            p = end;
            continue;
        }
        break;
    }
    return p;
}

int lsr_check(lsr_ring *r, lsr_repair *out, uint32_t max) {
    if (!r->writer) return LSR_EARG;
    if (r->bad) return LSR_EBADRING;
    hdr_t *h = r->h;
    repairs_t rp = {r, out, max, 0};
    FIX(&rp, LSR_F_MAGIC, h->magic, LSR_MAGIC);
    FIX(&rp, LSR_F_VERSION, h->version, LSR_VERSION);
    FIX(&rp, LSR_F_HEADER_BYTES, h->header_bytes, LSR_HEADER_BYTES);
    FIX(&rp, LSR_F_CAPACITY, h->capacity, r->cap);
    FIX(&rp, LSR_F_MAX_RECORD, h->max_record, r->max_rec);
    FIX(&rp, LSR_F_OWNER_UID, h->owner_uid, r->owner_uid);
    FIX(&rp, LSR_F_RING_ID, h->ring_id, r->ring_id);
    FIX(&rp, LSR_F_CREATED_NS, h->created_ns, r->created_ns);
    FIX(&rp, LSR_F_READY, h->ready, 1u);
    FIX(&rp, LSR_F_WRITER_PID, h->writer_pid, (int32_t)r->pid);
    FIX(&rp, LSR_F_WRITER_START, h->writer_start, r->start);
    uint64_t now = now_ns(CLOCK_MONOTONIC), beat = LOAD_RLX(&h->heartbeat_ns);
    if (beat > now + 1000000000ull) { /* from the future: a dead writer would look alive */
        STORE_REL(&h->heartbeat_ns, now);
        repaired(&rp, LSR_F_HEARTBEAT, beat, now);
    } else if (r->bad_beat) {
        repaired(&rp, LSR_F_HEARTBEAT, r->bad_beat, beat);
    }
    r->bad_beat = 0;
    for (int i = 0; i < r->nnoted; i++)
        repaired(&rp, r->noted[i].field, r->noted[i].found, r->noted[i].repaired_to);
    r->nnoted = 0;
    /* the totals: exactly what this writer published last */
    uint64_t gen = LOAD_ACQ(&h->totals_gen);
    if (gen != r->wgen || memcmp((const void *)&h->totals[gen & 1], &r->wtotals, sizeof r->wtotals)) {
        uint64_t g = r->wgen + 1;
        memcpy(&h->totals[g & 1], &r->wtotals, sizeof r->wtotals);
        STORE_REL(&h->totals_gen, g);
        r->wgen = g;
        repaired(&rp, LSR_F_TOTALS, gen, g);
    }
    FIX(&rp, LSR_F_HEAD, h->head, r->whead);
    FIX(&rp, LSR_F_ACTIVE, h->active, r->wactive);
    /* tail: producers CAS it forward; anything outside [head, head + capacity], or behind
     * what the writer has drained already, is damage */
    uint64_t tail = LOAD_ACQ(&h->tail), lo = r->wend > r->whead ? r->wend : r->whead;
    while ((tail & 7u) || tail < lo || tail - r->whead > r->cap) {
        uint64_t to = justified_tail(r, lo), found = tail;
        if (__atomic_compare_exchange_n(&h->tail, &tail, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            repaired(&rp, LSR_F_TAIL, found, to);
            tail = to;
            break;
        }
    }
    uint64_t hw = LOAD_RLX(&h->high_water);
    if (hw > r->cap || (hw & 7u)) {
        uint64_t to = tail - r->whead;
        STORE_RLX(&h->high_water, to);
        repaired(&rp, LSR_F_HIGH_WATER, hw, to);
    }
    return rp.n;
}

/* The next position at or after `from` that holds a plausible word or a zero
 * word, or `tail`.  Used to step over bytes that are not a record. */
static uint64_t resync(const lsr_ring *r, uint64_t from, uint64_t tail) {
    for (uint64_t p = from; p < tail; p += 8) {
        uint64_t w = LOAD_ACQ(word_at(r, p));
        if (w == 0) return p;
        if (w_valid(w) && w_len(w) <= r->cap - (p & r->mask) && w_len(w) <= tail - p) return p;
    }
    return tail;
}



int lsr_drain(lsr_ring *r, uint64_t from, lsr_batch *b) {
    const uint64_t tail = LOAD_ACQ(&r->h->tail);
    uint64_t pos = from;
    uint32_t n = 0, blen = 0;
    b->malformed = b->abandoned = 0;
    b->stalled = 0;
    if (r->writer && from == r->whead && r->pending) { /* drained again from head: count afresh */
        memset(r->pend, 0, sizeof r->pend);
        r->pending = 0;
    }
    if (from > tail || tail - from > r->cap) {
        /* the writer's cursor is its own: a tail that disagrees is damage, for lsr_check */
        b->n = b->buf_len = 0;
        b->end = from;
        return r->writer ? LSR_OK : LSR_EARG;
    }
    while (pos < tail && n < b->max_records) {
        uint64_t idx = pos & r->mask, room = r->cap - idx;
        uint64_t w = LOAD_ACQ(word_at(r, pos));
        if (w == 0) {
            b->stalled = 1;
            break;
        }
        uint64_t len = w_len(w);
        uint32_t st = w_state(w);
        if (!w_valid(w) || len > room || len > tail - pos ||
            (st == ST_PADDING && len != room) || (st == ST_COMMITTED && len < LSR_REC_HEADER)) {
            b->malformed++;
            pos = resync(r, pos + 8, tail);
            continue;
        }
        if (st == ST_PADDING) {
            pos += len;
            continue;
        }
        if (st == ST_CLAIMED) {
            b->stalled = 1;
            break;
        }
        rec_t rec;
        memcpy(&rec, r->data + idx, sizeof rec);
        if (r->writer && rec.proc - 1u < LSR_PROCS) { /* its bytes leave the ring at release */
            r->pend[rec.proc - 1u] += len;
            r->pending = 1;
        }
        uint64_t payload = (uint64_t)rec.msg_len + rec.logger_len + rec.fields_len;
        if (rec.msg_len > len || rec.fields_len > len || payload + LSR_REC_HEADER > len ||
            len - (payload + LSR_REC_HEADER) >= 8) {
            b->malformed++;
            pos += len;
            continue;
        }
        if (blen + payload > b->buf_cap) {
            if (n == 0) { /* cannot happen with buf_cap >= max_record; refuse to stall on it */
                b->malformed++;
                pos += len;
                continue;
            }
            break;
        }
        const uint8_t *src = r->data + idx + LSR_REC_HEADER;
        uint8_t *dst = b->buf + blen;
        memcpy(dst, src, payload);
        const uint8_t *fields = dst + rec.msg_len + rec.logger_len;
        if ((rec.fields_len && !lsr_json_valid(fields, rec.fields_len)) ||
            !lsr_utf8_valid(dst + rec.msg_len, rec.logger_len)) {
            b->malformed++;
            pos += len;
            continue;
        }
        lsr_meta *m = &b->meta[n++];
        m->seq = pos;
        m->ts_ns = rec.ts_ns;
        m->pid = rec.pid;
        m->tid = rec.tid;
        m->msg_off = blen;
        m->msg_len = rec.msg_len;
        m->logger_off = blen + rec.msg_len;
        m->logger_len = rec.logger_len;
        m->fields_off = blen + rec.msg_len + rec.logger_len;
        m->fields_len = rec.fields_len;
        m->level = rec.level;
        m->flags = rec.flags;
        blen += (uint32_t)payload;
        pos += len;
    }
    b->n = n;
    b->buf_len = blen;
    b->end = pos;
    if (r->writer && pos > r->wend) r->wend = pos;
    return LSR_OK;
}

/* Called while the drain stays stalled at `at`.  Returns 1 with *skip_to set
 * when the stall can be stepped over (reason 1: abandoned by a dead producer,
 * 2: malformed, no producer claims it), 0 to keep waiting. */
int lsr_recover(lsr_ring *r, uint64_t at, int64_t grace_ns, uint64_t *skip_to, int *reason) {
    (void)grace_ns;
    const uint64_t tail = LOAD_ACQ(&r->h->tail);
    if (at >= tail || tail - at > r->cap) return 0; /* a damaged tail: lsr_check's */
    int best = -1, best_fits = 0;
    uint64_t best_end = 0;
    for (int i = 0; i < LSR_SLOTS; i++) {
        slot_t *s = &r->slots[i];
        uint32_t owner = LOAD_ACQ(&s->pid);
        if (owner == 0) continue;
        uint32_t g = LOAD_ACQ(&s->gen);
        uint64_t pos = LOAD_ACQ(&s->pending_pos), len = LOAD_ACQ(&s->pending_len);
        if (pos == LSR_NO_CLAIM || pos > at || at - pos >= len) continue;
        if (proc_alive(owner, LOAD_RLX(&s->start))) return 0; /* slow or stopped: wait */
        if (g & 1u) continue; /* died rewriting its intent: it claimed nothing */
        if (pos + len > tail || len > r->cap) continue;
        /* Two dead claimants of one position: one of them lost the CAS.  The
         * winner's range ends where the next record (or tail) begins. */
        uint64_t end = pos + len, nw = end < tail ? LOAD_ACQ(word_at(r, end)) : 0;
        int fits = end == tail || w_valid(nw);
        if (best < 0 || (fits && !best_fits)) {
            best = i;
            best_end = end;
            best_fits = fits;
        }
    }
    /* Read the word only now, after the slots: a producer that was slow and
     * has committed since the drain stalled cleared its intent after storing
     * the committed word, so that word is visible here and must be drained,
     * never skipped. */
    uint64_t w = LOAD_ACQ(word_at(r, at));
    if (w != 0) {
        if (!w_valid(w) || w_state(w) != ST_CLAIMED) return 0; /* the drain takes it from here */
        slot_t *s = &r->slots[w_slot(w)];
        uint32_t owner = LOAD_ACQ(&s->pid);
        if (owner != 0 && proc_alive(owner, LOAD_RLX(&s->start))) return 0;
        uint64_t len = w_len(w);
        if (len > r->cap - (at & r->mask) || len > tail - at) return 0;
        uint64_t pos = LOAD_ACQ(&s->pending_pos);
        if (pos != LSR_NO_CLAIM && pos <= at && at - pos < LOAD_ACQ(&s->pending_len))
            slot_set_pending(s, LSR_NO_CLAIM, 0);
        *skip_to = at + len;
        *reason = 1;
        return 1;
    }
    if (best >= 0) {
        slot_set_pending(&r->slots[best], LSR_NO_CLAIM, 0);
        *skip_to = best_end;
        *reason = 1;
        return 1;
    }
    /* Nothing claims this position: bytes that are not a record.  Step over
     * them, zero words included, up to the next plausible word or the first
     * range a producer claims beyond it, whichever comes first. */
    uint64_t limit = tail;
    for (int i = 0; i < LSR_SLOTS; i++) {
        slot_t *s = &r->slots[i];
        if (!LOAD_ACQ(&s->pid)) continue;
        uint64_t pos = LOAD_ACQ(&s->pending_pos);
        if (pos != LSR_NO_CLAIM && pos > at && pos < limit) limit = pos;
    }
    uint64_t p = at + 8;
    for (; p < limit; p += 8) {
        uint64_t pw = LOAD_ACQ(word_at(r, p));
        if (pw && w_valid(pw) && w_len(pw) <= r->cap - (p & r->mask) && w_len(pw) <= tail - p) break;
    }
    *skip_to = p < limit ? p : limit;
    *reason = 2;
    return 1;
}

/* After a release by the writer: each process's bytes that left the ring, once everything
 * drained is released, and how many processes called recently (fair share). */
static void procs_released(lsr_ring *r, uint64_t upto) {
    if (r->pending && upto >= r->wend) {
        for (int i = 0; i < LSR_PROCS; i++)
            if (r->pend[i]) {
                ADD_RLX(&r->procs[i].released, r->pend[i]);
                r->pend[i] = 0;
            }
        r->pending = 0;
    }
    uint64_t now = now_ns(CLOCK_REALTIME_COARSE);
    uint32_t active = 0;
    for (int i = 0; i < LSR_PROCS; i++)
        if (LOAD_RLX(&r->procs[i].pid) && LOAD_RLX(&r->procs[i].last_ns) + LSR_ACTIVE_NS > now) active++;
    r->wactive = active;
    STORE_RLX(&r->h->active, active);
}

int lsr_release(lsr_ring *r, uint64_t upto, const lsr_totals *delta) {
    hdr_t *h = r->h;
    /* The writer's own account, not the segment's: what it released last is where it is. */
    lsr_totals t = r->writer ? r->wtotals : totals_read(h);
    uint64_t from = r->writer ? r->whead : t.head;
    if (upto < from || upto - from > r->cap || (upto & 7u)) return LSR_EARG;
    if (!r->writer && upto > LOAD_ACQ(&h->tail)) return LSR_EARG;
    t.head = upto;
    t.written += delta->written;
    t.malformed += delta->malformed;
    t.abandoned += delta->abandoned;
    t.filtered += delta->filtered;
    t.sanitized += delta->sanitized;
    t.sanitize_dropped += delta->sanitize_dropped;
    t.denied += delta->denied;
    if (upto > from) t.released_ns = now_ns(CLOCK_MONOTONIC);
    if (delta->stream_tag) {
        t.stream_tag = delta->stream_tag;
        t.last_seq = delta->last_seq;
        t.next_n = delta->next_n;
        t.lost_mark = delta->lost_mark;
    }
    /* publish the totals first: a writer killed after this finishes the zeroing on restart */
    if (r->writer) { /* what this store overwrites must be what the writer left: else say so */
        uint64_t hg = LOAD_RLX(&h->totals_gen), hh = LOAD_RLX(&h->head);
        int totals_bad = hg != r->wgen ||
                         memcmp((const void *)&h->totals[hg & 1], &r->wtotals, sizeof r->wtotals);
        if (totals_bad && r->nnoted < 4)
            r->noted[r->nnoted++] = (lsr_repair){LSR_F_TOTALS, 0, hg, r->wgen + 1};
        if (hh != r->whead && r->nnoted < 4)
            r->noted[r->nnoted++] = (lsr_repair){LSR_F_HEAD, 0, hh, upto};
    }
    uint64_t g = r->writer ? r->wgen : LOAD_RLX(&h->totals_gen);
    memcpy(&h->totals[(g + 1) & 1], &t, sizeof t);
    STORE_REL(&h->totals_gen, g + 1);
    if (r->writer) {
        r->wtotals = t;
        r->wgen = g + 1;
        r->whead = upto;
        if (upto > r->wend) r->wend = upto;
    }
    zero_range(r, from, upto);
    STORE_REL(&h->head, upto);
    if (r->writer && upto > from) procs_released(r, upto);
    return LSR_OK;
}

void lsr_stats_read(const lsr_ring *r, lsr_stats *s) {
    const hdr_t *h = r->h;
    memset(s, 0, sizeof *s);
    s->totals = totals_read(h);
    s->tail = LOAD_ACQ(&h->tail);
    s->capacity_bytes = r->cap; /* this mapping's geometry, not the header's word for it */
    uint64_t head = LOAD_ACQ(&h->head);
    s->used_bytes = s->tail > head ? s->tail - head : 0;
    s->high_water_bytes = LOAD_RLX(&h->high_water);
    s->ring_id = h->ring_id;
    s->created_ns = h->created_ns;
    s->max_record = r->max_rec;
    s->owner_uid = h->owner_uid;
    s->writer_pid = LOAD_ACQ(&h->writer_pid);
    s->writer_heartbeat_ns = LOAD_ACQ(&h->heartbeat_ns);
    for (int i = 0; i < LSR_NCOUNTERS; i++) s->counters[i] = LOAD_RLX(&h->counters[i]);
    for (int i = 0; i < LSR_RULES; i++) {
        memcpy(s->rules[i].name, (const void *)h->rules[i].name, LSR_RULE_NAME);
        s->rules[i].name[LSR_RULE_NAME - 1] = 0;
        s->rules[i].hits = LOAD_RLX(&h->rules[i].hits);
    }
    for (int i = 0; i < LSR_SLOTS; i++)
        if (LOAD_RLX(&r->slots[i].pid)) s->live_slots++;
    s->active_procs = LOAD_RLX(&h->active);
}

int lsr_procs_read(const lsr_ring *r, uint64_t since_ns, lsr_proc_stat *out, uint32_t max) {
    /* the commits each thread has not added to its process's entry yet */
    static __thread uint64_t unf[LSR_PROCS], unf_bytes[LSR_PROCS];
    memset(unf, 0, sizeof unf);
    memset(unf_bytes, 0, sizeof unf_bytes);
    for (int i = 0; i < LSR_SLOTS; i++) {
        const slot_t *s = &r->slots[i];
        uint32_t pid = LOAD_ACQ(&s->pid), pn = LOAD_RLX(&s->proc);
        if (pid && pn - 1u < LSR_PROCS && LOAD_RLX(&r->procs[pn - 1u].pid) == pid) {
            unf[pn - 1u] += LOAD_RLX(&s->unflushed);
            unf_bytes[pn - 1u] += LOAD_RLX(&s->unflushed_bytes);
        }
    }
    uint32_t n = 0;
    for (int i = 0; i < LSR_PROCS && n < max; i++) {
        const proc_t *e = &r->procs[i];
        uint32_t pid = LOAD_ACQ(&e->pid);
        uint64_t last = LOAD_RLX(&e->last_ns);
        if (pid == 0 || last < since_ns) continue;
        lsr_proc_stat *o = &out[n++];
        o->pid = pid;
        o->start = LOAD_RLX(&e->start);
        o->alive = (uint32_t)proc_alive(pid, o->start);
        o->committed = LOAD_RLX(&e->committed) + unf[i];
        o->dropped = LOAD_RLX(&e->dropped);
        o->bytes = LOAD_RLX(&e->bytes) + unf_bytes[i];
        uint64_t released = LOAD_RLX(&e->released);
        o->held = o->bytes > released ? o->bytes - released : 0;
        o->last_ns = last;
        o->over_share = LOAD_RLX(&e->over_share);
    }
    return (int)n;
}

int lsr_rule_name(lsr_ring *r, uint32_t idx, const char *name) {
    if (idx >= LSR_RULES) return LSR_EARG;
    lsr_rule_stat *st = &r->h->rules[idx];
    char buf[LSR_RULE_NAME] = {0};
    strncpy(buf, name, LSR_RULE_NAME - 1);
    if (strncmp(st->name, buf, LSR_RULE_NAME) != 0) { /* a different rule now: its count starts over */
        memcpy(st->name, buf, LSR_RULE_NAME);
        STORE_REL(&st->hits, 0);
    }
    return LSR_OK;
}

void lsr_rule_hits(lsr_ring *r, uint32_t idx, uint64_t n) {
    if (idx < LSR_RULES) ADD_RLX(&r->h->rules[idx].hits, n);
}

/* ---- measurement -------------------------------------------------------- */

double lsr_bench(lsr_ring *r, uint64_t n, uint32_t payload) {
    int slot = lsr_slot_acquire(r);
    if (slot < 0) return -1.0;
    char *msg = malloc(payload ? payload : 1);
    memset(msg, 'x', payload);
    uint32_t max_records = 4096;
    lsr_batch b = {0};
    b.meta = calloc(max_records, sizeof(lsr_meta));
    b.buf = malloc(r->cap);
    b.max_records = max_records;
    b.buf_cap = (uint32_t)(r->cap > UINT32_MAX ? UINT32_MAX : r->cap);
    lsr_totals delta = {0};
    uint64_t cursor = lsr_head(r);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    for (uint64_t i = 0; i < n; i++) {
        while (lsr_write(r, slot, 20, 0, msg, payload, "bench", 5, NULL, 0, 0, 0) != LSR_OK) {
            ADD_RLX(&r->h->counters[LSR_C_DROPPED], (uint64_t)-1); /* a retry, not a drop */
            lsr_drain(r, cursor, &b);
            delta.written = b.n;
            lsr_release(r, b.end, &delta);
            cursor = b.end;
        }
        if ((i & 1023) == 1023) {
            lsr_drain(r, cursor, &b);
            delta.written = b.n;
            lsr_release(r, b.end, &delta);
            cursor = b.end;
        }
    }
    do {
        lsr_drain(r, cursor, &b);
        delta.written = b.n;
        lsr_release(r, b.end, &delta);
        cursor = b.end;
    } while (b.n);
    double secs = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    lsr_slot_release(r, slot);
    free(b.meta);
    free(b.buf);
    free(msg);
    return secs;
}
