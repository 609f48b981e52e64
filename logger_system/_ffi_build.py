"""cffi builder for the native ring (API mode, compiled at install time).

Reads top to bottom: where the sources are, compiler flags, set_source, cdef.
The cdef only restates ring.h's public declarations; the logic lives in C.
"""
from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join(os.path.dirname(HERE), "native")

CFLAGS = ["-O3", "-std=gnu11", "-fvisibility=hidden", "-Wall"]
LDFLAGS: list[str] = []
# Opt-in AddressSanitizer + UBSan build for .ci/sanitizers (LOGGER_SYSTEM_SANITIZE=1).
# The interpreter is not instrumented: load the result with LD_PRELOAD=libasan.so.
# Python's own CFLAGS carry -fwrapv, which makes signed overflow defined and turns UBSan's
# check for it off; -fno-wrapv (after them) turns it back on for this build only.
SANITIZE = os.environ.get("LOGGER_SYSTEM_SANITIZE") == "1"
if SANITIZE:
    SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                       "-fno-sanitize-recover=undefined"]
    CFLAGS = [f for f in CFLAGS if f != "-O3"] + SANITIZER_FLAGS + ["-O1", "-g", "-fno-wrapv"]
    LDFLAGS = SANITIZER_FLAGS

ffibuilder = FFI()

# lsr_emit as a builtin method of one lsr_producer, for the producer's hot path: called with
# the vector calling convention (no argument tuple), it reads bytes without cffi's argument
# conversion and keeps the GIL, which is right for a call that never waits: the producers
# pass LSR_BLOCK_ASK or LSR_DROP, so a full ring returns at once (waiting is lsr_emit_wait,
# called through cffi, which releases the GIL).  Its self is (the lsr_producer cdata, its
# address): the cdata stays alive as long as the method does.  METH_FASTCALL is part of the
# stable ABI from 3.10 on; Python.h leaves it out when Py_LIMITED_API has no version.
FAST_EMIT = r"""
#define LSR_METH_FASTCALL 0x0080
static PyObject *lsr_py_emit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    char *msg, *fields = "";
    Py_ssize_t msg_len, fields_len = 0;
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "emit(slot, level, msg[, fields]) takes 3 or 4 arguments");
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(PyTuple_GetItem(self, 1));
    long slot = PyLong_AsLong(args[0]), level = PyLong_AsLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (PyBytes_AsStringAndSize(args[2], &msg, &msg_len) < 0) return NULL;
    if (nargs == 4 && PyBytes_AsStringAndSize(args[3], &fields, &fields_len) < 0) return NULL;
    if (p == NULL) {
        PyErr_SetString(PyExc_ValueError, "emit: no producer");
        return NULL;
    }
    /* out of range: lsr_emit refuses them (LSR_ENOSLOT, LSR_EARG), as through cffi */
    if (slot < -1) slot = -1;
    if (slot > LSR_SLOTS) slot = LSR_SLOTS;
    if (level < 0 || level > 255) level = 256;
    int rc = lsr_emit((const lsr_producer *)p, (int)slot, (uint32_t)level, 0, msg, (size_t)msg_len,
                      fields, (size_t)fields_len);
    return PyLong_FromLong(rc);
}
static PyMethodDef lsr_py_emit_def = {"emit", (PyCFunction)(void (*)(void))lsr_py_emit,
                                      LSR_METH_FASTCALL, "lsr_emit(producer, slot, level, 0, msg, fields)"};
static void *lsr_py_emit_method(void) { return &lsr_py_emit_def; }
"""

