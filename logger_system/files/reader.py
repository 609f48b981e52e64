"""Reading written log files back, in write order, checking each line.

What may be read is the chain's to say (files/chain.py): `cat`, `cat --follow` and
`verify` all read through `Reading` or `follow` here, so they judge the same way."""
from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import sealed
from ..errors import CorruptRecordError, ConfigError
from ..rotation import LogFile
from . import chain

_REQUIRED = ("seq", "n", "ts", "level", "pid", "logger", "msg")


class IntegrityError(CorruptRecordError):
    """The files break the rules of a sequence (files/chain.py); every fault, one per line."""

    def __init__(self, faults: list[str]) -> None:
        super().__init__("\n".join(faults))
        self.faults = faults


def streams(paths: Iterable[Path]) -> list[list[Path]]:
    """The paths given, as the streams they hold: each directory is a stream of its own (one
    writer's sequence of files, judged by the chain's rules alone), and files given one by one
    are one stream per directory they lie in, in the order given.  Several streams are what
    one writer per group of workers makes; `cat` merges their records by `ts`."""
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        if p.is_dir():
            where = p.resolve()
        elif p.exists():
            where = Path(os.path.abspath(p)).parent.resolve()  # a link to a file stays where it is
        else:
            raise ConfigError(f"{p}: no such file or directory")
        # a directory given with files of it: one stream, holding those files twice (a fault)
        groups.setdefault(where, []).append(p)
    return list(groups.values())


def expand(paths: Iterable[Path], accept_loss: bool = False) -> tuple[list[Path], list[str], Path | None]:
    """Files as given; a directory becomes its log files in write order.  Returns (files,
    faults of the directories' stray `log-*` entries, the directory when one alone was given)."""
    out: list[Path] = []
    faults: list[str] = []
    paths = list(paths)
    for p in paths:
        if p.is_dir():
            files, stray = chain.listing(p, accept_loss)
            out.extend(files)
            faults.extend(stray)
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or directory")
    directory = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    return out, faults, directory


class Reading:
    """One pass over files in write order: the chain's verdict first, then every record of
    every file it lets be read, each line checked (JSON, the record keys, `n` in sequence).
    Faults found while reading (a chunk that does not authenticate, a bad line, a gap in
    `n`) join the verdict's in `faults`; a file with a fault yields nothing more."""

    def __init__(self, paths: Iterable[Path], *, keyring=None, identity=None, accept_loss: bool = False) -> None:
        files, stray, directory = expand(paths, accept_loss)
        self.verdict = chain.judge(files, keyring=keyring, identity=identity, accept_loss=accept_loss,
                                   directory=directory, extra_faults=stray)
        self.faults = list(self.verdict.faults)
        self.numbers = chain.Numbers(accept_loss)
        self.notes = list(self.verdict.notes)
        self.bad: set[Path] = {Path(f.split(": ", 1)[0]) for f in stray}

    def lines(self, query=None) -> Iterator[tuple[chain.Entry, bytes]]:
        """(file, line) for every record line; query (a query.Query): only the lines of records
        it matches, and a file it rules out by time is not read (plaintext) or not decrypted
        (sealed: its place in the chain is still judged)."""
        for e, line, _rec in self.records(query):
            yield e, line

    def records(self, query=None) -> Iterator[tuple[chain.Entry, bytes, dict]]:
        """As lines(), with each line's record decoded."""
        entries = self.verdict.entries
        follows = False
        for i, e in enumerate(entries):
            if not e.ok:
                follows = False
                continue
            newest = i == len(entries) - 1
            if query is not None and query.since_ns is not None and not newest:
                if not query.may_hold(_next_start_ns(e, entries[i + 1])):
                    # not read; a sealed file's chunk headers (authenticated with its header's
                    # digest only when decrypted) still say where its numbers end
                    follows = False
                    continue
            self.numbers.start(e, follows)
            follows = True
            try:
                if e.is_sealed:
                    lineno = 0
                    chunks = sealed.open_chunks(e.load(), e.scan, e.key, str(e.path))
                    for c, chunk in zip(e.scan.chunks, chunks):
                        for line in chunk.splitlines(keepends=True):
                            lineno += 1
                            yield from self._checked(e, line, lineno, False, query)
                        if self.numbers.expect is not None and self.numbers.expect != c.next_n:
                            raise CorruptRecordError(
                                f"{e.path}: chunk {c.index} says the next record is n={c.next_n}, "
                                f"its records end before n={self.numbers.expect}")
                else:
                    with open(e.path, "rb") as f:
                        for lineno, line in enumerate(f, 1):
                            yield from self._checked(e, line, lineno, newest, query)
            except (CorruptRecordError, OSError) as exc:
                self.faults.append(str(exc) if isinstance(exc, CorruptRecordError)
                                   else f"{e.path}: cannot read: {exc.strerror}")
                e.faults.append(self.faults[-1])
                follows = False
        self.faults.extend(self.numbers.faults)
        self.notes.extend(self.numbers.notes)

    def _checked(self, e: chain.Entry, line: bytes, lineno: int, may_be_torn: bool, query):
        rec = check_line(line, e.path, lineno, may_be_torn)
        if rec is None:
            return
        fault = self.numbers.check(rec.get("n"), lineno)
        if fault is not None:
            self.numbers.faults.append(fault)
            e.faults.append(fault)
        if query is None or query.matches(rec):
            yield e, display_line(line), rec


