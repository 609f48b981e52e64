"""The only importer of the compiled ring: C return codes become exceptions here."""
from __future__ import annotations

import errno as _errno
import os

from .errors import ConfigError, RingError, RingPermissionError, WriterBusyError

try:
    from ._lsr_native import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "logger_system's native ring is not built; reinstall with `pip install .` "
        "(it needs a C compiler)"
    ) from exc

NATIVE_VERSION = 2
if lib.LSR_COMPILED_VERSION != NATIVE_VERSION:  # pragma: no cover
    raise ImportError(
        f"logger_system native ring is version {lib.LSR_COMPILED_VERSION}, "
        f"the Python package expects {NATIVE_VERSION}: reinstall with `pip install .`"
    )

_MESSAGES = {
    lib.LSR_EFULL: "ring full",
    lib.LSR_ETOOBIG: "record larger than the ring's max_record",
    lib.LSR_ENOSLOT: "all producer slots of the ring are in use",
    lib.LSR_EBADRING: "the shared-memory segment is not a logger_system ring of this version",
    lib.LSR_EARG: "invalid argument",
    lib.LSR_EEXIST: "another writer is running on this ring",
    lib.LSR_EPERM: "the ring belongs to another user or is writable by others",
    lib.LSR_EREMOVED: "the ring was removed",
}


def check(rc: int, what: str) -> int:
    """Return rc if it is a success, raise the matching exception otherwise."""
    if rc >= 0:
        return rc
    if rc == lib.LSR_ESYS:
        err = ffi.errno
        raise RingError(f"{what}: {os.strerror(err)} (errno {_errno.errorcode.get(err, err)})")
    msg = f"{what}: {_MESSAGES.get(rc, f'error {rc}')}"
    if rc == lib.LSR_EPERM:
        raise RingPermissionError(
            msg + "; remove it with `logger-system ring rm NAME` or pass allow_foreign=True "
            "if sharing it is intended"
        )
    if rc == lib.LSR_EEXIST:
        raise WriterBusyError(msg)
    if rc == lib.LSR_EARG:
        raise ConfigError(msg)
    exc = RingError(msg)
    exc.code = rc
    raise exc


__all__ = ["ffi", "lib", "check", "NATIVE_VERSION"]
