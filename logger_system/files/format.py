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
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import sealed
from ..health import say
from ..keys import Keyring, Recipient
from ..rotation import LogFile
from .chain import FilesEnd, log_files

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

    def take_keys(self, other: "Sealing") -> bool:
        """Seal the next files with other's keys; whether they differ from the current ones."""
        changed = (other.keyring, other.recipients, other.compress) != (self.keyring, self.recipients,
                                                                         self.compress)
        self.keyring, self.recipients, self.compress = other.keyring, other.recipients, other.compress
        return changed

    def mark(self, flags: int, lost: int = 0) -> None:
        """Add predecessor flags (and a loss) for the next file's header."""
        self.prev = (*self.prev[:3], self.prev[3] | flags)
        if lost:
            self.lost = min(lost, sealed.MAX_LOST)


def _rfind_newline(f, before: int) -> int:
    """Index of the last newline before `before`, or -1."""
    pos = before
    while pos > 0:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def last_seq_in(path: Path, repair: bool) -> int | None:
    """The seq of the last complete line of a file; with repair, cut a torn tail."""
    return last_line_in(path, repair)[0]


def last_line_in(path: Path, repair: bool) -> tuple[int | None, int | None]:
    """(seq, n) of the last complete line of a file (n None in a line written before
    records were numbered); with repair, cut a torn tail."""
    with open(path, "r+b" if repair else "rb") as f:
        size = f.seek(0, os.SEEK_END)
        end = _rfind_newline(f, size)
        if repair and end + 1 < size:
            f.truncate(end + 1)
            say("cut_torn_tail", file=str(path), bytes=size - end - 1)
        while end >= 0:
            start = _rfind_newline(f, end) + 1
            f.seek(start)
            m = SEQ_N.match(f.read(min(64, end - start)))
            if m:
                return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)
            end = start - 1
    return None, None


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged` (never over another file); returns the new path."""
    target = path.with_name(path.name + ".damaged")
    k = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged.{k}")
        k += 1
    os.rename(path, target)
    return target


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

    def stream_tag(self, directory: Path) -> int:
        """The stream's tag in the ring: from the directory's resolved path."""
        digest = hashlib.sha256(str(Path(directory).resolve()).encode()).digest()
        return int.from_bytes(digest[:8], "little") or 1

    def rekey(self, sealing: Sealing | None) -> bool:
        return False

    def mark(self, flags: int, lost: int = 0) -> None:
        pass  # a plaintext stream records a loss as the gap in n at a file boundary

    def opens_at_start(self) -> bool:
        return False

    def resume(self, directory: Path, ring_id: int) -> FilesEnd:
        """The newest record's seq and n; a torn last line is cut."""
        end = FilesEnd()
        files = [f for f in log_files(directory) if f.suffix == self.suffix]
        if files:
            end.newest = directory / files[-1].name
        for i, f in enumerate(reversed(files)):
            seq, n = last_line_in(directory / f.name, repair=(i == 0))
            if seq is None:
                continue
            end.next_n = n + 1 if n is not None else 0
            end.last = (f.ring_id, seq)
            if f.ring_id == ring_id:
                end.resume_seq = seq
            break  # older files hold older records; a record of another ring resumes nothing
        return end


class SealedFormat:
    suffix = sealed.SUFFIX
    locks = True  # a reader tells a file being written by its lock
    # The writer ships: keep the chain's head (the file, index and SHA-256 of the last chunk
    # written), which the receivers keep off this host.  Off, no chunk is hashed again.
    track_heads = False
    head: dict | None = None

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
        chunk = sealed.seal_chunk(self._aead, self._digest, self._chunks, memoryview(data)[pos:end],
                                  final=False, last_seq=last_seq, next_n=next_n,
                                  compressor=self._compressor, out=self._buf)
        if self.track_heads:
            self._pending_head = hashlib.sha256(chunk).hexdigest()
        return chunk

    def wrote(self) -> None:
        if self.track_heads:
            self.head = {"file": self._file_id.hex(), "chunk": self._chunks, "digest": self._pending_head}
        self._chunks += 1
        self._last_seq, self.next_n = self._pending

    def end(self) -> bytes:
        return sealed.seal_chunk(self._aead, self._digest, self._chunks, b"", final=True,
                                 last_seq=self._last_seq, next_n=self.next_n)

    def ended(self, tail: bytes) -> None:
        digest = hashlib.sha256(tail).digest()
        self.sealing.prev = (self._file_id, digest, self._chunks + 1, 0)
        if self.track_heads:
            self.head = {"file": self._file_id.hex(), "chunk": self._chunks, "digest": digest.hex(),
                         "final": True}

    def stream_tag(self, directory: Path) -> int:
        return int.from_bytes(self.sealing.stream_id[:8], "little") or 1

    def resumed_head(self) -> dict | None:
        """The chain's head as the files left it at start (the last chunk of the newest file,
        which resume read), for the receivers before this writer writes anything."""
        file_id, digest, chunks, _ = self.sealing.prev
        if not chunks or file_id == bytes(16):
            return None
        return {"file": file_id.hex(), "chunk": chunks - 1, "digest": digest.hex()}

    def rekey(self, sealing: Sealing | None) -> bool:
        """New keys from a reload: true when the current file must close for them."""
        return sealing is not None and self.sealing.take_keys(sealing)

    def mark(self, flags: int, lost: int = 0) -> None:
        self.sealing.mark(flags, lost)

    def opens_at_start(self) -> bool:
        """A header with something to say (a crashed predecessor's end, a loss, a damaged
        file) is written at once, before any record."""
        return bool(self.sealing.prev[3])

    def resume(self, directory: Path, ring_id: int) -> FilesEnd:
        """Continue the newest sealed file's sequence, with no key: cut a torn chunk; a file
        with no final chunk (a crash) is vouched for by the next header; a newest file that
        is damaged is moved aside (`<name>.damaged`) and the sequence goes on from the last
        intact file before it.  The numbers are in the chunk headers."""
        sl = self.sealing
        end = FilesEnd()
        files = [f for f in log_files(directory) if f.suffix == self.suffix]
        flags = 0
        scan = data = None
        while files:
            path = directory / files[-1].name
            data = path.read_bytes()
            try:
                scan = sealed.scan_chunks(data, str(path))
                break
            except sealed.SealError as exc:
                files.pop()
                scan = None
                if sealed.header_torn(data):
                    # a crash while the header was written: no record ever went into this file
                    end.events.append(("removed_torn_header", {"file": str(path), "bytes": len(data)}))
                    path.unlink()
                    continue
                moved = move_aside(path)
                end.damaged += 1
                end.events.append(("moved_damaged_file", {"file": str(path), "to": str(moved),
                                                          "error": str(exc)}))
                flags = sealed.PREV_DAMAGED
        if scan is None or data is None:
            if flags:
                sl.prev = (bytes(16), bytes(32), 0, flags)
            return end
        path = directory / files[-1].name
        end.newest = path
        if scan.torn_at is not None:
            with open(path, "r+b") as f:
                f.truncate(scan.torn_at)
            end.events.append(("cut_torn_chunk", {"file": str(path), "bytes": len(data) - scan.torn_at}))
            data = data[:scan.torn_at]
        h = scan.header
        if not scan.final:
            flags |= sealed.PREV_RECOVERED
            end.crash_closed = True
            end.events.append(("closing_unfinished_file", {"file": str(path), "chunks": len(scan.chunks)}))
        sl.stream_id = h.stream_id
        sl.prev = (h.file_id, scan.digest_of_last(data), len(scan.chunks), flags)
        # the newest file may hold no record yet (a crash right after it was opened): the
        # resume point is then in the files before it; its chunk headers, if any, say n
        end.next_n = scan.next_n
        for f in reversed(files):
            older = directory / f.name
            if older != path:
                try:
                    scan = sealed.scan_chunks(older.read_bytes(), str(older))
                except sealed.SealError:
                    return end  # the numbers before it cannot be read, unless the newest said them
            if end.next_n is None and scan.next_n is not None:
                end.next_n = scan.next_n
            if scan.last_seq is None:
                continue
            end.last = (scan.header.ring_id, scan.last_seq)
            if scan.header.ring_id == ring_id:
                end.resume_seq = scan.last_seq
            break
        if end.next_n is None:
            end.next_n = 0
        return end


FileFormat = PlainFormat | SealedFormat


def of(sealing: Sealing | None) -> FileFormat:
    return PlainFormat() if sealing is None else SealedFormat(sealing)