def check_line(line: bytes, path: Path, lineno: int, may_be_torn: bool) -> dict | None:
    """A record line decoded and checked; None for the torn last line of a file being written."""
    if not line.endswith(b"\n"):
        if may_be_torn:
            return None
        raise CorruptRecordError(f"{path}: truncated: line {lineno} has no end")
    try:
        rec = json.loads(line)
    except ValueError:
        raise CorruptRecordError(f"{path}: line {lineno} is not a JSON record") from None
    if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
        raise CorruptRecordError(f"{path}: line {lineno} lacks the record keys")
    return rec


def iter_lines(paths: Iterable[Path], *, keyring=None, identity=None, query=None,
               accept_loss: bool = False) -> Iterator[bytes]:
    """Every record line of the files, checked, in write order, as it may be shown
    (display_line: characters that do not show written as \\uXXXX escapes).  When the
    files break a rule of the sequence, the lines of the files that keep them are
    yielded and then IntegrityError is raised, naming every fault.

    Several streams (see streams()) are each read by the rules alone and merged: the
    record with the earliest `ts` first, each stream's records in their own order."""
    readings = [Reading(group, keyring=keyring, identity=identity, accept_loss=accept_loss)
                for group in streams(paths)]
    if len(readings) == 1:
        for _entry, line in readings[0].lines(query):
            yield line
    else:
        for _ns, line in heapq.merge(*(_stamped(r.records(query)) for r in readings), key=_first):
            yield line
    faults = [f for r in readings for f in r.faults]
    if faults:
        raise IntegrityError(faults)


def _stamped(records: Iterator[tuple[chain.Entry, bytes, dict]]) -> Iterator[tuple[int, bytes]]:
    """(the merge's time for the record in ns, line): its `ts`, or the latest time of the
    records before it in its stream when that is later or its `ts` does not read as a time
    (producers stamp their records, which reach the ring a little out of time order): the
    merge takes each stream's records in their own order."""
    from ..query import record_ns

    last = 0
    for _entry, line, rec in records:
        ns = record_ns(rec.get("ts"))
        if ns is not None and ns > last:
            last = ns
        yield last, line


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


