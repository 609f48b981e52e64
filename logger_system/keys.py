"""Key files: symmetric keyrings and X25519 identities, and their hygiene.

A keyring file holds one key per line, `lsk1:<key id, 16 hex>:<key, base64>`;
the first line is the key new files are sealed with, the others still open
older files.  An identity file holds `lsx1-identity:<X25519 private key,
base64>`; its recipient string `lsx1:<public key, base64>` is what a writer
needs to seal files that only the identity can open.  Key and identity files
are written 0600 and refused when group or others can read them.  No key
material ever appears in an error message.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .errors import ConfigError, looks_like_key, shown_path

KEY_PREFIX = "lsk1"
IDENTITY_PREFIX = "lsx1-identity"
RECIPIENT_PREFIX = "lsx1"


@dataclass(frozen=True)
class Keyring:
    """Symmetric keys by id; `active` seals new files."""

    keys: dict[bytes, bytes] = field(repr=False)
    active: bytes

    def key(self, key_id: bytes) -> bytes | None:
        return self.keys.get(key_id)


@dataclass(frozen=True)
class Recipient:
    public: bytes  # 32 bytes

    @property
    def rid(self) -> bytes:
        """An 8-byte name of the recipient, stored in file headers."""
        return hashlib.sha256(b"logger_system recipient" + self.public).digest()[:8]

    def __str__(self) -> str:
        return f"{RECIPIENT_PREFIX}:{base64.b64encode(self.public).decode()}"


@dataclass(frozen=True)
class Identity:
    private: X25519PrivateKey = field(repr=False)

    @property
    def recipient(self) -> Recipient:
        from cryptography.hazmat.primitives import serialization

        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
        return Recipient(raw)


def _make_parent(path: Path) -> None:
    """Make the missing directories above a new key file, mode 0700 (only those made here)."""
    parent = Path(path).parent
    if parent.exists():
        return
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot make the directory {shown_path(d)} for the key: {exc.strerror}; "
                              f"make it first (`mkdir -m 700 -p {shown_path(Path(path).parent)}`, "
                              "as a user who may) or choose another --out") from None


def _write_secret(path: Path, text: str, overwrite: bool = False) -> None:
    if looks_like_key(str(path)):
        raise ConfigError(f"refusing to write a key to {shown_path(path)}: give a file name "
                          "(such as app.key), not key material")
    _make_parent(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{shown_path(path)} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {shown_path(path)}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret(path: Path, what: str) -> str:
    """The text of a key file, refused if others could read it."""
    try:
        # O_NONBLOCK: a FIFO put where the key should be must not hang the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        hint = " (give the path of the file, not its contents)" if looks_like_key(str(path)) else ""
        raise ConfigError(f"cannot open {what} {shown_path(path)}: {exc.strerror}{hint}") from None
    except (ValueError, UnicodeError):
        raise ConfigError(f"{what} {shown_path(path)!r} is not a usable path") from None
    try:
        st = os.fstat(fd)
        shown = shown_path(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {shown} is not a regular file")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{what} {shown} can be read by group or others (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {shown}`")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{what} {shown} belongs to another user (uid {st.st_uid})")
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {shown_path(path)} is not a logger_system key file") from None


def new_key_line() -> str:
    key = os.urandom(32)
    key_id = os.urandom(8)
    return f"{KEY_PREFIX}:{key_id.hex()}:{base64.b64encode(key).decode()}\n"


def keygen(path: Path, rotate: bool = False) -> bytes:
    """Write a new keyring (or, with rotate, put a new active key in front of one); the new key id."""
    line = new_key_line()
    if rotate:
        old = _read_secret(path, "key file")
        load_keyring(path)  # refuse to extend a file that is not a keyring
        # a new file renamed over the old one: a crash or a full disk never leaves half a keyring
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _write_secret(tmp, line + old, overwrite=True)
        os.replace(tmp, path)
    else:
        _write_secret(path, line)
    return bytes.fromhex(line.split(":")[1])


def load_keyring(path: Path) -> Keyring:
    text = _read_secret(path, "key file")
    keys: dict[bytes, bytes] = {}
    active = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        try:
            if len(parts) != 3 or parts[0] != KEY_PREFIX:
                raise ValueError
            key_id, key = bytes.fromhex(parts[1]), base64.b64decode(parts[2], validate=True)
            if len(key_id) != 8 or len(key) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise ConfigError(f"key file {shown_path(path)}, line {n}: not a key line "
                              f"(make one with `logger-system keygen --out FILE`)") from None
        keys[key_id] = key
        active = active or key_id
    if active is None:
        raise ConfigError(f"key file {shown_path(path)} holds no key "
                          "(make one with `logger-system keygen --out FILE`)")
    return Keyring(keys, active)


def identity_keygen(path: Path) -> Recipient:
    private = X25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    _write_secret(path, f"{IDENTITY_PREFIX}:{base64.b64encode(raw).decode()}\n")
    return Identity(private).recipient


def load_identity(path: Path) -> Identity:
    text = _read_secret(path, "identity file").strip()
    prefix, _, b64 = text.partition(":")
    try:
        if prefix != IDENTITY_PREFIX:
            raise ValueError
        raw = base64.b64decode(b64, validate=True)
        if len(raw) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ConfigError(f"identity file {shown_path(path)} is not a logger_system identity "
                          "(make one with `logger-system keygen --x25519 --out FILE`)") from None
    return Identity(X25519PrivateKey.from_private_bytes(raw))


def parse_recipient(text: str) -> Recipient:
    prefix, _, b64 = text.strip().partition(":")
    try:
        if prefix != RECIPIENT_PREFIX:
            raise ValueError
        raw = base64.b64decode(b64, validate=True)
        if len(raw) != 32:
            raise ValueError
        X25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ConfigError("not a recipient string: expected `lsx1:<base64 public key>` as printed by "
                          "`logger-system keygen --x25519`") from None
    return Recipient(raw)
