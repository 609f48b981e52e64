"""One exception hierarchy for logger_system.

LoggerSystemError is never raised itself.  Caller mistakes subclass ValueError;
bad bytes from another process or from a file have their own type.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_SHOWN = 80  # characters of a string a message shows
_SHOWN_KEYS = 5  # names a message lists
_PATH_MAX = 4096  # no usable path is longer (PATH_MAX); a message shows a longer one cut


class LoggerSystemError(Exception):
    """Base of every error logger_system raises."""


class ConfigError(LoggerSystemError, ValueError):
    """An option, flag or configuration file value is wrong; the message names it."""


class RingError(LoggerSystemError):
    """The shared-memory ring could not be opened or used.  `code`: the native return code
    (LSR_E*), when one is the cause."""

    code: int | None = None


class RingPermissionError(RingError, PermissionError):
    """The ring belongs to another user or can be written by others."""


class WriterBusyError(RingError):
    """Another live writer already drains this ring."""


class CorruptRecordError(LoggerSystemError):
    """Bytes from another process or from a file are not what they claim to be."""


class ShipError(LoggerSystemError):
    """Base of the shipping layer's errors (logger_system/ship/errors.py has the rest)."""


class TransportError(ShipError, ConnectionError):
    """A log receiver could not be reached, refused this side (an ERROR frame, a TLS
    refusal) or broke off the conversation; what was not acknowledged is sent again."""


# ---- values in messages ----------------------------------------------------

def describe(value: Any) -> str:
    """A config value for an error message: the repr of a short string or number, else its kind.

    Never the repr of a whole list or table (a YAML alias bomb expands to
    billions of items) nor str() of an integer of thousands of digits (which
    raises ValueError itself).
    """
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        text = repr(value[:_SHOWN + 1])  # escapes make a repr up to 10 times longer than its string
        if len(value) <= _SHOWN and len(text) <= _SHOWN + 2:
            return text
        return f"{text[:_SHOWN]}... ({len(value)} characters)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a table of {len(value)} key(s)"
    return f"a value of type {type(value).__name__}"


def describe_keys(keys: Any) -> str:
    """The first few of a table's keys, described, for an "unknown key(s)" message."""
    names = sorted(describe(k) for k in keys)
    more = f" and {len(names) - _SHOWN_KEYS} more" if len(names) > _SHOWN_KEYS else ""
    return ", ".join(names[:_SHOWN_KEYS]) + more


# Key material given where a path belongs (`--key "$(cat app.key)"`): a key line
# (lsk1:..., lsx1-identity:...) or a long base64 run, as a key file holds.
_KEY_SHAPED = re.compile(r"lsk1:|lsx1-identity:|[A-Za-z0-9+/=_-]{40,}")


def looks_like_key(text: str) -> bool:
    """Whether text may be key material; when in doubt, yes (it is then never shown)."""
    return any(_KEY_SHAPED.search(part) and any(c.isdigit() for c in part) for part in text.split("/"))


def shown_path(path: Path | str) -> str:
    """A path for a message: whole, unless it is longer than any usable path or looks like a key."""
    text = str(path)
    if looks_like_key(text):
        return "(the value given, not shown: it looks like key material, not a file name)"
    return text if len(text) <= _PATH_MAX else f"{text[:_SHOWN]}... ({len(text)} characters)"