# Producer.debug/info/warning/error/critical as builtin methods of one Producer, for the whole
# common call (an exact str message, its % arguments that are not a single dict, no fields,
# a record that fits, a thread that has its slot, a ring with room): format, encode and
# lsr_emit in one C call.  Its self is (the lsr_producer cdata, its address, the level, the
# Producer, the Producer's own Python method for this level).  Every other call goes to
# Python with what the Python method would have had at that point: the Python method itself
# (fields, a msg that is not exactly a str, a single dict argument), Producer._format_failed
# (msg % args raised an Exception), Producer._put (lone surrogates, over the budget, no slot
# yet on this thread) and Producer._refused (lsr_emit returned nonzero).  min_level, _budget
# and _ring._tls.slot are read from the Producer on every call, as the Python method reads
# them.  Only stable-ABI calls; PyUnicode_AsUTF8AndSize is in it from 3.10 (the wheel is
# cp311-abi3), but Python.h declares it only when Py_LIMITED_API names a version.
LEVEL_METHOD = r"""
#define LSR_METH_KEYWORDS 0x0002
#if defined(Py_LIMITED_API) && (Py_LIMITED_API + 0 < 0x030A0000)
PyAPI_FUNC(const char *) PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size);
#endif
static PyObject *lsr_s_min_level, *lsr_s_budget, *lsr_s_ring, *lsr_s_tls, *lsr_s_slot,
                *lsr_s_class, *lsr_s_put, *lsr_s_refused, *lsr_s_format_failed, *lsr_no_bytes, *lsr_zero;

/* the Python method for this level, called as it would have been: (producer, *args, **kwargs) */
static PyObject *lsr_py_general(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, Py_ssize_t nkw) {
    PyObject *func = PyTuple_GetItem(self, 4), *prod = PyTuple_GetItem(self, 3);
    PyObject *t, *kw = NULL, *r;
    if (func == NULL || prod == NULL || (t = PyTuple_New(nargs + 1)) == NULL) return NULL;
    Py_INCREF(prod);
    PyTuple_SetItem(t, 0, prod);
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(t, i + 1, args[i]);
    }
    if (nkw) {
        if ((kw = PyDict_New()) == NULL) goto fail;
        for (Py_ssize_t i = 0; i < nkw; i++)
            if (PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0) goto fail;
    }
    r = PyObject_Call(func, t, kw);
    Py_DECREF(t);
    Py_XDECREF(kw);
    return r;
fail:
    Py_DECREF(t);
    Py_XDECREF(kw);
    return NULL;
}

/* producer._put(level, data, b"", 0), data the first n bytes at buf */
static PyObject *lsr_py_put(PyObject *prod, PyObject *level, const char *buf, Py_ssize_t n) {
    PyObject *data = PyBytes_FromStringAndSize(buf, n), *r;
    if (data == NULL) return NULL;
    r = PyObject_CallMethodObjArgs(prod, lsr_s_put, level, data, lsr_no_bytes, lsr_zero, NULL);
    Py_DECREF(data);
    return r;
}

/* an exact str, int or float: its __class__ is its type, not dict */
static int lsr_plain_arg(PyObject *o) {
    return PyUnicode_CheckExact(o) || PyLong_CheckExact(o) || PyFloat_CheckExact(o);
}

/* msg % args, UTF-8 encoded into out (cap bytes), for a message whose conversions are all
   %s of an exact str or int, %d, %i or %u of an exact int (one that fits in a long long)
   and %%: the bytes PyUnicode_Format's text encodes to, without making that text.  -1 if
   the call is not such a one, or the bytes do not fit (then PyUnicode_Format does it); no
   error is left set.  The UTF-8 of a str that is not ASCII is kept with that str, as
   str.encode() does not. */
#define LSR_FORMAT_CAP 4096
static Py_ssize_t lsr_fast_format(PyObject *msg, PyObject *const *args, Py_ssize_t nargs,
                                  char *out, Py_ssize_t cap) {
    Py_ssize_t mlen, n = 0, used = 0;
    const char *m = PyUnicode_AsUTF8AndSize(msg, &mlen);
    if (m == NULL) goto no;
    for (Py_ssize_t i = 0; i < mlen; i++) {
        char ch = m[i];
        if (ch == '%') {
            if (++i == mlen) return -1;  /* incomplete format */
            ch = m[i];
        } else {
            if (n == cap) return -1;
            out[n++] = ch;
            continue;
        }
        if (ch == '%') {
            if (n == cap) return -1;
            out[n++] = '%';
            continue;
        }
        if (used == nargs) return -1;  /* not enough arguments */
        PyObject *a = args[used++];
        if (ch == 's' && PyUnicode_CheckExact(a)) {
            Py_ssize_t alen;
            const char *s = PyUnicode_AsUTF8AndSize(a, &alen);
            if (s == NULL) goto no;  /* lone surrogates */
            if (alen > cap - n) return -1;
            memcpy(out + n, s, (size_t)alen);
            n += alen;
        } else if ((ch == 's' || ch == 'd' || ch == 'i' || ch == 'u') && PyLong_CheckExact(a)) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(a, &overflow);
            if (overflow || (v == -1 && PyErr_Occurred())) goto no;
            unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            char digits[24];
            int k = 0;
            do {
                digits[k++] = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            if (v < 0) digits[k++] = '-';
            if (k > cap - n) return -1;
            while (k) out[n++] = digits[--k];
        } else {
            return -1;  /* any other conversion, flag, width or argument */
        }
    }
    return used == nargs ? n : -1;  /* else: not all arguments converted */
no:
    PyErr_Clear();
    return -1;
}

static PyObject *lsr_py_level(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *prod = PyTuple_GetItem(self, 3), *levelobj = PyTuple_GetItem(self, 2);
    PyObject *o, *text, *r;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames), n;
    int below;
    if (prod == NULL || levelobj == NULL) return NULL;
    /* if self.min_level > level: return False */
    if ((o = PyObject_GetAttr(prod, lsr_s_min_level)) == NULL) return NULL;
    below = PyObject_RichCompareBool(o, levelobj, Py_GT);
    Py_DECREF(o);
    if (below < 0) return NULL;
    if (below) Py_RETURN_FALSE;
    /* fields, no msg, a msg that is not exactly a str, or a single argument whose
       __class__ is dict: the Python method */
    if (nkw || nargs < 1 || !PyUnicode_CheckExact(args[0]))
        return lsr_py_general(self, args, nargs, kwnames, nkw);
    if (nargs == 2 && !lsr_plain_arg(args[1])) {
        if ((o = PyObject_GetAttr(args[1], lsr_s_class)) == NULL) return NULL;  /* raises there too */
        below = o == (PyObject *)&PyDict_Type;
        Py_DECREF(o);
        if (below) return lsr_py_general(self, args, nargs, kwnames, nkw);
    }
    char formatted[LSR_FORMAT_CAP];
    const char *buf;
    if (nargs > 1 && (n = lsr_fast_format(args[0], args + 1, nargs - 1, formatted, LSR_FORMAT_CAP)) >= 0) {
        text = NULL;
        buf = formatted;
    } else if (nargs > 1) {
        PyObject *fargs = PyTuple_New(nargs - 1);
        if (fargs == NULL) return NULL;
        for (Py_ssize_t i = 1; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SetItem(fargs, i - 1, args[i]);
        }
        text = PyUnicode_Format(args[0], fargs);
        if (text == NULL) {
            /* as `except Exception:` does: anything else goes on up */
            if (PyErr_ExceptionMatches(PyExc_Exception)) {
                PyErr_Clear();
                r = PyObject_CallMethodObjArgs(prod, lsr_s_format_failed, levelobj, args[0], fargs, NULL);
            } else {
                r = NULL;
            }
            Py_DECREF(fargs);
            return r;
        }
        Py_DECREF(fargs);
    } else {
        text = args[0];
        Py_INCREF(text);
    }
    if (text != NULL && (buf = PyUnicode_AsUTF8AndSize(text, &n)) == NULL) {
        r = NULL;
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {  /* lone surrogates */
            PyErr_Clear();
            PyObject *data = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
            if (data != NULL) {
                r = PyObject_CallMethodObjArgs(prod, lsr_s_put, levelobj, data, lsr_no_bytes, lsr_zero, NULL);
                Py_DECREF(data);
            }
        }
        Py_DECREF(text);
        return r;
    }
    /* over the budget: _put cuts it */
    if ((o = PyObject_GetAttr(prod, lsr_s_budget)) == NULL) goto fail;
    long long budget = PyLong_AsLongLong(o);
    Py_DECREF(o);
    if (budget == -1 && PyErr_Occurred()) goto fail;
    if ((long long)n > budget) goto put;
    /* slot = self._ring._tls.slot; AttributeError (none yet on this thread): _put leases one */
    PyObject *slotobj = NULL;
    if ((o = PyObject_GetAttr(prod, lsr_s_ring)) != NULL) {
        PyObject *tls = PyObject_GetAttr(o, lsr_s_tls);
        Py_DECREF(o);
        if (tls != NULL) {
            slotobj = PyObject_GetAttr(tls, lsr_s_slot);
            Py_DECREF(tls);
        }
    }
    if (slotobj == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) goto fail;
        PyErr_Clear();
        goto put;
    }
    /* as lsr_py_emit takes them */
    void *p = PyLong_AsVoidPtr(PyTuple_GetItem(self, 1));
    long slot = PyLong_AsLong(slotobj), level = PyLong_AsLong(levelobj);
    if (PyErr_Occurred()) {
        Py_DECREF(slotobj);
        goto fail;
    }
    if (p == NULL) {
        Py_DECREF(slotobj);
        PyErr_SetString(PyExc_ValueError, "emit: no producer");
        goto fail;
    }
    if (slot < -1) slot = -1;
    if (slot > LSR_SLOTS) slot = LSR_SLOTS;
    if (level < 0 || level > 255) level = 256;
    int rc = lsr_emit((const lsr_producer *)p, (int)slot, (uint32_t)level, 0, buf, (size_t)n, "", 0);
    if (rc == 0) {
        Py_DECREF(slotobj);
        Py_XDECREF(text);
        Py_RETURN_TRUE;
    }
    /* return self._refused(rc, slot, level, data, b"", 0) */
    PyObject *rcobj = PyLong_FromLong(rc), *data = PyBytes_FromStringAndSize(buf, n);
    r = NULL;
    if (rcobj != NULL && data != NULL)
        r = PyObject_CallMethodObjArgs(prod, lsr_s_refused, rcobj, slotobj, levelobj, data, lsr_no_bytes,
                                       lsr_zero, NULL);
    Py_XDECREF(rcobj);
    Py_XDECREF(data);
    Py_DECREF(slotobj);
    Py_XDECREF(text);
    return r;
put:
    r = lsr_py_put(prod, levelobj, buf, n);
    Py_XDECREF(text);
    return r;
fail:
    Py_XDECREF(text);
    return NULL;
}

#define LSR_LEVEL_DEF(name) {name, (PyCFunction)(void (*)(void))lsr_py_level, \
                             LSR_METH_FASTCALL | LSR_METH_KEYWORDS, \
                             "Log msg % args at this level; keyword arguments become fields."}
static PyMethodDef lsr_py_level_defs[] = {LSR_LEVEL_DEF("debug"), LSR_LEVEL_DEF("info"),
                                          LSR_LEVEL_DEF("warning"), LSR_LEVEL_DEF("error"),
                                          LSR_LEVEL_DEF("critical")};

/* the method def for debug (0) ... critical (4); NULL (a Python error set) if the names
   it looks up cannot be made */
static void *lsr_py_level_method(int i) {
    if (i < 0 || i > 4) return NULL;
    if (lsr_zero == NULL) {
        if ((lsr_s_min_level = PyUnicode_InternFromString("min_level")) == NULL
            || (lsr_s_budget = PyUnicode_InternFromString("_budget")) == NULL
            || (lsr_s_ring = PyUnicode_InternFromString("_ring")) == NULL
            || (lsr_s_tls = PyUnicode_InternFromString("_tls")) == NULL
            || (lsr_s_slot = PyUnicode_InternFromString("slot")) == NULL
            || (lsr_s_class = PyUnicode_InternFromString("__class__")) == NULL
            || (lsr_s_put = PyUnicode_InternFromString("_put")) == NULL
            || (lsr_s_refused = PyUnicode_InternFromString("_refused")) == NULL
            || (lsr_s_format_failed = PyUnicode_InternFromString("_format_failed")) == NULL
            || (lsr_no_bytes = PyBytes_FromStringAndSize("", 0)) == NULL
            || (lsr_zero = PyLong_FromLong(0)) == NULL)
            return NULL;
    }
    return &lsr_py_level_defs[i];
}
"""

