"""Sealed log files: authenticated encryption in chunks, chained file to file.

The layout is documented in docs/FORMAT.md; this module is its one
implementation.  In short: a header names the file (stream, index, id), its
predecessor (id, digest of its last chunk, chunk count) and holds the file's
random data key wrapped to a symmetric key or to X25519 recipients; then
chunks, each AES-256-GCM under the data key with a random nonce, whose
associated data binds the header digest, the chunk's index, its flags (final)
and the last `seq` it holds.  A crash leaves a file without its final chunk;
the next file's header then vouches for exactly where it ended.

Parsing (`parse_header`, `scan_chunks`) trusts nothing and never decrypts;
`open_chunks` decrypts.  Whether a sequence of files is valid is for files/chain.py alone.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CorruptRecordError
from .keys import Identity, Keyring, Recipient

MAGIC = b"LSXF"
VERSION = 2  # 2: each chunk header says the n after its last record
SUFFIX = "lsx"
MODE_KEY, MODE_RECIPIENTS = 1, 2
FLAG_ZSTD = 1
CHUNK_FINAL, CHUNK_ZSTD = 1, 2
# prev_flags: what the writer knew of the file before this one when it began this file
PREV_RECOVERED = 1    # it had no final chunk (a crash): this header vouches for where it ended
PREV_LOSS = 2         # records the ring had released were missing from the files: `lost` of them,
                      # numbered just before this file's first `n`
PREV_DAMAGED = 4      # the file numbered index - 1 was damaged and moved aside (`<name>.damaged`);
                      # prev_* describe the file before it
PREV_UNCONFIRMED = 8  # the ring that fed the previous file was gone: its end is vouched for by the
                      # files alone (a cut tail before this restart cannot be ruled out)
PREV_FLAGS = PREV_RECOVERED | PREV_LOSS | PREV_DAMAGED | PREV_UNCONFIRMED
MAX_LOST = (1 << 56) - 1
NO_SEQ = (1 << 64) - 1
MAX_CHUNK = 64 << 20

# magic, version, mode, flags, reserved, header_len, stream_id, file_id, index, ring_id,
# created_ns, prev_id, prev_digest, prev_chunks, prev_flags, lost (7 bytes, little-endian)
_FIXED = struct.Struct("<4sBBBBI16s16sQQQ16s32sQB7s")
_KEY_BLOCK = struct.Struct("<8s12s48s")              # key id, nonce, wrapped data key
_RCPT_BLOCK = struct.Struct("<8s32s12s48s")          # recipient id, ephemeral public, nonce, wrapped key
_CHUNK = struct.Struct("<IB12sQQ")                   # ciphertext length, flags, nonce, last seq, next n
_AAD = struct.Struct("<32sQBQQ")                     # header digest, chunk index, flags, last seq, next n


class SealError(CorruptRecordError):
    """A sealed file is damaged, foreign, or cannot be opened with the keys given."""


class WrongKeyError(SealError):
    """None of the keys given opens this file."""


@dataclass(frozen=True)
class Header:
    mode: int
    flags: int
    stream_id: bytes
    file_id: bytes
    index: int
    ring_id: int
    created_ns: int
    prev_id: bytes
    prev_digest: bytes
    prev_chunks: int
    prev_flags: int
    lost: int
    key_block: bytes = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def has_prev(self) -> bool:
        return self.prev_id != bytes(16)


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    flags: int
    nonce: bytes
    last_seq: int
    next_n: int  # the n of the record after this chunk's last (the stream's count so far)

    @property
    def final(self) -> bool:
        return bool(self.flags & CHUNK_FINAL)


def _hkdf(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=b"logger_system sealed file key").derive(shared)


def make_header(*, stream_id: bytes, index: int, ring_id: int, created_ns: int, prev_id: bytes,
                prev_digest: bytes, prev_chunks: int, prev_flags: int, compress: bool,
                keyring: Keyring | None = None, recipients: Iterable[Recipient] = (),
                lost: int = 0) -> tuple[bytes, bytes]:
    """A new file's header and its fresh random data key.  lost: records known lost just
    before this file (with PREV_LOSS in prev_flags)."""
    recipients = list(recipients)
    if prev_flags & ~PREV_FLAGS or not 0 <= lost <= MAX_LOST or bool(lost) != bool(prev_flags & PREV_LOSS):
        raise ValueError("prev_flags and lost disagree")
    mode = MODE_KEY if keyring is not None else MODE_RECIPIENTS
    if mode == MODE_RECIPIENTS and not 1 <= len(recipients) <= 255:
        raise ValueError("sealing needs a key or 1 to 255 recipients")
    data_key = AESGCM.generate_key(256)
    file_id = os.urandom(16)
    block_len = _KEY_BLOCK.size if mode == MODE_KEY else 1 + _RCPT_BLOCK.size * len(recipients)
    fixed = _FIXED.pack(MAGIC, VERSION, mode, FLAG_ZSTD if compress else 0, 0, _FIXED.size + block_len,
                        stream_id, file_id, index, ring_id, created_ns, prev_id, prev_digest, prev_chunks,
                        prev_flags, lost.to_bytes(7, "little"))
    if mode == MODE_KEY:
        assert keyring is not None
        nonce = os.urandom(12)
        wrapped = AESGCM(keyring.keys[keyring.active]).encrypt(nonce, data_key, fixed)
        block = _KEY_BLOCK.pack(keyring.active, nonce, wrapped)
    else:
        parts = [bytes([len(recipients)])]
        for r in recipients:
            eph = X25519PrivateKey.generate()
            from cryptography.hazmat.primitives import serialization

            eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            kek = _hkdf(eph.exchange(X25519PublicKey.from_public_bytes(r.public)), eph_pub + r.public)
            nonce = os.urandom(12)
            parts.append(_RCPT_BLOCK.pack(r.rid, eph_pub, nonce, AESGCM(kek).encrypt(nonce, data_key, fixed)))
        block = b"".join(parts)
    return fixed + block, data_key


def parse_header(data: bytes, where: str = "file") -> Header:
    if len(data) < _FIXED.size:
        raise SealError(f"{where}: truncated: the header is incomplete")
    (magic, version, mode, flags, _r, header_len, stream_id, file_id, index, ring_id, created_ns,
     prev_id, prev_digest, prev_chunks, prev_flags, lost) = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise SealError(f"{where}: not a logger_system sealed file")
    if version != VERSION:
        raise SealError(f"{where}: sealed file version {version} is not supported (this reads {VERSION})")
    lost = int.from_bytes(lost, "little")
    if (mode not in (MODE_KEY, MODE_RECIPIENTS) or header_len > 1 << 16 or header_len < _FIXED.size
            or prev_flags & ~PREV_FLAGS or bool(lost) != bool(prev_flags & PREV_LOSS)):
        raise SealError(f"{where}: the header is damaged")
    if len(data) < header_len:
        raise SealError(f"{where}: truncated: the header is incomplete")
    block = data[_FIXED.size:header_len]
    ok = (len(block) == _KEY_BLOCK.size if mode == MODE_KEY else
          len(block) >= 1 and len(block) == 1 + block[0] * _RCPT_BLOCK.size and block[0] > 0)
    if not ok:
        raise SealError(f"{where}: the header is damaged")
    return Header(mode, flags, stream_id, file_id, index, ring_id, created_ns, prev_id, prev_digest,
                  prev_chunks, prev_flags, lost, block, bytes(data[:header_len]))


def header_torn(data: bytes) -> bool:
    """Whether data is the start of a header cut short (a crash while it was written),
    as opposed to a complete header that is damaged."""
    if len(data) < _FIXED.size:
        return MAGIC.startswith(data[:4]) if len(data) < 4 else data[:4] == MAGIC
    if data[:4] != MAGIC:
        return False
    header_len = struct.unpack_from("<I", data, 8)[0]
    return _FIXED.size <= header_len <= 1 << 16 and len(data) < header_len


def data_key(header: Header, *, keyring: Keyring | None = None, identity: Identity | None = None,
             where: str = "file") -> bytes:
    """Unwrap a file's data key with the keys given; WrongKeyError if none fits."""
    fixed = header.raw[:_FIXED.size]
    if keyring is None and identity is None:
        raise WrongKeyError(f"{where}: these files are sealed: give --key or --identity")
    try:
        if header.mode == MODE_KEY:
            key_id, nonce, wrapped = _KEY_BLOCK.unpack(header.key_block)
            if keyring is None:
                raise WrongKeyError(f"{where}: wrong key: sealed with a key file (key id {key_id.hex()}), "
                                    "not to recipients: give --key FILE, not --identity")
            key = keyring.key(key_id)
            if key is None:
                raise WrongKeyError(f"{where}: wrong key: sealed with key id {key_id.hex()}, "
                                    "which the key file given does not hold")
            return AESGCM(key).decrypt(nonce, wrapped, fixed)
        if identity is None:
            raise WrongKeyError(f"{where}: wrong key: sealed to X25519 recipients; pass --identity FILE")
        me = identity.recipient
        block = header.key_block
        for k in range(block[0]):
            rid, eph_pub, nonce, wrapped = _RCPT_BLOCK.unpack_from(block, 1 + k * _RCPT_BLOCK.size)
            if rid == me.rid:
                kek = _hkdf(identity.private.exchange(X25519PublicKey.from_public_bytes(eph_pub)),
                            eph_pub + me.public)
                return AESGCM(kek).decrypt(nonce, wrapped, fixed)
        raise WrongKeyError(f"{where}: wrong key: the identity given is not a recipient of this file")
    except InvalidTag:
        raise SealError(f"{where}: tampered: the header does not authenticate") from None
    except ValueError:
        raise SealError(f"{where}: the header is damaged") from None


