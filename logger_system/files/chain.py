"""The one set of rules a sequence of log files obeys.

`verify`, `cat`, `cat --follow` and the writer's resume all ask this module;
none has rules of its own.  What makes a sequence valid:

  names      only the two names the writer writes: log-<index>-<stamp>-<ring id>.jsonl
             or .lsx.  Any other `log-*` file in a log directory is a fault (a file
             dropped in under a look-alike name), and so is `<name>.damaged`, a file the
             writer found damaged and moved aside (it is kept for inspection).
  sealed     with --key/--identity, or when any sealed file is present, a plaintext file
             is a fault and never a record source.  A sealed file's header must
             authenticate, name the index its file name says, and belong to the stream
             of the other files; file ids are unique.
  order      indices are unique and consecutive; each sealed file names the file
             before it as its predecessor (id, chunk count, digest of its last chunk,
             and whether it ended with a final chunk or was closed after a crash), so a
             file has at most one successor and nothing can be cut, swapped, forked or
             replayed between two files.  A first file that names a predecessor is the
             start of what retention kept (a note: a local verifier cannot tell
             retention from someone deleting the oldest files).
  the end    the newest file ends with its final chunk, or a live writer holds the
             directory (its lock) and is still writing it.  Anything else is a cut tail.
  losses     a header that records lost records (the writer found records the ring had
             released missing from the files) or a damaged predecessor is a fault until
             an operator accepts it (--accept-loss): then a note.
  numbers    every record's `n` is one more than the one before, across files and
             restarts (`Numbers`).  A gap is a fault, except where a header recorded it
             as a loss (or, in plaintext, at a file boundary, which is how a plaintext
             writer records one) and --accept-loss is given.

What no local check can prove: that the newest records of a directory whose writer host
is compromised are all there (whoever holds the key or the writer's state can rewrite
the tail).  That needs the chain's head off the host.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import sealed
from ..keys import Identity, Keyring
from ..rotation import LogFile

PLAIN, SEALED = "jsonl", sealed.SUFFIX
DAMAGED = ".damaged"


@dataclass
class Entry:
    """One log file as the rules see it: its structure, not its contents (nothing of a
    sealed file's bytes is kept but its header, chunk list and last chunk's digest)."""

    path: Path
    name: LogFile | None
    is_sealed: bool
    scan: sealed.Scan | None = None
    key: bytes | None = None  # the data key, once the header authenticated
    last_digest: bytes = bytes(32)
    problems: list[str] = field(default_factory=list)  # found by examine()
    faults: list[str] = field(default_factory=list)    # examine's and the sequence's (judge)
    # records lost just before this file, as its header says
    lost: int = 0
    stat_key: tuple = ()

    @property
    def ok(self) -> bool:
        return not self.faults

    @property
    def header(self) -> sealed.Header | None:
        return self.scan.header if self.scan is not None else None

    def fault(self, message: str) -> None:
        self.faults.append(f"{self.path}: {message}")

    def load(self) -> bytes:
        """A sealed file's bytes for decrypting: the same file as examined (a file that grew,
        the newest one being written, is read as far as it was examined)."""
        data = self.path.read_bytes()
        assert self.scan is not None
        size = self.scan.chunks[-1].end if self.scan.chunks else len(self.scan.header.raw)
        if len(data) < size or data[:len(self.scan.header.raw)] != self.scan.header.raw:
            raise sealed.SealError(f"{self.path}: changed while it was read")
        data = data[:size]
        again = sealed.scan_chunks(data, str(self.path))
        if [(c.start, c.end, c.nonce) for c in again.chunks] != [(c.start, c.end, c.nonce) for c in self.scan.chunks]:
            raise sealed.SealError(f"{self.path}: changed while it was read")
        return data


@dataclass
class Verdict:
    entries: list[Entry]
    faults: list[str]      # in file order; each names its file
    notes: list[str]
    sealed_mode: bool
    open_newest: bool      # the newest file is still being written by a live writer

    @property
    def ok(self) -> bool:
        return not self.faults

    def sources(self) -> list[Entry]:
        """The files whose records may be read: those with no fault."""
        return [e for e in self.entries if e.ok]


def is_log_name(name: str) -> bool:
    """Whether a directory entry claims to be a log file (and so must be one the writer writes)."""
    return name.startswith("log-")


def log_files(directory: Path, suffix: str | None = None) -> list[LogFile]:
    """The log files in a directory, in write order."""
    found = []
    for name in os.listdir(directory):
        f = LogFile.parse(name)
        if f is not None and (suffix is None or f.suffix == suffix):
            found.append(f)
    return sorted(found)


def writer_holds(directory: Path) -> bool:
    """Whether a live writer holds the directory: writer.lock_dir keeps an exclusive flock on
    the directory itself for as long as the writer runs (the same test as for a file)."""
    return sealed.file_locked(directory)


def listing(directory: Path, accept_loss: bool = False) -> tuple[list[Path], list[str]]:
    """A directory's log files in write order, and a fault for every other `log-*` entry
    (a damaged file the writer moved aside: none once accept_loss, as its successor's
    header, which records the damage, is judged by the same flag)."""
    files: list[tuple[LogFile, Path]] = []
    faults: list[str] = []
    for name in sorted(os.listdir(directory)):
        if not is_log_name(name):
            continue
        f = LogFile.parse(name)
        if f is not None:
            files.append((f, directory / name))
        elif name.endswith(DAMAGED) and LogFile.parse(name[:-len(DAMAGED)]) is not None:
            if accept_loss:
                continue
            faults.append(f"{directory / name}: damaged: the writer found this file damaged and moved "
                          "it aside; its records are not readable (kept for inspection)")
        else:
            faults.append(f"{directory / name}: not a log file the writer writes (the names are "
                          "log-<index>-<time>-<ring id>.jsonl or .lsx): a file dropped in, or renamed")
    files.sort()
    return [p for _, p in files], faults


def examine(path: Path, *, keyring: Keyring | None, identity: Identity | None,
            data: bytes | None = None) -> Entry:
    """Read one file's structure: a sealed file's header (authenticated with the keys given)
    and its chunks, without decrypting them."""
    name = LogFile.parse(path.name)
    is_sealed = path.suffix == "." + SEALED
    entry = Entry(path, name, is_sealed)
    try:
        st = path.stat()
        entry.stat_key = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        pass
    if not is_sealed:
        return entry
    try:
        data = path.read_bytes() if data is None else data
        entry.scan = sealed.scan_chunks(data, str(path))
        entry.last_digest = entry.scan.digest_of_last(data)
        entry.key = sealed.data_key(entry.scan.header, keyring=keyring, identity=identity, where=str(path))
    except sealed.SealError as exc:
        entry.problems.append(str(exc))
        return entry
    except OSError as exc:
        entry.problems.append(f"{path}: cannot read: {exc.strerror}")
        return entry
    h = entry.scan.header
    if name is not None and name.index != h.index:
        entry.problems.append(f"{path}: renamed or swapped: the name says file {name.index}, "
                              f"the sealed header says {h.index}")
    entry.lost = h.lost
    return entry


def judge(paths: list[Path], *, keyring: Keyring | None = None, identity: Identity | None = None,
          accept_loss: bool = False, directory: Path | None = None, live: bool | None = None,
          extra_faults: list[str] = (), entries: list[Entry] | None = None) -> Verdict:
    """Apply the rules to files in write order (a directory's `listing`, or files given).

    live: whether a writer holds the directory (asked before reading: a writer that
    closes the newest file while it is read must not make it look cut); None: ask.
    entries: already examined files (follow keeps them between passes)."""
    if live is None:
        live = writer_holds(directory) if directory is not None else (
            bool(paths) and sealed.file_locked(paths[-1]))
    if entries is None:
        entries = [examine(p, keyring=keyring, identity=identity) for p in paths]
    for e in entries:
        e.faults = list(e.problems)
    faults: list[str] = list(extra_faults)
    notes: list[str] = []
    sealed_mode = keyring is not None or identity is not None or any(e.is_sealed for e in entries)
    for e in entries:
        if sealed_mode and not e.is_sealed:
            e.fault("not sealed: a plaintext file among sealed ones (or read with a key) is never a "
                    "record source")
    _order(entries, notes, sealed_mode)
    if sealed_mode:
        _links(entries, notes, accept_loss)
    open_newest = _end(entries, notes, live, sealed_mode)
    for e in entries:
        faults.extend(e.faults)
    return Verdict(entries, faults, notes, sealed_mode, open_newest)


def _order(entries: list[Entry], notes: list[str], sealed_mode: bool) -> None:
    """Unique, consecutive indices (files given by a path of another name are taken in the
    order given)."""
    named = [e for e in entries if e.name is not None and (e.is_sealed or not sealed_mode)]
    seen: dict[int, Entry] = {}
    for e in named:
        if e.name.index in seen:
            e.fault(f"a second file numbered {e.name.index} (the first is {seen[e.name.index].path.name}): "
                    "a copy, or a replayed file")
        else:
            seen[e.name.index] = e
    prev = None
    for e in named:
        if prev is not None and e.name.index > prev.name.index + 1:
            h = e.header
            if not (h is not None and h.prev_flags & sealed.PREV_DAMAGED
                    and e.name.index == prev.name.index + 2):
                missing = (f"file {prev.name.index + 1}" if e.name.index == prev.name.index + 2
                           else f"files {prev.name.index + 1} to {e.name.index - 1}")
                e.fault(f"{missing} missing before it (removed or renamed)")
        prev = e


def _links(entries: list[Entry], notes: list[str], accept_loss: bool) -> None:
    """Every sealed file names the file before it; one stream; unique ids."""
    sealed_entries = [e for e in entries if e.is_sealed]
    good = [e for e in sealed_entries if e.scan is not None and e.key is not None]
    if not good:
        return
    # the stream is the one most files belong to (ties: the oldest file's): one foreign
    # file, even named as the newest, cannot make the genuine ones look foreign
    counts: dict[bytes, int] = {}
    for e in good:
        counts[e.header.stream_id] = counts.get(e.header.stream_id, 0) + 1
    first = {}
    for i, e in enumerate(good):
        first.setdefault(e.header.stream_id, i)
    stream = max(counts, key=lambda sid: (counts[sid], -first[sid]))
    ids: dict[bytes, Entry] = {}
    before: Entry | None = None
    unknown = False  # the file before could not be read: its successor's link cannot be judged
    for e in sealed_entries:
        if e.scan is None or e.key is None:
            unknown = before is not None or unknown or e is not sealed_entries[0]
            before = None
            continue
        h = e.header
        # a foreign file or a copy is known not to be the file before the next one: that one's
        # link is judged against the last file of the stream (a foreign file in a genuine
        # one's place leaves its successor's predecessor missing)
        if h.stream_id != stream:
            e.fault("not part of this sequence (another writer's file)")
            continue
        if h.file_id in ids:
            e.fault(f"the same file as {ids[h.file_id].path.name} (a copy under another name)")
            continue
        ids[h.file_id] = e
        recorded = {
            sealed.PREV_LOSS: f"{h.lost} record(s) lost just before this file: at a restart the writer "
                              "found records that the ring had released missing from the files (a cut tail)",
            sealed.PREV_DAMAGED: f"file {h.index - 1} was damaged and moved aside by the writer "
                                 "(<its name>.damaged); its records are not readable"}
        for flag, msg in recorded.items():
            if not h.prev_flags & flag:
                continue
            if accept_loss:
                notes.append(f"{e.path}: accepted: {msg}")
            else:
                e.fault(msg + "; once investigated, accept it with --accept-loss")
        if h.prev_flags & sealed.PREV_UNCONFIRMED:
            notes.append(f"{e.path}: the end of the file before it is vouched for by the files alone "
                         "(the ring that fed it was gone at the restart): a tail cut before that restart "
                         "cannot be ruled out locally")
        if before is None and unknown:
            unknown = False
        elif before is None:
            if h.has_prev:
                notes.append(f"{e.path}: the sequence starts here; earlier files were removed (retention, "
                             "or by hand: a local verifier cannot tell which)")
            elif h.index != 1 and e.name is not None and e.name.index != 1:
                notes.append(f"{e.path}: a new sealed sequence starts here")
        elif not h.has_prev or h.prev_id != before.header.file_id:
            if h.has_prev and h.prev_id not in ids:
                e.fault(f"predecessor missing (file id {h.prev_id.hex()[:12]}): a file removed, swapped "
                        f"or forked after {before.path.name}")
            else:
                e.fault(f"its predecessor is not {before.path.name} (a file missing, swapped, forked or "
                        "replayed)")
        elif (h.prev_chunks != len(before.scan.chunks)
              or h.prev_digest != before.last_digest
              or bool(h.prev_flags & sealed.PREV_RECOVERED) == before.scan.final):
            before.fault(f"truncated or replaced: it does not end where {e.path.name} says it did")
        elif h.prev_flags & sealed.PREV_RECOVERED:
            notes.append(f"{before.path}: closed after a writer crash; its end is vouched for by "
                         f"{e.path.name}")
        before = e


def _end(entries: list[Entry], notes: list[str], live: bool, sealed_mode: bool) -> bool:
    """Every sealed file but the newest ends with its final chunk or is vouched for by its
    successor (see _links); the newest ends with its final chunk, or a live writer has it."""
    sealed_entries = [e for e in entries if e.is_sealed and e.scan is not None]
    open_newest = False
    for i, e in enumerate(sealed_entries):
        newest = i == len(sealed_entries) - 1
        s = e.scan
        if s.final:
            if newest and not live:
                notes.append(f"{e.path}: the newest file, closed: that no newer file existed and was "
                             "removed cannot be proven locally (that needs the chain's head off the host)")
            continue
        if not newest:
            nxt = sealed_entries[i + 1]
            vouched = nxt.header is not None and nxt.header.prev_flags & sealed.PREV_RECOVERED
            if s.torn_at is not None:
                e.fault(f"truncated inside chunk {len(s.chunks)}")
            elif not vouched:
                e.fault("truncated: the final chunk is missing")
            continue
        if live:
            open_newest = True
            notes.append(f"{e.path}: open: a writer is still writing it")
        elif s.torn_at is not None:
            e.fault(f"truncated inside chunk {len(s.chunks)} (no writer holds the directory)")
        else:
            e.fault("unfinished: no final chunk and no writer holds the directory: a cut tail, or a "
                    "crashed writer (start the writer to close it)")
    if not sealed_mode and entries:
        open_newest = live
    return open_newest


class Numbers:
    """`n` goes up by one from record to record across a stream's files.

    Fed the files' records in order; `start` is told at each file whether it follows the
    file read before it (a file skipped, e.g. one ruled out by --since, breaks that)."""

    def __init__(self, accept_loss: bool = False) -> None:
        self.accept_loss = accept_loss
        self.expect: int | None = None
        self.faults: list[str] = []
        self.notes: list[str] = []
        self._entry: Entry | None = None
        self._boundary = False

    def start(self, entry: Entry, follows: bool) -> None:
        h = entry.header
        if not follows:
            self.expect = None
        if self.expect is None and h is not None and not h.has_prev and h.index == 1:
            self.expect = 0
        if self.expect is None and not entry.is_sealed and entry.name is not None and entry.name.index == 1:
            self.expect = 0
        self._entry = entry
        self._boundary = True

    def check(self, n: object, lineno: int) -> str | None:
        """A fault for this record's n, or None."""
        entry = self._entry
        where = f"{entry.path}: line {lineno}" if entry is not None else f"line {lineno}"
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return f"{where}: no record number n"
        expect, boundary = self.expect, self._boundary
        self.expect, self._boundary = n + 1, False
        if expect is None or n == expect:
            return None
        if n < expect:
            return f"{where}: record number {n} again or out of order (expected {expect}): a copied or replayed record"
        gap = f"records n={expect}..{n - 1} missing" if n - 1 > expect else f"record n={expect} missing"
        if boundary and entry is not None:
            recorded = entry.header is not None and entry.header.prev_flags & sealed.PREV_LOSS \
                and entry.lost == n - expect
            if recorded:
                return None  # the header's loss, judged (and accepted or not) by the chain
            if not entry.is_sealed and self.accept_loss:
                self.notes.append(f"{where}: accepted: {gap}")
                return None
            if not entry.is_sealed:
                return (f"{where}: {gap} (lost at a writer restart, or removed); once investigated, "
                        "accept it with --accept-loss")
        return f"{where}: {gap} (removed, or lost)"


# ---- the writer's resume: what the files say against what the ring says -------------------

@dataclass
class FilesEnd:
    """Where a directory's files end, as a starting writer reads them (its format's resume)."""

    resume_seq: int | None = None          # the last seq of this writer's ring the files hold
    next_n: int | None = 0                 # the n after the files' last record (None: unreadable)
    last: tuple[int, int] | None = None    # (ring id, seq) of the newest record in the files
    newest: Path | None = None             # the newest file: where a cut tail would be
    crash_closed: bool = False             # the newest file had no final chunk
    damaged: int = 0                       # damaged newest files moved aside
    events: list[tuple[str, dict]] = field(default_factory=list)  # repairs, said on stderr


@dataclass(frozen=True)
class RingEnd:
    """What the ring published at its writer's last release (lsr_totals)."""

    stream_tag: int
    last_seq: int | None
    next_n: int
    lost_mark: int


@dataclass(frozen=True)
class Resume:
    next_n: int                 # where the numbers go on
    lost: int = 0               # records released by the ring, missing from the files: count now
    lost_before: int = 0        # such a loss, counted by a start that then wrote nothing
    lost_mark: int = 0          # published with the next releases, until a record is written
    n_from_ring: bool = False   # the files' numbers unreadable: records skipped move them on
    unknown_loss: bool = False  # released records missing, how many not known
    unconfirmed: bool = False   # a crash-closed file's end that the ring does not confirm
    restarted: bool = False     # no one knows the numbers: they start again at 0


def resume(files: FilesEnd, ring: RingEnd, tag: int, ring_id: int) -> Resume:
    """The rule for a starting writer: the files are vouched for only as far as the ring
    confirms.  Records the ring released past the files' end were written and then cut:
    a loss, counted once (lost_mark), and the numbers go on past them so the gap in `n` is
    exactly where they were."""
    mine = ring.stream_tag == tag
    told = mine and (ring.next_n > 0 or ring.last_seq is not None)
    unconfirmed = files.crash_closed and not told
    if files.next_n is not None:
        if not (mine and ring.next_n > files.next_n):
            return Resume(files.next_n, unconfirmed=unconfirmed)
        mark = files.next_n + 1
        if ring.lost_mark == mark:
            return Resume(ring.next_n, lost_before=ring.next_n - files.next_n, lost_mark=mark,
                          unconfirmed=unconfirmed)
        return Resume(ring.next_n, lost=ring.next_n - files.next_n, lost_mark=mark, unconfirmed=unconfirmed)
    if mine:
        last = files.last
        missing = ring.last_seq is not None and (last is None or last[0] != ring_id or last[1] < ring.last_seq)
        return Resume(ring.next_n, n_from_ring=True, unknown_loss=missing,
                      unconfirmed=files.crash_closed and (missing or not told))
    return Resume(0, unconfirmed=unconfirmed, restarted=files.last is not None)


# ---- chain heads kept off the host -----------------------------------------------------

def check_heads(directory: Path, records) -> tuple[int, list[str]]:
    """The chain heads a receiver kept for this directory (`logger-system serve` writes them
    to DIR/.serve/heads/<client>.jsonl: one JSON object per line, its `head` holding `file`,
    `chunk` and `digest`) against the directory: every head must still be there, the file
    with that id holding that chunk with that SHA-256.  A head that is not is a tail cut or
    rewritten on this host after the receiver saw it.  Returns (heads checked, faults)."""
    import hashlib
    import json

    by_id: dict[str, tuple[Path, bytes]] = {}
    for f in log_files(directory, sealed.SUFFIX):
        path = Path(directory) / f.name
        try:
            data = path.read_bytes()
            file_id = sealed.parse_header(data, str(path)).file_id.hex()
        except (OSError, sealed.SealError):
            continue  # the sequence rules say what is wrong with it
        by_id[file_id] = (path, data)
    checked, faults = 0, []
    for number, line in enumerate(records, 1):
        try:
            obj = json.loads(line)
        except ValueError:
            faults.append(f"heads line {number}: not JSON")
            continue
        head = obj.get("head") if isinstance(obj, dict) else None
        if head is None:
            continue
        file_id, chunk, digest = head.get("file"), head.get("chunk"), head.get("digest")
        if not (isinstance(file_id, str) and type(chunk) is int and chunk >= 0 and isinstance(digest, str)):
            faults.append(f"heads line {number}: not a chain head")
            continue
        checked += 1
        below = f" (records below n {obj['next_n']})" if type(obj.get("next_n")) is int else ""
        found = by_id.get(file_id)
        if found is None:
            faults.append(f"{directory}: the receiver holds chunk {chunk} of file {file_id}{below}, "
                          "and no file here has that id: removed after it was shipped")
            continue
        path, data = found
        try:
            scan = sealed.scan_chunks(data, str(path))
        except sealed.SealError as exc:
            faults.append(f"{path}: {exc}")
            continue
        if chunk >= len(scan.chunks):
            faults.append(f"{path}: the receiver holds chunk {chunk}{below}; this file has "
                          f"{len(scan.chunks)} chunk(s): its tail was cut after it was shipped")
            continue
        c = scan.chunks[chunk]
        if hashlib.sha256(data[c.start:c.end]).hexdigest() != digest:
            faults.append(f"{path}: chunk {chunk}{below} is not the one the receiver holds: "
                          "rewritten after it was shipped")
    return checked, faults
