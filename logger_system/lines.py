"""The writer's JSON lines read back into the columns a ring drain gives, in C.

Every file and every shipped batch holds one line layout, written by the C formatter
(pipeline.stages.FormatJsonl, native/lines.c):

    {"seq":S,"n":N,"ts":"YYYY-MM-DDTHH:MM:SS.ffffffZ","level":"NAME","pid":P,
     "logger":"...","msg":"..."[,"fields":{...}]}

`parse` takes lines in exactly that layout apart without a Python object per record: a
record.META_DTYPE row and the decoded texts per line.  A line in any other form (keys in
another order, other spacing, a level named otherwise, a lone surrogate) is marked OTHER
and taken apart by its caller's general JSON path, which decides whether it is a record at
all: the fast path refuses nothing the general one takes and accepts nothing it refuses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._native import ffi, lib
from .record import META_DTYPE

OK = lib.LSR_LINE_OK        # the layout: its columns are in meta and buf
HOST = lib.LSR_LINE_HOST    # the layout and a log server's trailing "host" key
OTHER = lib.LSR_LINE_OTHER  # not the layout: the general path decides


@dataclass
class Parsed:
    meta: np.ndarray    # META_DTYPE, one row per line (zero where status is OTHER)
    status: np.ndarray  # uint8, one per line
    buf: bytes          # logger, msg (decoded) and fields (as they are) of the lines taken

    @property
    def all_taken(self) -> bool:
        """Every line was in the layout (a log server's host key allowed)."""
        return not bool((self.status == OTHER).any())


def parse(lines: bytes, first_n: int, max_records: int | None = None) -> Parsed | None:
    """The lines of `lines` (numbered first_n on: a line whose "n" differs is OTHER);
    None if there are more than max_records of them (default: as many as there are)."""
    if max_records is None:
        max_records = lines.count(b"\n") + 1
    rows = max(max_records, 1)
    meta = np.zeros(rows, META_DTYPE)
    status = np.zeros(rows, np.uint8)
    buf = bytearray(max(len(lines), 1))
    buf_len = ffi.new("uint64_t *")
    count = lib.lsr_lines_parse(lines, len(lines), first_n, ffi.from_buffer("lsr_meta[]", meta),
                                ffi.from_buffer("uint8_t[]", status), max_records,
                                ffi.from_buffer("uint8_t[]", buf), len(buf), buf_len)
    if count < 0:
        return None
    return Parsed(meta[:count], status[:count], bytes(memoryview(buf)[:buf_len[0]]))