def seal_chunk(aead: AESGCM, header_digest: bytes, index: int, plaintext, *, final: bool,
               last_seq: int, next_n: int = 0, compressor=None, out: bytearray | None = None):
    """One chunk's bytes.  With `out`, they are built in that reusable buffer and a
    memoryview of it is returned (valid until the next call): a megabyte chunk then
    costs no fresh memory, which is what keeps sealing near AES-GCM's own speed."""
    flags = CHUNK_FINAL if final else 0
    if compressor is not None and len(plaintext):
        plaintext = compressor.compress(plaintext)
        flags |= CHUNK_ZSTD
    nonce = os.urandom(12)
    aad = _AAD.pack(header_digest, index, flags, last_seq, next_n)
    n = len(plaintext) + 16
    if out is None:
        return _CHUNK.pack(n, flags, nonce, last_seq, next_n) + aead.encrypt(nonce, bytes(plaintext), aad)
    if len(out) < _CHUNK.size + n:
        out.extend(bytes(_CHUNK.size + n - len(out)))
    view = memoryview(out)
    _CHUNK.pack_into(out, 0, n, flags, nonce, last_seq, next_n)
    aead.encrypt_into(nonce, plaintext, aad, view[_CHUNK.size:_CHUNK.size + n])
    return view[:_CHUNK.size + n]


