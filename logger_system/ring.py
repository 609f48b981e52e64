"""The ring: create or attach a named segment, read its counters.

It knows nothing of the pipeline.  One `Ring` object exists per ring name per
process (see `attach`), so every Producer in a process shares one mapping and
each thread holds one producer slot of it.  After fork(), the child refreshes
its identity and takes new slots: a slot is never shared by two processes.
"""
from __future__ import annotations

import os
import re
import threading
import time
import weakref
from dataclasses import dataclass, field

from ._native import check, ffi, lib
from .errors import ConfigError, RingError

DEFAULT_RING = "logger_system"
DEFAULT_CAPACITY = 32 << 20
DEFAULT_MAX_RECORD = 64 << 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

COUNTERS = ("committed", "dropped", "truncated", "format_errors", "writer_errors", "blocked", "warnings",
            "dropped_stalled", "dropped_in_loop", "dropped_no_slot", "dropped_removed", "dropped_no_writer",
            "block_timeouts", "lost", "damaged_files", "header_repairs", "dropped_over_share",
            "dropped_damaged")
# why records were dropped: each is counted in `dropped` as well (native/ring.h)
DROP_REASONS = ("dropped_stalled", "dropped_in_loop", "dropped_no_slot", "dropped_removed",
                "dropped_no_writer", "dropped_over_share", "dropped_damaged")
# the header fields the writer checks before every drain (lsr_check), by LSR_F_* number
HEADER_FIELDS = ("magic", "version", "header_bytes", "capacity", "max_record", "owner_uid", "ring_id",
                 "created_ns", "ready", "tail", "head", "high_water", "writer_pid", "writer_start",
                 "heartbeat", "totals", "active")
# a thread that found every producer slot taken tries again after this long (s)
_SLOT_RETRY = 0.1
# a process whose ring's name held a damaged segment looks again after this long (s)
_HOLD_RETRY = 0.1
# `producers`: the processes whose last call is at most this old (s)
PRODUCERS_RECENT = 600