@dataclass
class Verification:
    """What `verify` found: every file read in full, every chunk authenticated."""

    entries: list[chain.Entry]
    faults: list[str]
    notes: list[str]
    still_open: set[Path]  # the newest file of each stream whose writer holds it

    @property
    def files(self) -> int:
        return len(self.entries)

    @property
    def failed(self) -> int:
        return sum(not e.ok for e in self.entries) or (1 if self.faults else 0)

    def report(self) -> list[str]:
        """One line per file: `path: ok`, `path: open`, or each of its faults; faults that
        belong to no file (stray names) first."""
        own = {f for e in self.entries for f in e.faults}
        lines = [f for f in dict.fromkeys(self.faults) if f not in own]
        for e in self.entries:
            if e.faults:
                lines.extend(dict.fromkeys(e.faults))
            else:
                state = "open" if e.path in self.still_open else "ok"
                kind = "" if e.is_sealed else " (plaintext: names, order and record numbers checked)"
                lines.append(f"{e.path}: {state}{kind}")
        return lines


def verify(paths: Iterable[Path], *, keyring=None, identity=None, accept_loss: bool = False) -> Verification:
    """Judge the files by the chain's rules and read every record of them; several streams
    (see streams()) each by the rules alone."""
    entries: list[chain.Entry] = []
    faults: list[str] = []
    notes: list[str] = []
    still_open: set[Path] = set()
    for group in streams(paths):
        reading = Reading(group, keyring=keyring, identity=identity, accept_loss=accept_loss)
        for _ in reading.lines():
            pass
        verdict = reading.verdict
        entries.extend(verdict.entries)
        faults.extend(reading.faults)
        notes.extend(reading.notes)
        if verdict.open_newest and verdict.entries:
            still_open.add(verdict.entries[-1].path)
    return Verification(entries, list(dict.fromkeys(faults)), notes, still_open)


def _next_start_ns(e: chain.Entry, nxt: chain.Entry) -> int | None:
    """When the file after `e` in its sequence was opened, at the latest (ns); None if that
    is not known: then `e` is read.  See logger_system/query.py on why this bounds the
    records of `e`.  Only a later file of the same directory counts; a sealed one by the
    creation time in its header, which has authenticated (the chain judged it)."""
    from ..query import plain_start_ns

    this, other = e.name, nxt.name
    if this is None or other is None or other.index <= this.index or e.path.parent != nxt.path.parent:
        return None
    if not nxt.ok:
        return None
    if not nxt.is_sealed:
        return plain_start_ns(other.stamp)
    return nxt.header.created_ns


