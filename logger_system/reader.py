"""Reading written log files back, in write order, checking each line."""
from __future__ import annotations

import json
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


def iter_lines(paths: Iterable[Path]) -> Iterator[bytes]:
    """Every record line of the files, checked to be a JSON record.

    The last file may still be written: a final line without its newline is
    one being written, not damage, and is left out.  In any other file it is
    damage and raises CorruptRecordError.
    """
    files = expand(paths)
    for i, path in enumerate(files):
        last_file = i == len(files) - 1
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    if last_file:
                        return
                    raise CorruptRecordError(f"{path}: truncated: line {lineno} has no end")
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise CorruptRecordError(f"{path}: line {lineno} is not a JSON record") from None
                if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
                    raise CorruptRecordError(f"{path}: line {lineno} lacks the record keys")
                yield line


def iter_records(paths: Iterable[Path]) -> Iterator[dict]:
    for line in iter_lines(paths):
        yield json.loads(line)


_UNSAFE = {c: f"\\x{c:02x}" for c in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0))}
_UNSAFE.update({0x2028: "\\u2028", 0x2029: "\\u2029", ord("\\"): "\\\\"})


def safe_text(value: object) -> str:
    """Text for a terminal: control characters (C0, DEL, C1, line separators) shown escaped.

    A record rendered this way can neither forge a second line nor send an
    escape sequence to the terminal (CWE-117).
    """
    return str(value).translate(_UNSAFE)


def render_text(rec: dict) -> str:
    """One record as one human-readable line."""
    fields = rec.get("fields") or {}
    extra = "".join(f" {safe_text(k)}={safe_text(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)}"
                    for k, v in fields.items())
    return (f"{safe_text(rec.get('ts'))} {safe_text(rec.get('level')):<8} {safe_text(rec.get('logger'))}"
            f"[{safe_text(rec.get('pid'))}]: {safe_text(rec.get('msg'))}{extra}")
