"""Writer stages that need no state beyond their configuration."""
from __future__ import annotations

import json

import numpy as np

from .._native import ffi, lib
from . import Batch


class SkipWritten:
    """Drop records the files already hold: those up to `last_seq` of this ring.

    After a writer is killed between writing a batch and releasing it, the
    next writer drains that batch again; the files are the truth, so those
    records are counted as written and not written twice.  The writer clears
    `last_seq` once a batch past it is in the files (not here: the write may
    fail, and the batch be drained again).

    It runs after the stages that remove records, so that what it skips are
    exactly the records the files hold.  With `advance_n` (the files' numbers
    cannot be read, so the writer continues from the number the ring published
    at its last release), the records skipped were numbered from there: the
    batch's numbering moves past them.
    """

    def __init__(self, last_seq: int | None, advance_n: bool = False) -> None:
        self.last_seq = last_seq
        self.advance_n = advance_n

    def __call__(self, batch: Batch) -> Batch:
        if self.last_seq is None or len(batch.meta) == 0:
            return batch
        seen = (batch.meta["seq"] <= self.last_seq) & (batch.keep != 0)
        n = int(seen.sum())
        if n:
            batch.keep[seen] = 0
            batch.delta.written += n
            batch.last_seq = int(batch.meta["seq"][seen][-1])
            if self.advance_n:
                batch.n += n
        return batch


class LevelFilter:
    """Drop records below a minimum level (counted as filtered).

    Records of `own_pid` (the writer's own health warnings) always pass.
    """

    def __init__(self, min_level: int, own_pid: int = -1) -> None:
        self.min_level = min_level
        self.own_pid = own_pid

    def __call__(self, batch: Batch) -> Batch:
        if self.min_level <= 0:
            return batch
        low = (batch.meta["level"] < self.min_level) & (batch.keep != 0) & (batch.meta["pid"] != self.own_pid)
        n = int(low.sum())
        if n:
            batch.keep[low] = 0
            batch.delta.filtered += n
        return batch


class FormatJsonl:
    """Render kept records as one JSON object per line, in C, for the whole batch,
    numbered (`n`) consecutively from `batch.n`.

    host: a top-level `host` key added as the last key of every line (the log server
    names the client a record came from).  A line ends in `}` and a newline and has no
    other newline (the formatter escapes them), so the key goes in before each line end."""

    def __init__(self, host: str | None = None) -> None:
        self._out = ffi.new("uint8_t[]", 1 << 20)
        self._cap = 1 << 20
        self._line_end = (b',"host":' + json.dumps(host).encode() + b"}\n") if host is not None else None

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch.meta)
        kept = batch.kept
        if kept == 0:
            batch.out = b""
            return batch
        need = lib.lsr_format_bound(n, len(batch.buf))
        if need > self._cap:
            self._cap = max(need, self._cap * 2)
            self._out = ffi.new("uint8_t[]", self._cap)
        meta = ffi.from_buffer("lsr_meta[]", batch.meta)
        keep = ffi.from_buffer("uint8_t[]", batch.keep)
        buf = ffi.from_buffer("uint8_t[]", batch.buf)
        size = lib.lsr_format_jsonl(meta, n, buf, keep, batch.n, self._out, self._cap)
        if size < 0:
            raise RuntimeError("format buffer too small")  # lsr_format_bound makes this impossible
        batch.out = ffi.buffer(self._out, size)[:]
        if self._line_end is not None:
            batch.out = batch.out.replace(b"}\n", self._line_end)
        # the last kept record's seq: the last record's when all are kept (most batches)
        last = n - 1 if kept == n else int(np.flatnonzero(batch.keep)[-1])
        batch.last_seq = int(batch.meta["seq"][last])
        return batch
