"""logger_system: multi-process logging through a shared-memory ring and one writer.

    import logger_system
    log = logger_system.connect()          # ring from $LOGGER_SYSTEM_RING or "logger_system"
    log.info("user %s logged in", user_id, request_id=rid)

Run `logger-system writer --dir DIR` to drain the ring into rotated files.
"""
from __future__ import annotations

from .errors import (ConfigError, CorruptRecordError, LoggerSystemError, RingError,
                     RingPermissionError, WriterBusyError)
from .producer import Producer, connect
from .ring import Ring, RingStats

__version__ = "0.1.0"


def __getattr__(name: str):
    # the logging integration imports `logging`; load it only when asked for
    if name in ("Handler", "install"):
        from . import handler

        return getattr(handler, name)
    raise AttributeError(f"module 'logger_system' has no attribute {name!r}")


__all__ = [
    "connect", "Producer", "Handler", "install", "Ring", "RingStats",
    "LoggerSystemError", "ConfigError", "RingError", "RingPermissionError",
    "WriterBusyError", "CorruptRecordError",
]
