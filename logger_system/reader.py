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