def follow(directory: Path, *, keyring=None, identity=None, interval: float = 0.2,
           query=None, on_fault=None, accept_loss: bool = False) -> Iterator[bytes]:
    """Lines of a live directory as they are written: earlier files, then new chunks and files.

    Every pass judges the directory by the same rules as `verify` and `cat`
    (files/chain.py): a file with a fault is not shown, and each fault is passed to
    on_fault (once) as soon as it is seen.  query (a query.Query): only the lines of
    records it matches; a file that a later file shows to be older than its --since is
    passed over unread; once the clock is past its --until (and the margin for records
    still on their way), one more pass over the files, then the end.
    """
    import time

    shown: dict[str, int] = {}  # file -> chunks (sealed) or bytes (plain) already shown
    cache: dict[Path, chain.Entry] = {}  # files examined, by path, while they do not change
    lines_seen: dict[str, int] = {}
    wanted: dict[str, bool] = {}  # files judged by --since once a later file exists
    reported: set[str] = set()
    numbers = chain.Numbers(accept_loss)
    last_shown: str | None = None
    by_time = query is not None and query.since_ns is not None

    def report(faults):
        for f in faults:
            if f not in reported:
                reported.add(f)
                if on_fault is not None:
                    on_fault(f)

    while True:
        last_pass = query is not None and query.over(time.time_ns())
        live = chain.writer_holds(directory)  # asked before reading, as verify does
        files, stray = chain.listing(directory, accept_loss)
        entries = []
        for k, path in enumerate(files):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # removed by retention in between
            known = cache.get(path)
            if known is not None and known.stat_key == (st.st_ino, st.st_size, st.st_mtime_ns):
                entries.append(known)  # unchanged since the last pass: not read again
                continue
            try:
                data = path.read_bytes() if path.suffix == "." + sealed.SUFFIX else None
            except FileNotFoundError:
                continue
            if data is not None and k == len(files) - 1 and live and sealed.header_torn(data):
                continue  # a header still being written
            e = chain.examine(path, keyring=keyring, identity=identity, data=data)
            e.stat_key = (st.st_ino, st.st_size, st.st_mtime_ns)
            cache[path] = e
            entries.append(e)
        for gone in set(cache) - set(files):
            del cache[gone]
        verdict = chain.judge([e.path for e in entries], keyring=keyring, identity=identity,
                              accept_loss=accept_loss, live=live, extra_faults=stray, entries=entries)
        report(verdict.faults)
        for i, e in enumerate(verdict.entries):
            name = e.path.name
            if by_time and name not in wanted and name not in shown and i + 1 < len(entries):
                wanted[name] = query.may_hold(_next_start_ns(e, entries[i + 1]))
            if not e.ok or not wanted.get(name, True):
                continue
            if name not in shown:
                numbers.start(e, follows=last_shown is not None and _consecutive(last_shown, name))
                shown[name], lines_seen[name] = 0, 0
            last_shown = name
            try:
                yield from _follow_file(e, shown, lines_seen, numbers, query)
            except CorruptRecordError as exc:
                report([str(exc)])
                shown[name] = 1 << 62  # nothing more from it
        report(numbers.faults)
        if last_pass:
            return
        time.sleep(interval)


def _consecutive(a: str, b: str) -> bool:
    fa, fb = LogFile.parse(a), LogFile.parse(b)
    return fa is not None and fb is not None and fb.index == fa.index + 1


def _follow_file(e: chain.Entry, shown: dict, lines_seen: dict, numbers: chain.Numbers, query):
    """The lines of `e` not shown yet."""
    name = e.path.name
    numbers._entry = e
    if e.is_sealed:
        seen = shown[name]
        if len(e.scan.chunks) <= seen:
            return
        for k, chunk in enumerate(sealed.open_chunks(e.load(), e.scan, e.key, str(e.path))):
            if k < seen:
                continue
            for line in chunk.splitlines(keepends=True):
                lines_seen[name] += 1
                yield from _follow_line(e, line, lines_seen[name], numbers, query)
            shown[name] = k + 1
        return
    seen = shown[name]
    with open(e.path, "rb") as f:
        f.seek(seen)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines(keepends=True):
        lines_seen[name] += 1
        yield from _follow_line(e, line, lines_seen[name], numbers, query)
    shown[name] = seen + end


def _follow_line(e, line, lineno, numbers, query):
    rec = check_line(line, e.path, lineno, False)
    fault = numbers.check(rec.get("n"), lineno)
    if fault is not None:
        numbers.faults.append(fault)
    if query is None or query.matches(rec):
        yield display_line(line)


def iter_records(paths: Iterable[Path], **keys) -> Iterator[dict]:
    for line in iter_lines(paths, **keys):
        yield json.loads(line)


_UNSAFE = {c: f"\\x{c:02x}" for c in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0))}
_UNSAFE.update({0x2028: "\\u2028", 0x2029: "\\u2029", ord("\\"): "\\\\"})

# Characters that do not show, or that change how the text around them shows: the bidi
# controls (U+202A-E, U+2066-9, U+200E/F, U+061C), zero-width ones (U+200B-D, U+2060-4,
# the BOM U+FEFF, U+180E), the soft hyphen, the other format characters (Unicode Cf), the
# line and paragraph separators, C1 and DEL, and the blank fillers (U+034F, U+115F, U+1160,
# U+3164, U+FFA0).  `user \u202eNIMDA\u202c` must never read as "user ADMIN".
_INVISIBLE = re.compile(
    "[\x7f-\x9f\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]")


