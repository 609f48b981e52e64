"""What a log file's bytes are: one interface, two formats.

A writer hands its format whole pieces of JSONL (one or more complete lines); the format
says what goes on disk for them (`piece`), what opens a file (`begin`) and what closes
it (`end`), and is told when those bytes are safely in the file (`wrote`, `ended`), so
that a failed write changes nothing it remembers.

  PlainFormat   the lines themselves; nothing opens or closes a file.
  SealedFormat  a header (the file's sealed data key, its predecessor), each piece one
                AES-256-GCM chunk, a final chunk (docs/FORMAT.md).  The file is kept
                locked while it is written.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import sealed
from ..keys import Keyring, Recipient
from ..rotation import LogFile

# a line's seq and n; match() anchors it where it is asked to look
SEQ_N = re.compile(rb'\{"seq":(\d+),(?:"n":(\d+),)?')


@dataclass
class Sealing:
    """How files are sealed, and where the sequence stands (the predecessor of the next file)."""

    keyring: Keyring | None = None
    recipients: tuple[Recipient, ...] = ()
    compress: bool = False
    stream_id: bytes = field(default_factory=lambda: os.urandom(16))
    prev: tuple[bytes, bytes, int, int] = (bytes(16), bytes(32), 0, 0)  # id, digest, chunks, flags
    lost: int = 0  # records lost just before the next file (prev flags then hold PREV_LOSS)

    def mark(self, flags: int, lost: int = 0) -> None:
        """Add predecessor flags (and a loss) for the next file's header."""
        self.prev = (*self.prev[:3], self.prev[3] | flags)
        if lost:
            self.lost = min(lost, sealed.MAX_LOST)


class PlainFormat:
    suffix = "jsonl"
    locks = False
    sealing = None

    def __init__(self) -> None:
        self.next_n = 0

    def begin(self, f: LogFile, ring_id: int) -> bytes:
        return b""

    def piece(self, data: bytes, pos: int, end: int) -> memoryview:
        return memoryview(data)[pos:end]

    def wrote(self) -> None:
        pass

    def end(self) -> bytes:
        return b""

    def ended(self, tail: bytes) -> None:
        pass


class SealedFormat:
    suffix = sealed.SUFFIX
    locks = True  # a reader tells a file being written by its lock

    def __init__(self, sealing: Sealing) -> None:
        self.sealing = sealing
        self.next_n = 0  # the stream's n after the last record in the files
        self._buf = bytearray()
        self._pending: tuple[int, int] = (sealed.NO_SEQ, 0)

    def begin(self, f: LogFile, ring_id: int) -> bytes:
        sl = self.sealing
        prev_id, prev_digest, prev_chunks, prev_flags = sl.prev
        header, key = sealed.make_header(
            stream_id=sl.stream_id, index=f.index, ring_id=ring_id, created_ns=time.time_ns(),
            prev_id=prev_id, prev_digest=prev_digest, prev_chunks=prev_chunks, prev_flags=prev_flags,
            compress=sl.compress, keyring=sl.keyring, recipients=sl.recipients, lost=sl.lost)
        self._digest = sealed.parse_header(header).digest
        self._file_id = sealed.parse_header(header).file_id
        self._aead = AESGCM(key)
        self._chunks = 0
        self._last_seq = sealed.NO_SEQ
        self._compressor = None
        if sl.compress:
            import zstandard

            self._compressor = zstandard.ZstdCompressor(level=3)
        return header

    def begun(self) -> None:
        self.sealing.lost = 0  # told once, in the header just written

    def piece(self, data: bytes, pos: int, end: int) -> memoryview:
        # the seq and n of the piece's last line go into its chunk header
        m = SEQ_N.match(data, max(data.rfind(b"\n", pos, end - 1), pos - 1) + 1)
        last_seq = int(m.group(1)) if m else self._last_seq
        next_n = int(m.group(2)) + 1 if m and m.group(2) is not None else self.next_n
        self._pending = (last_seq, next_n)
        return sealed.seal_chunk(self._aead, self._digest, self._chunks, memoryview(data)[pos:end],
                                 final=False, last_seq=last_seq, next_n=next_n,
                                 compressor=self._compressor, out=self._buf)

    def wrote(self) -> None:
        self._chunks += 1
        self._last_seq, self.next_n = self._pending

    def end(self) -> bytes:
        return sealed.seal_chunk(self._aead, self._digest, self._chunks, b"", final=True,
                                 last_seq=self._last_seq, next_n=self.next_n)

    def ended(self, tail: bytes) -> None:
        self.sealing.prev = (self._file_id, hashlib.sha256(tail).digest(), self._chunks + 1, 0)


FileFormat = PlainFormat | SealedFormat


def of(sealing: Sealing | None) -> FileFormat:
    return PlainFormat() if sealing is None else SealedFormat(sealing)