def ring_name(ring: str | None) -> str:
    """The ring's name: the argument, else $LOGGER_SYSTEM_RING, else the default."""
    name = ring if ring is not None else os.environ.get("LOGGER_SYSTEM_RING", DEFAULT_RING)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 220 else "(too long)"
        raise ConfigError(
            f"invalid ring name {shown}: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _shm_name(name: str) -> bytes:
    return ("/" + name).encode()


class _SlotLease:
    """A producer slot held by one thread; given back when the thread ends."""

    __slots__ = ("ring", "ptr", "slot", "pid", "__weakref__")

    def __init__(self, ring: "Ring", slot: int) -> None:
        self.ring = ring
        self.ptr = ring._ptr  # the mapping the slot belongs to (a removed ring's stays mapped)
        self.slot = slot
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid() and self.ring._ptr is not None:
            lib.lsr_slot_release(self.ptr, self.slot)


@dataclass(frozen=True)
class RingStats:
    name: str
    capacity_bytes: int
    used_bytes: int
    high_water_bytes: int
    ring_id: int
    max_record: int
    live_slots: int
    writer_pid: int
    writer_heartbeat_ns: int
    committed: int
    dropped: int
    truncated: int
    format_errors: int
    writer_errors: int
    blocked: int
    warnings: int
    dropped_stalled: int
    dropped_in_loop: int
    dropped_no_slot: int
    dropped_removed: int
    dropped_no_writer: int
    block_timeouts: int
    lost: int
    damaged_files: int
    header_repairs: int
    dropped_over_share: int
    dropped_damaged: int
    active_producers: int
    written: int
    malformed: int
    abandoned: int
    filtered: int
    sanitized: int
    sanitize_dropped: int
    denied: int
    released_ns: int
    head: int
    tail: int
    # where the writer's directory stream stood at the last release (see lsr_totals)
    stream_tag: int = 0
    last_seq: int | None = None
    next_n: int = 0
    lost_mark: int = 0
    rule_hits: dict = field(default_factory=dict)

    @property
    def utilization(self) -> float:
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["rule_hits"] = dict(self.rule_hits)
        d["utilization"] = round(self.utilization, 6)
        d["ring_id"] = f"{self.ring_id:016x}"
        d["stream_tag"] = f"{self.stream_tag:016x}"
        d["attempted"] = self.committed + self.dropped + self.abandoned
        # ring full with no other reason: on_full="drop", or a wait that timed out
        d["dropped_full"] = max(0, self.dropped - sum(getattr(self, k) for k in DROP_REASONS))
        d["in_ring"] = max(
            0, self.committed - self.written - self.malformed - self.filtered - self.sanitize_dropped
            - self.denied
        )
        return d


class Ring:
    """A mapping of one named ring in this process."""

    def __init__(self, name: str, *, capacity: int = DEFAULT_CAPACITY,
                 max_record: int | None = None, mode: int = 0o600, create: bool = True,
                 allow_foreign: bool = False) -> None:
        self.name = ring_name(name)
        if max_record is None:
            max_record = min(DEFAULT_MAX_RECORD, capacity // 4)
        if create:  # attaching takes the sizes the ring was made with
            if capacity & (capacity - 1) or not (lib.LSR_MIN_CAPACITY <= capacity <= 1 << 30):
                raise ConfigError(f"ring capacity {capacity} must be a power of two between 64KiB and 1GiB")
            if not 64 <= max_record <= capacity // 4:
                raise ConfigError(f"max_record {max_record} must be between 64 and capacity/4 ({capacity // 4})")
        else:
            capacity, max_record = lib.LSR_MIN_CAPACITY, 64
        out = ffi.new("lsr_ring **")
        check(lib.lsr_open(_shm_name(self.name), capacity, max_record, mode, int(create),
                           int(allow_foreign), out), f"ring {self.name!r}")
        self._ptr = out[0]
        self._mode = mode
        self._allow_foreign = allow_foreign
        self._retired: list = []  # mappings of this name's earlier rings, removed while in use
        self._closed = False
        self.created = bool(lib.lsr_created(self._ptr))
        st = self._raw_stats()
        self.capacity = st.capacity_bytes
        self.max_record = st.max_record
        self.ring_id = st.ring_id
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._producers: weakref.WeakSet = weakref.WeakSet()

    @classmethod
    def for_writer(cls, name: str, *, capacity: int, max_record: int) -> "Ring":
        """The writer's ring: as Ring(), but a segment with this name that is not a ring of
        this version (its magic, version, layout or ready mark damaged) is discarded, as
        `ring rm` would (producers still mapping it move), and a new one made.  The result's
        `discarded` says whether that happened."""
        shm = _shm_name(ring_name(name))
        out = ffi.new("lsr_ring **")
        rc = lib.lsr_open(shm, lib.LSR_MIN_CAPACITY, 64, 0o600, 0, 0, out)
        if rc == 0:
            lib.lsr_close(out[0])
        discarded = rc == lib.LSR_EBADRING and lib.lsr_discard(shm) == 0
        ring = cls(name, capacity=capacity, max_record=max_record)
        ring.discarded = discarded
        return ring

    discarded = False
    _hold = None  # the stand-in mapping while the name holds no usable ring (see `holding`)

    @classmethod
    def holding(cls, name: str, *, capacity: int = DEFAULT_CAPACITY, max_record: int | None = None,
                mode: int = 0o600, allow_foreign: bool = False) -> "Ring":
        """For a producer whose ring's name holds a segment that is not a ring of this version
        (damaged, or made by another version): a Ring that maps a private stand-in, made and
        removed at once, so that every call drops (counted as `dropped_damaged`) until the
        name holds a ring again (a writer replaces a damaged segment when it starts); then
        the Producers move to it, as after `ring rm`, and the drops counted meanwhile are
        added to its counters.  Never the writer's or a reader's: they say what is wrong."""
        if max_record is None:
            max_record = min(DEFAULT_MAX_RECORD, capacity // 4)
        size = lib.LSR_MIN_CAPACITY
        while size < 4 * max_record:
            size <<= 1
        stand_in = f"{ring_name(name)[:180]}.hold.{os.getpid()}.{os.urandom(4).hex()}"
        ring = cls(stand_in, capacity=size, max_record=max_record, mode=0o600)
        lib.lsr_unlink(_shm_name(stand_in))
        lib.lsr_mark_removed(ring._ptr)
        ring.name = ring_name(name)
        ring._mode, ring._allow_foreign = mode, allow_foreign
        ring._requested = (capacity, max_record)
        ring._hold = ring._ptr
        ring._hold_retry = 0.0
        return ring

    def condemn(self) -> None:
        """The writer found this ring past repair: remove its name, if it is still this
        ring's, and mark it removed, so that producers move to a new ring (as after `ring rm`)."""
        shm = _shm_name(self.name)
        out = ffi.new("lsr_ring **")
        if lib.lsr_open(shm, lib.LSR_MIN_CAPACITY, 64, 0o600, 0, 1, out) == 0:
            same = _same_segment(out[0], self._ptr)
            lib.lsr_close(out[0])
            if same:
                lib.lsr_unlink(shm)
        elif ffi.errno != 2:
            lib.lsr_discard(shm)  # the name holds no ring of this version either
        lib.lsr_mark_removed(self.ptr)

    def discard_name(self) -> bool:
        """The name still leads to this ring although it is marked removed (a removed mark
        that no `ring rm` set): remove the name, finishing the removal.  Whether it did."""
        shm = _shm_name(self.name)
        out = ffi.new("lsr_ring **")
        if lib.lsr_open(shm, lib.LSR_MIN_CAPACITY, 64, 0o600, 0, 1, out) != 0:
            return False
        same = _same_segment(out[0], self._ptr)
        lib.lsr_close(out[0])
        return same and lib.lsr_unlink(shm) == 0

    @property
    def ptr(self):
        if self._closed:
            raise RingError(f"ring {self.name!r} is closed")
        return self._ptr

    def slot(self) -> int:
        """This thread's producer slot, acquired on first use; -1 while none is free.

        The slot number is kept in the thread-local beside its lease so that
        the hot path reads one attribute.  When every slot is taken the thread
        gets -1, which lsr_write drops and counts (`dropped_no_slot`) without
        raising; `retry_slot` lets it look again a little later.
        """
        lease = getattr(self._tls, "lease", None)
        if lease is None:
            rc = lib.lsr_slot_acquire(self.ptr)
            if rc == lib.LSR_ENOSLOT:
                self._tls.slot = -1
                self._tls.retry_at = time.monotonic() + _SLOT_RETRY
                return -1
            lease = _SlotLease(self, check(rc, f"ring {self.name!r}"))
            self._tls.lease = lease
            self._tls.slot = lease.slot
        return lease.slot

    def retry_slot(self) -> None:
        """After a call found no slot: look for one again on the next call, if it is time."""
        if getattr(self._tls, "lease", None) is None and time.monotonic() >= getattr(self._tls, "retry_at", 0):
            self._tls.__dict__.pop("slot", None)

    @property
    def segment_path(self) -> str:
        """Where the ring's shared-memory segment is (Linux: /dev/shm/<name>)."""
        return "/dev/shm" + _shm_name(self.name).decode()

    @property
    def segment_mode(self) -> int | None:
        """The permission bits of the segment the name holds now (None if it is gone); read
        from the file, so a chmod after creation shows."""
        try:
            return os.stat(self.segment_path).st_mode & 0o777
        except OSError:
            return None

    @property
    def removed(self) -> bool:
        """Whether this ring's name was removed (`ring rm`) while it was mapped here."""
        return bool(lib.lsr_removed(self.ptr))

    def follow(self, seen) -> bool:
        """After `ring rm`: map the ring that has this name now (made, with this ring's
        sizes, if there is none) in place of the removed one, `seen`.

        Producers move to it on their next call (Producer._put_moved); the removed
        mapping stays until this Ring is freed, for calls still using it.  False if
        there is no other ring to go to: then the caller's record is dropped, counted
        here (in `seen`) under the lock, so that none is missed when a hold's drops are
        carried over to the ring that comes.
        """
        with self._lock:
            if self._closed:
                return False
            if self._ptr != seen:
                return True  # another thread has moved already
            hold = seen == self._hold
            if not self._move(seen, hold):
                lib.lsr_count(seen, lib.LSR_C_DROPPED, 1)
                lib.lsr_count(seen, lib.LSR_C_DROP_DAMAGED if hold else lib.LSR_C_DROP_REMOVED, 1)
                return False
            return True

    def _move(self, seen, hold: bool) -> bool:
        flags = 1
        if hold:  # no wait for a segment being made, and not on every call
            now = time.monotonic()
            if now < self._hold_retry:
                return False
            self._hold_retry = now + _HOLD_RETRY
            flags |= lib.LSR_OPEN_NOWAIT
        capacity, max_record = self._requested if hold else (self.capacity, self.max_record)
        out = ffi.new("lsr_ring **")
        if lib.lsr_open(_shm_name(self.name), capacity, max_record, self._mode, flags,
                        int(self._allow_foreign), out) != 0:
            return False
        if lib.lsr_removed(out[0]):  # the same ring again: its name is not gone yet
            lib.lsr_close(out[0])
            return False
        if hold:  # what was dropped while there was no ring, in the ring's own counts
            held = ffi.new("lsr_stats *")
            lib.lsr_stats_read(seen, held)
            for counter in (lib.LSR_C_DROPPED, lib.LSR_C_DROP_DAMAGED):
                lib.lsr_count(out[0], counter, held.counters[counter])
            self._hold = None
        self._retired.append(self._ptr)
        self._ptr = out[0]
        self.created = bool(lib.lsr_created(self._ptr))
        st = self._raw_stats()
        self.capacity, self.max_record, self.ring_id = st.capacity_bytes, st.max_record, st.ring_id
        self._tls = threading.local()  # every thread leases a slot in the new ring
        return True

    def _after_fork_in_child(self) -> None:
        if self._ptr is not None:
            lib.lsr_after_fork(self._ptr)
        self._tls = threading.local()

    def _raw_stats(self):
        s = ffi.new("lsr_stats *")
        lib.lsr_stats_read(self.ptr, s)
        return s

    def stats(self) -> RingStats:
        s = self._raw_stats()
        c, t = s.counters, s.totals
        return RingStats(
            name=self.name, capacity_bytes=s.capacity_bytes, used_bytes=s.used_bytes,
            high_water_bytes=s.high_water_bytes, ring_id=s.ring_id, max_record=s.max_record,
            live_slots=s.live_slots, writer_pid=s.writer_pid,
            writer_heartbeat_ns=s.writer_heartbeat_ns,
            committed=c[0], dropped=c[1], truncated=c[2], format_errors=c[3], writer_errors=c[4],
            blocked=c[5], warnings=c[6], dropped_stalled=c[7], dropped_in_loop=c[8],
            dropped_no_slot=c[9], dropped_removed=c[10], dropped_no_writer=c[11], block_timeouts=c[12],
            lost=c[lib.LSR_C_LOST], damaged_files=c[lib.LSR_C_DAMAGED_FILES],
            header_repairs=c[lib.LSR_C_HEADER_REPAIRS], dropped_over_share=c[lib.LSR_C_DROP_OVER_SHARE],
            dropped_damaged=c[lib.LSR_C_DROP_DAMAGED], active_producers=s.active_procs,
            written=t.written, malformed=t.malformed, abandoned=t.abandoned,
            filtered=t.filtered, sanitized=t.sanitized, sanitize_dropped=t.sanitize_dropped,
            denied=t.denied, released_ns=t.released_ns,
            head=t.head, tail=s.tail, stream_tag=t.stream_tag,
            last_seq=None if t.last_seq == lib.LSR_NO_SEQ or not t.stream_tag else t.last_seq, next_n=t.next_n,
            lost_mark=t.lost_mark if t.stream_tag else 0,
            rule_hits={ffi.string(r.name).decode(errors="replace"): r.hits for r in s.rules if r.name[0] != b"\0"},
        )

    def report(self) -> dict:
        """What `stats --json` prints and the metrics endpoint exports: the counters
        (RingStats.as_dict), the segment's mode, and the producers that called recently."""
        d = self.stats().as_dict()
        mode = self.segment_mode
        d["mode"] = None if mode is None else f"{mode:04o}"
        d["open_to_others"] = bool(mode is not None and mode & 0o066)
        d["producers"] = self.producers()
        return d

    def producers(self, recent: float = PRODUCERS_RECENT) -> list[dict]:
        """The processes that called within `recent` seconds, most bytes first: per process
        `pid`, `committed`, `dropped`, `bytes` (of its committed records), `held` (of those,
        bytes still in the ring), `dropped_over_share`, `alive`, `last_call` (Unix time).
        What each process counted of itself: a process sharing the user can write anything."""
        since = max(0, time.time_ns() - int(recent * 1e9))
        out = ffi.new("lsr_proc_stat[]", lib.LSR_PROCS)
        n = lib.lsr_procs_read(self.ptr, since, out, lib.LSR_PROCS)
        rows = [{"pid": e.pid, "committed": e.committed, "dropped": e.dropped, "bytes": e.bytes,
                 "held": e.held, "dropped_over_share": e.over_share, "alive": bool(e.alive),
                 "last_call": round(e.last_ns / 1e9, 3)} for e in out[0:n]]
        rows.sort(key=lambda r: (-r["bytes"], -r["committed"] - r["dropped"], r["pid"]))
        return rows

    def name_rules(self, names: list[str]) -> None:
        """The writer names the ring's per-rule hit counters (in this order)."""
        for i, name in enumerate(names):
            check(lib.lsr_rule_name(self.ptr, i, name.encode()), "name rule counter")

    def count_rule_hits(self, hits) -> None:
        for i, n in enumerate(hits):
            if n:
                lib.lsr_rule_hits(self.ptr, i, int(n))

    def count(self, counter: str, n: int = 1) -> None:
        lib.lsr_count(self.ptr, COUNTERS.index(counter), n)

    def close(self) -> None:
        """Stop every Producer of this ring in this process and unmap it.

        Producers still referenced only stop (their calls return False); the
        mapping is freed when the last of them is gone, so a call racing with
        close() never touches unmapped memory.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lease = getattr(self._tls, "lease", None)
            if lease is not None:
                lib.lsr_slot_release(lease.ptr, lease.slot)
                self._tls = threading.local()
            if _registry.get(self.name) is self:
                _registry.pop(self.name, None)
            producers = list(self._producers)
            for p in producers:
                p.close()
            if not producers:
                self._free()

    def _free(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.lsr_close(ptr)
        retired, self._retired = self._retired, []
        for old in retired:
            lib.lsr_close(old)

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            self._free()

    def unlink(self) -> None:
        """Remove the segment's name; mappings that exist stay valid."""
        unlink(self.name)


def unlink(name: str) -> bool:
    """Remove a ring by name; False if there was none.

    The ring is then marked removed, so that processes that still have it mapped
    move to the ring that has the name next (producers on their next call, the
    writer once it has drained this one) instead of logging into a ring nothing
    can reach.  The name goes first: a process that sees the mark and opens the
    name again finds a new ring.
    """
    shm = _shm_name(ring_name(name))
    out = ffi.new("lsr_ring **")
    mapped = lib.lsr_open(shm, lib.LSR_MIN_CAPACITY, 64, 0o600, 0, 1, out) == 0
    try:
        rc = lib.lsr_unlink(shm)
        if rc < 0:
            if ffi.errno == 2:
                return False
            check(rc, f"remove ring {name!r}")
        if mapped:
            lib.lsr_mark_removed(out[0])
        try:  # what its writer published beside it (ship/shipper.py)
            os.unlink("/dev/shm" + _shm_name(ring_name(name)).decode() + ".ship")
        except OSError:
            pass
        return True
    finally:
        if mapped:
            lib.lsr_close(out[0])


def _same_segment(a, b) -> bool:
    """Whether two mappings are of one segment: a mark stored through one is seen in the other."""
    sa, sb = ffi.new("lsr_stats *"), ffi.new("lsr_stats *")
    lib.lsr_stats_read(a, sa)
    lib.lsr_stats_read(b, sb)
    return sa.ring_id == sb.ring_id and sa.created_ns == sb.created_ns


def writer_attached(name: str, pid: int) -> bool:
    """Whether the process `pid` is the writer of ring `name` right now."""
    try:
        ring = Ring(name, create=False)
    except (RingError, ConfigError):
        return False
    try:
        return ring.stats().writer_pid == pid
    finally:
        ring.close()


_registry: "weakref.WeakValueDictionary[str, Ring]" = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def attach(name: str | None = None, **options) -> Ring:
    """The process-wide Ring for a name, opening (or creating) it once."""
    name = ring_name(name)
    with _registry_lock:
        ring = _registry.get(name)
        if ring is None or ring._closed:
            try:
                ring = Ring(name, **options)
            except RingError as exc:
                if exc.code != lib.LSR_EBADRING:
                    raise
                ring = Ring.holding(name, **options)
            _registry[name] = ring
        return ring


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for ring in list(_registry.values()):
        ring._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Consumer:
    """The writer's side of a ring: it holds the ring's one writer place, drains committed
    records in batches, releases what it has written (the totals and where its stream
    stands move together with head), and steps over what a dead producer left.  With Ring,
    the only code outside _native.py that calls the ring's C functions."""

    def __init__(self, ring: Ring, records: int, nbytes: int) -> None:
        check(lib.lsr_writer_acquire(ring.ptr), f"ring {ring.name!r}")
        self.ring = ring
        self._meta = ffi.new("lsr_meta[]", records)
        self._buf = ffi.new("uint8_t[]", nbytes)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = self._meta, self._buf, records, nbytes
        self._b = b
        self._released = False
        self._repairs = ffi.new("lsr_repair[]", 32)
        # what the header held when the writer came: said with the first drain
        self._found = self.check()

    def head(self) -> int:
        return lib.lsr_head(self.ring.ptr)

    def heartbeat(self) -> None:
        lib.lsr_heartbeat(self.ring.ptr)

    def check(self) -> list[tuple[str, int, int]] | None:
        """Every header field against the others and against what this writer knows (lsr_check):
        the fields set right, as (field, found, repaired_to), or None if the ring is past repair
        (then replace it: Ring.condemn and the move that follows)."""
        found, self._found = getattr(self, "_found", []), []
        rc = lib.lsr_check(self.ring.ptr, self._repairs, 32)
        if rc == lib.LSR_EBADRING or found is None:
            self.stop_draining()
            return None
        check(rc, "check")
        rs = self._repairs
        return found + [(HEADER_FIELDS[rs[i].field] if rs[i].field < len(HEADER_FIELDS) else str(rs[i].field),
                         rs[i].found, rs[i].repaired_to) for i in range(min(rc, 32))]

    def stop_draining(self) -> None:
        """The ring is being replaced: no claim in flight holds the writer here any more."""
        self._b.stalled = 0

    def drain(self, cursor: int):
        """The committed records from cursor: (meta, buf, end, malformed, abandoned), meta a
        numpy view of the batch's META_DTYPE records and buf their bytes, both valid until
        the next drain.  `stalled` then says whether a claim in flight stopped it."""
        import numpy as np

        from .record import META_DTYPE

        b = self._b
        check(lib.lsr_drain(self.ring.ptr, cursor, b), "drain")
        n = b.n
        meta = (np.frombuffer(ffi.buffer(self._meta, n * META_DTYPE.itemsize), META_DTYPE) if n
                else np.empty(0, META_DTYPE))
        return meta, ffi.buffer(self._buf, b.buf_len), b.end, b.malformed, b.abandoned

    @property
    def stalled(self) -> bool:
        return bool(self._b.stalled)

    def release(self, upto: int, totals, *, stream_tag: int, last_seq: int | None, next_n: int,
                lost_mark: int) -> None:
        """Release up to `upto`, adding totals (an object with the lsr_totals counts: written,
        malformed, abandoned, filtered, sanitized, sanitize_dropped, denied) and publishing
        where the writer's stream stands."""
        d = ffi.new("lsr_totals *")
        d.written, d.malformed, d.abandoned = totals.written, totals.malformed, totals.abandoned
        d.filtered, d.sanitized, d.sanitize_dropped = totals.filtered, totals.sanitized, totals.sanitize_dropped
        d.denied = totals.denied
        d.stream_tag = stream_tag
        d.last_seq = lib.LSR_NO_SEQ if last_seq is None else last_seq
        d.next_n = next_n
        d.lost_mark = lost_mark
        check(lib.lsr_release(self.ring.ptr, upto, d), "release")

    def recover(self, cursor: int) -> tuple[int, str] | None:
        """Step over a dead producer's claim or garbage at cursor: (where to go on, "abandoned"
        or "malformed"), or None if nothing there can be stepped over."""
        skip_to = ffi.new("uint64_t *")
        reason = ffi.new("int *")
        if lib.lsr_recover(self.ring.ptr, cursor, 0, skip_to, reason) != 1:
            return None
        return skip_to[0], "abandoned" if reason[0] == 1 else "malformed"

    def close(self) -> None:
        """Give up the writer place (the ring itself stays open)."""
        if not self._released and not self.ring._closed:
            lib.lsr_writer_release(self.ring.ptr)
        self._released = True