def _u(c: str) -> str:
    """c as JSON escapes (a surrogate pair above U+FFFF)."""
    n = ord(c)
    if n > 0xFFFF:
        n -= 0x10000
        return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"
    return f"\\u{n:04x}"


def _shows(c: str) -> bool:
    """True for a character a terminal shows as itself (spaces of any width count)."""
    return (c.isprintable() or unicodedata.category(c) == "Zs") and not _INVISIBLE.match(c)


def _visible(text: str, esc=_u) -> str:
    """text with every character that does not show as itself escaped."""
    if text.isprintable() and not _INVISIBLE.search(text):
        return text
    return "".join(c if _shows(c) else esc(c) for c in text)


def display_line(line: bytes) -> bytes:
    """A JSON record line as it may be shown: the characters that do not show (see _INVISIBLE)
    written as \\uXXXX escapes.  The line decodes to the same record; a line without such
    characters (all ASCII ones, most others) is returned as it is, unchanged."""
    if line.isascii() and b"\x7f" not in line:
        return line
    text = line.decode("utf-8", "surrogateescape")
    if not _INVISIBLE.search(text):
        return line
    # outside its strings a JSON text is ASCII: every such character stands inside a string
    return _INVISIBLE.sub(lambda m: _u(m.group()), text).encode("utf-8", "surrogateescape")


def safe_text(value: object) -> str:
    """Text for a terminal: control characters (C0, DEL, C1, line separators) shown escaped,
    and the characters that do not show as themselves (bidi controls, zero-width ones, other
    format characters) as \\uXXXX.

    A record rendered this way can neither forge a second line nor send an
    escape sequence to the terminal (CWE-117), nor read as other text than it is.
    """
    return _visible(str(value).translate(_UNSAFE), lambda c: f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF
                    else f"\\U{ord(c):08x}")


_BARE = re.compile(r'[^\s="\\]+')
_JSON_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|NaN|-?Infinity")


def _quoted(text: str) -> str:
    """text as a JSON string, every character that does not show escaped."""
    return _visible(json.dumps(text, ensure_ascii=False))


def _bare(text: str) -> bool:
    return bool(_BARE.fullmatch(text)) and text.isprintable() and not _INVISIBLE.search(text)


def _key(key: str) -> str:
    """A field name: as it is when it has no blank, '=', quote, backslash or hidden character;
    else quoted."""
    return key if _bare(key) else _quoted(key)


def _value(value: object) -> str:
    """A field value: a plain string as it is; one with a blank, '=', a quote, a backslash or
    a hidden character, or one that would read as a number, true/false/null, a list or an
    object, quoted; anything else as compact JSON."""
    if isinstance(value, str):
        if not _bare(value) or _JSON_SCALAR.fullmatch(value):
            return _quoted(value)
        if value[0] in "[{":
            try:
                json.loads(value)
                return _quoted(value)
            except ValueError:
                pass
        return value
    return _visible(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def render_text(rec: dict) -> str:
    """One record as one human-readable line: `ts LEVEL logger[pid]: msg key=value ...`.

    Field names and values are quoted (JSON string syntax) when they would not read back as
    themselves, so `user="bob role=admin"` can never pose as two fields; the message is
    quoted when it holds '=' or a quote, so it cannot pose as fields either.
    """
    fields = rec.get("fields") or {}
    extra = "".join(f" {_key(str(k))}={_value(v)}" for k, v in fields.items())
    msg = str(rec.get("msg"))
    msg = _quoted(msg) if ("=" in msg or '"' in msg) else safe_text(msg)
    return (f"{safe_text(rec.get('ts'))} {safe_text(rec.get('level')):<8} {_key(str(rec.get('logger')))}"
            f"[{safe_text(rec.get('pid'))}]: {msg}{extra}")