ffibuilder.set_source(
    "logger_system._lsr_native",
    '#include "ring.h"\n#include "lines.h"\n#include "sanitize.h"\n#include "tokens.h"\nstatic const int LSR_COMPILED_VERSION = LSR_VERSION;\n'
    + FAST_EMIT + LEVEL_METHOD,
    sources=[os.path.relpath(os.path.join(NATIVE, name)) for name in ("ring.c", "lines.c", "sanitize.c", "tokens.c")],
    include_dirs=[os.path.relpath(NATIVE)],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
    libraries=["rt"],
)

ffibuilder.cdef(
    """
    static const int LSR_COMPILED_VERSION;
    #define LSR_SLOTS 1024
    #define LSR_REC_HEADER 40
    #define LSR_MIN_CAPACITY ...
    #define LSR_OK 0
    #define LSR_EFULL -1
    #define LSR_ETOOBIG -2
    #define LSR_ENOSLOT -3
    #define LSR_ESYS -4
    #define LSR_EBADRING -5
    #define LSR_EARG -6
    #define LSR_EEXIST -7
    #define LSR_EPERM -8
    #define LSR_EREMOVED -9
    #define LSR_EWAIT -10
    #define LSR_DROP 0
    #define LSR_BLOCK 1
    #define LSR_BLOCK_ASK 2
    #define LSR_FLAG_TRUNCATED 1
    #define LSR_FLAG_FORMAT_ERROR 2
    enum {
        LSR_C_COMMITTED, LSR_C_DROPPED, LSR_C_TRUNCATED, LSR_C_FORMAT_ERRORS,
        LSR_C_WRITER_ERRORS, LSR_C_BLOCKED, LSR_C_WARNINGS, LSR_C_DROP_STALLED, LSR_C_DROP_IN_LOOP,
        LSR_C_DROP_NO_SLOT, LSR_C_DROP_REMOVED, LSR_C_DROP_NO_WRITER, LSR_C_BLOCK_TIMEOUTS,
        LSR_C_LOST, LSR_C_DAMAGED_FILES, LSR_C_HEADER_REPAIRS, LSR_C_DROP_OVER_SHARE,
        LSR_C_DROP_DAMAGED, LSR_NCOUNTERS = 24
    };
    #define LSR_PROCS 512
    #define LSR_OPEN_NOWAIT 2
    typedef struct {
        uint32_t pid, alive;
        uint64_t start, committed, dropped, bytes, held, last_ns, over_share;
    } lsr_proc_stat;
    typedef struct {
        uint64_t head, written, malformed, abandoned, filtered, sanitized, sanitize_dropped;
        uint64_t denied;
        uint64_t released_ns;
        uint64_t last_seq, next_n, stream_tag, lost_mark;
        uint64_t reserved[3];
    } lsr_totals;
    #define LSR_NO_SEQ ...
    #define LSR_RULES 64
    typedef struct {
        char name[40];
        uint64_t hits;
    } lsr_rule_stat;
    typedef struct {
        uint64_t capacity_bytes, used_bytes, high_water_bytes, tail, ring_id, created_ns;
        uint32_t max_record, live_slots;
        int32_t writer_pid;
        uint32_t owner_uid;
        uint64_t writer_heartbeat_ns;
        uint32_t active_procs, _pad;
        uint64_t counters[24];
        lsr_totals totals;
        lsr_rule_stat rules[64];
    } lsr_stats;
    typedef struct {
        uint64_t seq, ts_ns;
        uint32_t pid, tid, msg_off, msg_len, logger_off, logger_len, fields_off, fields_len;
        uint32_t level, flags;
    } lsr_meta;
    typedef struct {
        lsr_meta *meta;
        uint8_t *buf;
        uint32_t max_records, buf_cap;
        uint32_t n, buf_len;
        uint64_t end, malformed, abandoned;
        int32_t stalled;
    } lsr_batch;
    typedef struct lsr_ring lsr_ring;

    int lsr_open(const char *name, uint64_t capacity, uint32_t max_record,
                 uint32_t mode, int create, int allow_foreign, lsr_ring **out);
    void lsr_close(lsr_ring *r);
    int lsr_unlink(const char *name);
    int lsr_after_fork(lsr_ring *r);
    int lsr_created(const lsr_ring *r);
    void lsr_mark_removed(lsr_ring *r);
    int lsr_removed(const lsr_ring *r);
    int lsr_slot_acquire(lsr_ring *r);
    void lsr_slot_release(lsr_ring *r, int slot);
    int lsr_write(lsr_ring *r, int slot, uint32_t level, uint32_t flags,
                  const char *msg, size_t msg_len, const char *logger, size_t logger_len,
                  const char *fields, size_t fields_len, int block, int64_t timeout_ns);
    void lsr_count(lsr_ring *r, int counter, uint64_t n);
    typedef struct {
        lsr_ring *ring;
        const char *logger;
        uint32_t logger_len;
        int32_t block;
        int64_t timeout_ns;
        int64_t writer_timeout_ns;
    } lsr_producer;
    int lsr_emit(const lsr_producer *p, int slot, uint32_t level, uint32_t flags,
                 const char *msg, size_t msg_len, const char *fields, size_t fields_len);
    int lsr_emit_wait(const lsr_producer *p, int slot, uint32_t level, uint32_t flags,
                      const char *msg, size_t msg_len, const char *fields, size_t fields_len);
    void *lsr_py_emit_method(void);
    void *lsr_py_level_method(int i);
    enum {
        LSR_F_MAGIC, LSR_F_VERSION, LSR_F_HEADER_BYTES, LSR_F_CAPACITY, LSR_F_MAX_RECORD,
        LSR_F_OWNER_UID, LSR_F_RING_ID, LSR_F_CREATED_NS, LSR_F_READY, LSR_F_TAIL, LSR_F_HEAD,
        LSR_F_HIGH_WATER, LSR_F_WRITER_PID, LSR_F_WRITER_START, LSR_F_HEARTBEAT, LSR_F_TOTALS,
        LSR_F_ACTIVE, LSR_NFIELDS
    };
    typedef struct {
        uint32_t field;
        uint32_t _pad;
        uint64_t found;
        uint64_t repaired_to;
    } lsr_repair;
    int lsr_writer_acquire(lsr_ring *r);
    int lsr_check(lsr_ring *r, lsr_repair *out, uint32_t max);
    int lsr_discard(const char *name);
    void lsr_writer_release(lsr_ring *r);
    void lsr_heartbeat(lsr_ring *r);
    int lsr_drain(lsr_ring *r, uint64_t from, lsr_batch *b);
    int lsr_recover(lsr_ring *r, uint64_t at, int64_t grace_ns, uint64_t *skip_to, int *reason);
    int lsr_release(lsr_ring *r, uint64_t upto, const lsr_totals *delta);
    uint64_t lsr_head(const lsr_ring *r);
    uint64_t lsr_tail(const lsr_ring *r);
    void lsr_stats_read(const lsr_ring *r, lsr_stats *s);
    int lsr_procs_read(const lsr_ring *r, uint64_t since_ns, lsr_proc_stat *out, uint32_t max);
    void lsr_test_accounting(int on);
    int lsr_rule_name(lsr_ring *r, uint32_t idx, const char *name);
    void lsr_rule_hits(lsr_ring *r, uint32_t idx, uint64_t n);
    int64_t lsr_format_jsonl(const lsr_meta *meta, uint32_t n, const uint8_t *buf,
                             const uint8_t *keep, uint64_t first_n, uint8_t *out, size_t out_cap);
    size_t lsr_format_bound(uint32_t n, uint32_t buf_len);
    int lsr_json_valid(const uint8_t *s, size_t n);
    #define LSR_LINE_OK 0
    #define LSR_LINE_HOST 1
    #define LSR_LINE_OTHER 2
    int64_t lsr_lines_parse(const uint8_t *s, size_t n, uint64_t first_n, lsr_meta *meta, uint8_t *status,
                            uint32_t max_records, uint8_t *buf, size_t buf_cap, uint64_t *buf_len);
    typedef struct {
        const uint8_t *host_app;
        uint32_t host_app_len;
        uint32_t facility;
        const uint8_t *sd_id;
        uint32_t sd_id_len;
        const uint8_t *fields_sd_id;
        uint32_t fields_sd_id_len;
        uint32_t max_octets;
        uint32_t framed;
    } lsr_syslog_cfg;
    int64_t lsr_syslog_format(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *skip,
                              uint64_t first_n, const lsr_syslog_cfg *cfg, uint8_t *out, size_t out_cap,
                              uint64_t *ends);
    size_t lsr_syslog_bound(uint32_t n, uint32_t buf_len, const lsr_syslog_cfg *cfg);
    int lsr_inject(lsr_ring *r, const uint8_t *bytes, size_t n);
    void lsr_test_pause(int mode);
    double lsr_bench(lsr_ring *r, uint64_t n, uint32_t payload);

    #define LSR_R_FIELD 63
    #define LSR_R_CREDIT_CARD ...
    #define LSR_R_SSN ...
    #define LSR_R_EMAIL ...
    #define LSR_R_IPV4 ...
    #define LSR_R_IPV6 ...
    #define LSR_R_JWT ...
    #define LSR_R_AWS_KEY ...
    #define LSR_R_GITHUB_TOKEN ...
    #define LSR_R_SLACK_TOKEN ...
    #define LSR_R_PRIVATE_KEY ...
    #define LSR_R_PASSWORD ...
    #define LSR_R_BEARER ...
    #define LSR_R_URL_CREDENTIALS ...
    #define LSR_R_STRIPE_KEY ...
    #define LSR_R_GOOGLE_API_KEY ...
    #define LSR_R_GOOGLE_OAUTH ...
    #define LSR_R_OPENAI_KEY ...
    #define LSR_R_ANTHROPIC_KEY ...
    #define LSR_R_SLACK_WEBHOOK ...
    #define LSR_R_GITLAB_TOKEN ...
    #define LSR_R_SENDGRID_KEY ...
    #define LSR_R_NPM_TOKEN ...
    #define LSR_R_PYPI_TOKEN ...
    #define LSR_R_HUGGINGFACE_TOKEN ...
    #define LSR_R_DIGITALOCEAN_TOKEN ...
    #define LSR_R_SHOPIFY_TOKEN ...
    #define LSR_R_TWILIO_KEY ...
    #define LSR_R_MAILGUN_KEY ...
    #define LSR_R_SQUARE_TOKEN ...
    #define LSR_R_DATABRICKS_TOKEN ...
    #define LSR_R_ATLASSIAN_TOKEN ...
    #define LSR_R_POSTMAN_KEY ...
    #define LSR_R_DOPPLER_TOKEN ...
    #define LSR_R_TELEGRAM_BOT_TOKEN ...
    #define LSR_R_DISCORD_TOKEN ...
    #define LSR_R_AZURE_CLIENT_SECRET ...
    #define LSR_R_HEROKU_KEY ...
    #define LSR_R_AGE_SECRET_KEY ...
    #define LSR_R_HASHICORP_TOKEN ...
    #define LSR_R_NBUILTIN ...
    typedef struct {
        uint32_t rec, start, len;
        uint16_t rule;
        uint8_t action, flags;
        uint32_t repl_off, repl_len;
    } lsr_span;
    typedef struct {
        uint64_t enabled;
        uint8_t action[64];
        const uint8_t *field_names;
        uint32_t field_names_len;
    } lsr_san_config;
    int64_t lsr_san_scan(const lsr_meta *meta, uint32_t n, const uint8_t *buf, const uint8_t *keep,
                         const lsr_san_config *cfg, lsr_span *spans, uint32_t max_spans);
    int64_t lsr_san_scan_text(const uint8_t *s, size_t n, const lsr_san_config *cfg,
                              lsr_span *spans, uint32_t max_spans);
    int64_t lsr_san_rewrite(const lsr_meta *meta, uint32_t n, const uint8_t *buf, uint8_t *keep,
                            const lsr_span *spans, uint32_t nspans, const uint8_t *names,
                            const uint32_t *name_off, uint32_t nnames, const uint8_t *repl,
                            lsr_meta *meta_out, uint8_t *out, size_t out_cap);
    size_t lsr_san_bound(uint32_t buf_len, uint32_t nspans);
    size_t lsr_tok_match(const uint8_t *s, size_t n, size_t i, uint64_t enabled, int *rule);
    size_t lsr_tok_scan(const uint8_t *s, size_t n, uint64_t enabled, uint64_t *hits);
    int lsr_tok_maybe(const uint8_t *s, size_t n, size_t i);
    """
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
