"""The record as the writer sees it: one source of truth for its layout.

The native drain decodes committed records into an array of `META_DTYPE`
(mirroring `lsr_meta` in native/ring.h) plus one payload buffer; every later
stage works on those two columns instead of on Python objects per record.
"""
from __future__ import annotations

import numpy as np

from ._native import ffi

META_DTYPE = np.dtype(
    [
        ("seq", "<u8"),
        ("ts_ns", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("msg_off", "<u4"),
        ("msg_len", "<u4"),
        ("logger_off", "<u4"),
        ("logger_len", "<u4"),
        ("fields_off", "<u4"),
        ("fields_len", "<u4"),
        ("level", "<u4"),
        ("flags", "<u4"),
    ]
)
assert META_DTYPE.itemsize == ffi.sizeof("lsr_meta"), "META_DTYPE must mirror lsr_meta"

FLAG_TRUNCATED = 1
FLAG_FORMAT_ERROR = 2

LEVELS = {"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40,
          "CRITICAL": 50, "FATAL": 50}
LEVEL_NAMES = {0: "NOTSET", 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}

TRUNCATION_MARKER = " ...[truncated {} bytes]"
SHORT_TRUNCATION_MARKER = "...[cut]"  # where the full marker would not fit


def level_number(level: int | str) -> int:
    """Map a stdlib level number or name to 0..255; raise ValueError otherwise."""
    if isinstance(level, bool):
        raise ValueError(f"invalid log level {level!r}")
    if isinstance(level, int):
        if 0 <= level <= 255:
            return level
        shown = level if level.bit_length() <= 64 else f"of {level.bit_length()} bits"
        raise ValueError(f"log level {shown} is outside 0..255")
    if isinstance(level, str):
        name = level.strip().upper()
        if name in LEVELS:
            return LEVELS[name]
        if name.isascii() and name.isdigit():
            if len(name) > 18:
                raise ValueError(f"log level of {len(name)} digits is outside 0..255")
            return level_number(int(name))
    shown = repr(level) if isinstance(level, str) and len(level) <= 80 else f"of type {type(level).__name__}"
    raise ValueError(f"unknown log level {shown}: use 10..50 or DEBUG, INFO, WARNING, ERROR, CRITICAL")


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, f"Level {level}")


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """Cut data to at most limit bytes without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    cut = max(limit, 0)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]
