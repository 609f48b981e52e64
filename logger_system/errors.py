"""One exception hierarchy for logger_system.

LoggerSystemError is never raised itself.  Caller mistakes subclass ValueError;
bad bytes from another process or from a file have their own type.
"""
from __future__ import annotations


class LoggerSystemError(Exception):
    """Base of every error logger_system raises."""


class ConfigError(LoggerSystemError, ValueError):
    """An option, flag or configuration file value is wrong; the message names it."""


class RingError(LoggerSystemError):
    """The shared-memory ring could not be opened or used."""


class RingPermissionError(RingError, PermissionError):
    """The ring belongs to another user or can be written by others."""


class WriterBusyError(RingError):
    """Another live writer already drains this ring."""


class CorruptRecordError(LoggerSystemError):
    """Bytes from another process or from a file are not what they claim to be."""