@dataclass
class Scan:
    """The structure of a sealed file, read without keys."""

    header: Header
    chunks: list[Chunk]
    size: int
    torn_at: int | None  # where an incomplete chunk begins, if the file ends inside one

    @property
    def final(self) -> bool:
        return bool(self.chunks) and self.chunks[-1].final

    def digest_of_last(self, data: bytes) -> bytes:
        c = self.chunks[-1] if self.chunks else None
        return hashlib.sha256(data[c.start:c.end]).digest() if c else bytes(32)

    @property
    def next_n(self) -> int | None:
        """The n after the file's last record, as its chunk headers say (None: no chunk)."""
        return self.chunks[-1].next_n if self.chunks else None

    @property
    def last_seq(self) -> int | None:
        for c in reversed(self.chunks):
            if c.last_seq != NO_SEQ:
                return c.last_seq
        return None


def scan_chunks(data: bytes, where: str = "file") -> Scan:
    """Walk a file's chunks without decrypting.  Bytes after a final chunk are damage."""
    header = parse_header(data, where)
    pos, chunks = len(header.raw), []
    torn = None
    while pos < len(data):
        if chunks and chunks[-1].final:
            raise SealError(f"{where}: tampered: {len(data) - pos} bytes follow the final chunk")
        if len(data) - pos < _CHUNK.size:
            torn = pos
            break
        length, flags, nonce, last_seq, next_n = _CHUNK.unpack_from(data, pos)
        if length < 16 or length > MAX_CHUNK or flags & ~(CHUNK_FINAL | CHUNK_ZSTD):
            raise SealError(f"{where}: tampered at chunk {len(chunks)}: impossible chunk header")
        end = pos + _CHUNK.size + length
        if end > len(data):
            torn = pos
            break
        if chunks and next_n < chunks[-1].next_n:
            raise SealError(f"{where}: tampered at chunk {len(chunks)}: impossible chunk header")
        chunks.append(Chunk(len(chunks), pos, end, flags, nonce, last_seq, next_n))
        pos = end
    return Scan(header, chunks, len(data), torn)


def open_chunks(data: bytes, scan: Scan, key: bytes, where: str = "file") -> Iterator[bytes]:
    """Plaintext of each chunk, in order; SealError naming the first chunk that fails."""
    aead = AESGCM(key)
    hd = scan.header.digest
    decompressor = None
    for c in scan.chunks:
        ct = data[c.start + _CHUNK.size:c.end]
        try:
            pt = aead.decrypt(c.nonce, ct, _AAD.pack(hd, c.index, c.flags, c.last_seq, c.next_n))
        except InvalidTag:
            raise SealError(f"{where}: tampered at chunk {c.index}") from None
        if c.flags & CHUNK_ZSTD:
            if decompressor is None:
                import zstandard

                decompressor = zstandard.ZstdDecompressor()
            pt = decompressor.decompress(pt, max_output_size=MAX_CHUNK * 8)
        yield pt


def file_locked(path: Path) -> bool:
    """Whether a writer holds this file open for writing (it keeps a lock on it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
