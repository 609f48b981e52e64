"""Reading written log files back, in write order, checking each line."""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import CorruptRecordError, ConfigError
from .rotation import LogFile

_REQUIRED = ("seq", "ts", "level", "pid", "logger", "msg")


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories become their log files in write order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            files = sorted(f for f in (LogFile.parse(n.name) for n in p.iterdir()) if f is not None)
            out.extend(p / f.name for f in files)
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or directory")
    return out


def iter_lines(paths: Iterable[Path], *, keyring=None, identity=None, query=None) -> Iterator[bytes]:
    """Every record line of the files, checked, in write order, as it may be shown
    (display_line: characters that do not show written as \\uXXXX escapes).

    Sealed files (.lsx) are decrypted and authenticated chunk by chunk with the
    keyring or identity given.  The last file may still be written: a final
    line without its newline, or a chunk not yet complete, is left out.  In
    any other file that is damage and raises CorruptRecordError.

    query (a query.Query): only the lines of records it matches; a file it rules
    out by time is not read (plaintext) or not decrypted (sealed: its structure
    and its place in the chain are still checked).
    """
    from . import sealed

    files = expand(paths)
    for i, path in enumerate(files):
        last_file = i == len(files) - 1
        wanted = True
        if query is not None and query.since_ns is not None and not last_file:
            wanted = query.may_hold(_next_start_ns(path, files[i + 1], keyring, identity))
        if path.suffix == "." + sealed.SUFFIX:
            successor = files[i + 1] if not last_file and files[i + 1].suffix == path.suffix else None
            yield from _sealed_lines(path, last_file, keyring, identity, successor, query, wanted)
            continue
        if not wanted:
            continue
        with open(path, "rb") as f:
            yield from _checked(f, path, last_file, query)


def _next_start_ns(path: Path, nxt: Path, keyring, identity) -> int | None:
    """When the file after `path` in its sequence was opened, at the latest (ns); None if
    that is not known: then `path` is read.  See logger_system/query.py on why this bounds
    the records of `path`.  Only a later file of the same directory counts; a sealed one
    by the creation time in its header, once the header authenticates."""
    from . import sealed
    from .query import plain_start_ns

    this, other = LogFile.parse(path.name), LogFile.parse(nxt.name)
    if this is None or other is None or other.index <= this.index or path.parent != nxt.parent:
        return None
    if nxt.suffix != "." + sealed.SUFFIX:
        return plain_start_ns(other.stamp)
    try:
        with open(nxt, "rb") as f:
            header = sealed.parse_header(f.read(1 << 16), str(nxt))
        sealed.data_key(header, keyring=keyring, identity=identity, where=str(nxt))
    except (OSError, sealed.SealError):
        return None  # read in full; the checks of the chain say what is wrong, if anything
    return header.created_ns


def _sealed_lines(path: Path, last_file: bool, keyring, identity, successor: Path | None,
                  query=None, wanted: bool = True) -> Iterator[bytes]:
    """A sealed file's lines; it must end where the next file's header says it did.

    Not wanted (query rules it out by time): it is checked the same way, with its
    successor, but its chunks are not decrypted and it yields nothing."""
    from . import sealed

    data = path.read_bytes()
    scan = sealed.scan_chunks(data, str(path))
    if scan.torn_at is not None and not last_file:
        raise sealed.SealError(f"{path}: truncated inside chunk {len(scan.chunks)}")
    key = sealed.data_key(scan.header, keyring=keyring, identity=identity, where=str(path))
    if successor is not None:
        with open(successor, "rb") as f:
            nxt = sealed.parse_header(f.read(1 << 16), str(successor))
        # its header must authenticate before its word on this file counts
        sealed.data_key(nxt, keyring=keyring, identity=identity, where=str(successor))
        recovered = bool(nxt.prev_flags & sealed.PREV_RECOVERED)
        if nxt.prev_id != scan.header.file_id:
            raise sealed.SealError(f"{successor}: its predecessor is not {path.name} "
                                   "(a file is missing, swapped or foreign)")
        if (nxt.prev_chunks != len(scan.chunks) or nxt.prev_digest != scan.digest_of_last(data)
                or recovered == scan.final):
            raise sealed.SealError(f"{path}: truncated: it does not end where {successor.name} says it did")
    elif not last_file and not scan.final:
        raise sealed.SealError(f"{path}: truncated: the final chunk is missing")
    if not wanted:
        return
    for chunk in sealed.open_chunks(data, scan, key, str(path)):
        yield from _checked(chunk.splitlines(keepends=True), path, False, query)


def _checked(lines, path: Path, may_be_torn: bool, query=None) -> Iterator[bytes]:
    for lineno, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            if may_be_torn:
                return
            raise CorruptRecordError(f"{path}: truncated: line {lineno} has no end")
        try:
            rec = json.loads(line)
        except ValueError:
            raise CorruptRecordError(f"{path}: line {lineno} is not a JSON record") from None
        if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
            raise CorruptRecordError(f"{path}: line {lineno} lacks the record keys")
        if query is None or query.matches(rec):
            yield display_line(line)


def follow(directory: Path, *, keyring=None, identity=None, interval: float = 0.2,
           query=None) -> Iterator[bytes]:
    """Lines of a live directory as they are written: earlier files, then new chunks and files.

    query (a query.Query): only the lines of records it matches; a file that a later
    file shows to be older than its --since is passed over unread; once the clock is
    past its --until (and the margin for records still on their way), one more pass
    over the files, then the end.
    """
    import time

    from . import sealed

    done: dict[str, int] = {}  # file -> chunks (sealed) or bytes (plain) already shown
    wanted: dict[str, bool] = {}  # files judged by --since once a later file exists
    by_time = query is not None and query.since_ns is not None
    while True:
        last_pass = query is not None and query.over(time.time_ns())
        files = expand([directory])
        for i, path in enumerate(files):
            if by_time and path.name not in wanted and path.name not in done and i + 1 < len(files):
                wanted[path.name] = query.may_hold(_next_start_ns(path, files[i + 1], keyring, identity))
            if not wanted.get(path.name, True):
                continue
            if path.suffix == "." + sealed.SUFFIX:
                data = path.read_bytes()
                if sealed.header_torn(data):
                    continue  # a header still being written
                scan = sealed.scan_chunks(data, str(path))
                seen = done.get(path.name, 0)
                if len(scan.chunks) > seen:
                    key = sealed.data_key(scan.header, keyring=keyring, identity=identity, where=str(path))
                    for n, chunk in enumerate(sealed.open_chunks(data, scan, key, str(path))):
                        if n >= seen:
                            yield from _checked(chunk.splitlines(keepends=True), path, False, query)
                    done[path.name] = len(scan.chunks)
            else:
                seen = done.get(path.name, 0)
                with open(path, "rb") as f:
                    f.seek(seen)
                    data = f.read()
                end = data.rfind(b"\n") + 1
                if end:
                    yield from _checked(data[:end].splitlines(keepends=True), path, False, query)
                    done[path.name] = seen + end
        if last_pass:
            return
        time.sleep(interval)


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
