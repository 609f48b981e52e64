"""connect() and Producer: format a record and copy it into the ring.

A call never raises because of what it was asked to log: a bad format string,
an argument whose __str__ fails or a field json cannot express all become a
record that says so.  A message that is not exactly a str becomes
str(msg) % args, as in logging, and only the text of that is kept, so a str
subclass's own encode() or __mod__ cannot fail the call; a field json cannot
write becomes text and costs no other field.  A call never touches a disk and
never holds a lock another process could hold while the record is copied (the
ring's claim is one compare-and-swap); a call that cannot wait keeps its own
interpreter's GIL for the copy, about 100 ns, and one that waits releases it.

Nor does a call raise, or stall its process, because of the ring's state.  When
the ring is full, on_full="block" waits up to `block_timeout`, only while a
writer is alive to make room (its heartbeat younger than `writer_timeout`), and
only once: after a wait that timed out, the process's calls drop at once until
one finds room (native/ring.c, lsr_write).  A call on a thread that is running
an asyncio event loop never waits.  All producer slots taken, or the ring
removed with none to move to: the record is dropped.  Every drop is counted in
`dropped` and, where there is one, under its reason.
"""
from __future__ import annotations

import ctypes
import json
import math
import reprlib
import sys
from collections.abc import Mapping
from itertools import islice
from typing import Any

from ._native import ffi, lib
from .errors import ConfigError
from .record import (FLAG_FORMAT_ERROR, FLAG_TRUNCATED, SHORT_TRUNCATION_MARKER, TRUNCATION_MARKER,
                     level_number, truncate_utf8)
from .ring import Ring, attach, ring_name

_C_TRUNCATED = lib.LSR_C_TRUNCATED
_C_FORMAT_ERRORS = lib.LSR_C_FORMAT_ERRORS
_HEADER = lib.LSR_REC_HEADER
_emit_c = lib.lsr_emit
_emit_wait = lib.lsr_emit_wait
_EREMOVED = lib.LSR_EREMOVED
_EWAIT = lib.LSR_EWAIT
_ENOSLOT = lib.LSR_ENOSLOT

# lsr_emit bound to one lsr_producer, as a builtin that takes (slot, level, msg[, fields])
# bytes directly (_ffi_build.py, FAST_EMIT): the hot path's one C call
try:
    _new_builtin = ctypes.pythonapi.PyCFunction_NewEx
    _new_builtin.restype = ctypes.py_object
    _new_builtin.argtypes = (ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)
    _EMIT_METHOD = int(ffi.cast("uintptr_t", lib.lsr_py_emit_method()))
except (AttributeError, OSError):  # an interpreter whose C API ctypes cannot reach
    _new_builtin = None

# debug() ... critical() as builtins bound to one Producer, the whole common call in C
# (_ffi_build.py, LEVEL_METHOD); without _new_builtin the Python methods below stay
_LEVELS = ((10, "debug"), (20, "info"), (30, "warning"), (40, "error"), (50, "critical"))
_LEVEL_METHODS = tuple(int(ffi.cast("uintptr_t", lib.lsr_py_level_method(i))) for i in range(len(_LEVELS)))


def _emitter(c: Any):
    """The fast lsr_emit of producer struct c; it holds c, so c lives as long as it does."""
    if _new_builtin is None:
        def emit(slot: int, level: int, msg: bytes, fields: bytes = b"") -> int:
            return _emit_c(c, slot, level, 0, msg, len(msg), fields, len(fields))
        return emit
    return _new_builtin(_EMIT_METHOD, (c, int(ffi.cast("uintptr_t", c))), None)


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # past sys.get_int_max_str_digits()
            return _int_text(x)


_repr = _Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlevel = 3


def _type_name(value: Any) -> str:
    try:
        name = type(value).__name__
        return name if type(name) is str else str.__str__(name)
    except Exception:  # a metaclass can make even the name fail
        return "?"


def _unrepresentable(value: Any, exc: BaseException) -> str:
    return f"<unrepresentable {_type_name(value)}: {_type_name(exc)}>"


def _safe_repr(value: Any) -> str:
    """A bounded repr, always an exact str, never raising."""
    try:
        text = _repr.repr(value)
        # a __repr__ may return a str subclass, whose own methods may fail later
        return text if type(text) is str else str.__str__(text)
    except Exception as exc:  # a hostile __repr__: say so, never raise
        return _unrepresentable(value, exc)


def _text(value: str) -> str:
    """value as an exact str, lone surrogates as backslash escapes; str methods, not the value's own."""
    return str.encode(value, "utf-8", "backslashreplace").decode("utf-8")


def _int_text(value: int) -> str:
    """A bounded description of an int too long to write in decimal, e.g. "<int with 5001 digits>"."""
    magnitude = int.__abs__(value)
    estimate = math.log10(magnitude)
    digits = int(estimate) + 1
    power = round(estimate)
    # near a power of ten the float may land on either side: settle it exactly (rare)
    if abs(estimate - power) <= 1e-9 * estimate:
        digits = power + 1 if magnitude >= 10 ** power else power
    return f"<{'negative ' if int.__lt__(value, 0) else ''}int with {digits} digits>"


def _json_int(value: int) -> int | str:
    """value, or text if json cannot write it (more digits than sys.get_int_max_str_digits())."""
    if int.bit_length(value) < 2048:  # at most 617 digits: below any limit Python allows (640)
        return value
    try:
        int.__repr__(value)
    except ValueError:
        return _int_text(value)
    return value


def _json_default(value: Any) -> Any:
    # values json cannot express are written as text, bounded
    text = str(value)
    return text if len(text) <= 4096 else text[:4096] + "...[truncated]"


# NaN and infinities are not JSON: they take the slow path and become text
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default,
                          check_circular=True, allow_nan=False).encode


def _plain(value: Any, depth: int = 0) -> Any:
    """A json-safe copy of a field value: bounded depth, string keys, no cycles.

    Mappings and collections are copied, other objects json has no form for
    become the text json's default gives them; a part that fails to copy
    becomes text that says so, and costs nothing beside it.
    """
    try:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return _json_int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else float.__repr__(value)
        if isinstance(value, str):
            return _text(value)
        if depth >= 8:
            return _safe_repr(value)
        if isinstance(value, Mapping):
            return {_safe_key(k): _plain(v, depth + 1) for k, v in islice(value.items(), 1000)}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_plain(v, depth + 1) for v in islice(value, 1000)]
        try:
            return _text(_json_default(value))
        except Exception:
            return _safe_repr(value)
    except Exception as exc:
        return _unrepresentable(value, exc)


def _safe_key(key: Any) -> str:
    if isinstance(key, str):
        try:
            return _text(key)
        except Exception:  # a str in name only (a faked __class__)
            pass
    return _text(_safe_repr(key))


def _field_json(value: Any) -> bytes:
    """One field's value as JSON: as json writes it if it can, else as text."""
    try:
        return _dumps(value).encode("utf-8")
    except Exception:
        pass
    try:
        return _dumps(_plain(value)).encode("utf-8")
    except Exception as exc:  # the last resort still describes what happened
        return _dumps(_unrepresentable(value, exc)).encode("utf-8")


def encode_fields(fields: Mapping[str, Any]) -> bytes:
    """Fields as compact JSON bytes; values json cannot express become text.

    The whole mapping is tried at once; if that fails, field by field, so one
    value json cannot write costs only itself.
    """
    try:
        return _dumps(fields).encode("utf-8")
    except Exception:
        pass
    try:
        return b"{" + b",".join(_dumps(_safe_key(k)).encode("utf-8") + b":" + _field_json(v)
                                for k, v in list(fields.items())) + b"}"
    except Exception as exc:  # the mapping itself failed (its items(), say)
        return _dumps({"_fields_error": _type_name(exc)}).encode("utf-8")


def format_message(msg: Any, args: tuple) -> tuple[str, int]:
    """msg % args as the stdlib does it, str(msg) first; (text, flags), text an exact str."""
    try:
        text = msg if type(msg) is str else str(msg)
        if args:
            if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
                args = args[0]  # stdlib: logger.info("%(a)s", {"a": 1})
            text = text % args
        if type(text) is not str:
            # str(msg) may return a str subclass, and its __mod__ anything: keep only the text
            if not isinstance(text, str):
                raise TypeError(f"msg % args gave {_type_name(text)}, not str")
            text = str.__str__(text)
        return text, 0
    except Exception as exc:
        return format_failure(msg, args, exc), FLAG_FORMAT_ERROR


def format_failure(msg: Any, args: Any, exc: BaseException) -> str:
    """The text a record gets when msg % args fails: what failed, and what was asked."""
    return (f"<formatting failed: {_type_name(exc)}: {_safe_repr(exc)}; "
            f"msg={_safe_repr(msg)} args={_safe_repr(args)}>")


def _utf8(text: str) -> bytes:
    """An exact str as UTF-8, lone surrogates as backslash escapes."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


DEFAULT_WRITER_TIMEOUT = 5.0  # native/ring.h, LSR_WRITER_TIMEOUT_NS


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Producer:
    """Logs into one ring.  Cheap to create; share it freely between threads."""

    def __init__(self, ring: Ring, *, name: str = "root", on_full: str = "block",
                 block_timeout: float = 1.0, level: int | str = 0,
                 writer_timeout: float = DEFAULT_WRITER_TIMEOUT) -> None:
        if on_full not in ("block", "drop"):
            raise ConfigError(f"on_full={on_full!r}: use 'block' or 'drop'")
        if not (_seconds(block_timeout) and 0 <= block_timeout <= 3600):
            raise ConfigError(f"block_timeout={block_timeout!r}: use seconds between 0 and 3600")
        if not (_seconds(writer_timeout) and 0.1 <= writer_timeout <= 3600):
            raise ConfigError(f"writer_timeout={writer_timeout!r}: use seconds between 0.1 and 3600 "
                              "(the writer beats at least every 50 ms)")
        self._ring = ring
        self.name = str(name)
        # the logger name may take at most a quarter of a record
        self._logger = truncate_utf8(self.name.encode("utf-8", "backslashreplace"),
                                     min(1024, (ring.max_record - _HEADER) // 4))
        self.on_full = on_full
        self.block_timeout = float(block_timeout)
        self._block = on_full == "block"
        self._timeout_ns = int(block_timeout * 1e9)
        self.writer_timeout = float(writer_timeout)
        self.min_level = level_number(level)
        self._budget = ring.max_record - _HEADER - len(self._logger)
        # the fixed arguments of every write, kept in C (self._logger keeps the bytes alive)
        self._c = ffi.new("lsr_producer *")
        self._c.ring = ring.ptr
        self._logger_c = ffi.from_buffer(self._logger)
        self._c.logger = self._logger_c
        self._c.logger_len = len(self._logger)
        # "block" asks first (LSR_EWAIT), so that _refused can decline to wait in an event loop
        self._c.block = lib.LSR_BLOCK_ASK if self._block else lib.LSR_DROP
        self._c.timeout_ns = self._timeout_ns
        self._c.writer_timeout_ns = int(self.writer_timeout * 1e9)
        # never waits (LSR_BLOCK_ASK or LSR_DROP above), so it may keep the GIL
        self._fast = _emitter(self._c)
        self._bind_levels()
        ring._producers.add(self)

    def _bind_levels(self) -> None:
        """debug() ... critical() (and warn, fatal) as C builtins of this Producer, where its
        class has the Python ones; they take the common call and hand the rest to those.

        Each builtin holds this Producer (it reads min_level, _budget and _ring._tls.slot
        from it on every call, and calls its methods for the rest), and the Producer holds
        the builtins: a cycle, which the garbage collector frees, so a Producer no longer
        referenced is freed at a collection rather than at once.
        """
        if _new_builtin is None:
            return
        cls = type(self)
        address = int(ffi.cast("uintptr_t", self._c))
        for (level, name), method in zip(_LEVELS, _LEVEL_METHODS):
            python = _PYTHON_LEVELS[name]
            if getattr(cls, name, None) is python:  # a subclass's own method is kept
                self.__dict__[name] = _new_builtin(method, (self._c, address, level, self, python), None)
        for alias, name in (("warn", "warning"), ("fatal", "critical")):
            if name in self.__dict__ and getattr(cls, alias, None) is _PYTHON_LEVELS[name]:
                self.__dict__[alias] = self.__dict__[name]

    @property
    def ring(self) -> Ring:
        return self._ring

    def __reduce__(self):
        # a spawn-started child attaches by name
        return (_reconnect, (self._ring.name, self.name, self.on_full, self.block_timeout,
                             self.min_level, self.writer_timeout))

    def child(self, name: str) -> "Producer":
        """A Producer for another logger name on the same ring (closed if this one is)."""
        p = Producer(self._ring, name=name, on_full=self.on_full, block_timeout=self.block_timeout,
                     level=0 if self.closed else self.min_level, writer_timeout=self.writer_timeout)
        if self.closed:
            p.close()
        return p

    def log(self, level: int | str, msg: Any, /, *args: Any, **fields: Any) -> bool:
        lvl = level_number(level)
        return self._emit(lvl, msg, args, fields) if self.min_level <= lvl else False

    def _emit(self, level: int, msg: Any, args: tuple, fields: dict) -> bool:
        """Returns True if the record entered the ring, False if it was dropped (and counted).

        This is the hot path: attribute lookups are hoisted and the common case
        (a str message, its % arguments, no fields) runs straight through.
        """
        flags = 0
        # type(), not msg.__class__, which a class can fake; anything but an exact str
        # goes through format_message, and the text it returns is an exact str
        if type(msg) is str and (not args or len(args) > 1 or args[0].__class__ is not dict):
            try:
                text = msg % args if args else msg
            except Exception:
                text, flags = format_message(msg, args)
        else:
            text, flags = format_message(msg, args)
        return self._put(level, _utf8(text), encode_fields(fields) if fields else b"", flags)

    def _put(self, level: int, data: bytes, fdata: bytes, flags: int) -> bool:
        """Copy one encoded record (message and fields JSON) into the ring."""
        if len(data) + len(fdata) > self._budget:
            data, fdata, flags = self._fit(data, fdata, flags)
        ring = self._ring
        try:
            slot = ring._tls.slot
        except AttributeError:
            slot = ring.slot()
        rc = _emit_c(self._c, slot, level, flags, data, len(data), fdata, len(fdata))
        if rc:
            return self._refused(rc, slot, level, data, fdata, flags)
        if flags:
            self._count_flags(flags)
        return True

    def _format_failed(self, level: int, msg: str, args: tuple) -> bool:
        """The common call after msg % args raised: the record says what failed."""
        text, flags = format_message(msg, args)
        return self._put(level, _utf8(text), b"", flags)

    def _count_flags(self, flags: int) -> None:
        ptr = self._c.ring
        if flags & FLAG_FORMAT_ERROR:
            lib.lsr_count(ptr, _C_FORMAT_ERRORS, 1)
        if flags & FLAG_TRUNCATED:
            lib.lsr_count(ptr, _C_TRUNCATED, 1)

    def _refused(self, rc: int, slot: int, level: int, data: bytes, fdata: bytes, flags: int) -> bool:
        """A record lsr_emit did not take: wait for room (once), move to a new ring, or drop.

        Whether it entered a ring in the end; a drop is counted (in C, or here).
        Never raises for the ring's state.
        """
        if rc == _EREMOVED:
            return self._put_moved(level, data, fdata, flags)
        if rc == _EWAIT:
            aio = sys.modules.get("asyncio")
            if aio is not None and aio._get_running_loop() is not None:
                # waiting here would stall every task of the loop: drop instead
                ptr = self._c.ring
                lib.lsr_count(ptr, lib.LSR_C_DROPPED, 1)
                lib.lsr_count(ptr, lib.LSR_C_DROP_IN_LOOP, 1)
                rc = lib.LSR_EFULL
            else:
                rc = _emit_wait(self._c, slot, level, flags, data, len(data), fdata, len(fdata))
                if rc == _EREMOVED:
                    return self._put_moved(level, data, fdata, flags)
        elif rc == _ENOSLOT:
            self._ring.retry_slot()
        if flags:
            self._count_flags(flags)
        return rc == 0

    def _put_moved(self, level: int, data: bytes, fdata: bytes, flags: int) -> bool:
        """The ring was removed (`ring rm`): put the record in the ring that has its name
        now, and stay there.  Dropped, and counted (by follow, in the removed ring), if there
        is none.  A Ring that holds for a damaged segment (Ring.holding) comes here too."""
        ring = self._ring
        removed = self._c.ring
        if not ring.follow(removed):
            return False
        self._c.ring = ring._ptr
        self._budget = ring.max_record - _HEADER - len(self._logger)
        # again, in the new ring (only another `ring rm` in between brings it back here)
        return self._put(level, data, fdata, flags)

    def exception(self, msg: Any, /, *args: Any, **fields: Any) -> bool:
        """error() with the current exception's traceback in the `exc_info` field."""
        import traceback

        if sys.exc_info()[0] is not None:
            fields.setdefault("exc_info", traceback.format_exc())
        return self.error(msg, *args, **fields)

    def _fit(self, data: bytes, fdata: bytes, flags: int) -> tuple[bytes, bytes, int]:
        """Cut a record over max_record, leaving a visible marker; the result always fits."""
        budget = self._budget
        if len(fdata) > budget // 2:
            fdata = encode_fields({"_truncated_fields_bytes": len(fdata)})
            if len(fdata) > budget // 2:
                fdata = b""
        room = budget - len(fdata)
        if len(data) > room:
            marker = TRUNCATION_MARKER.format(len(data)).encode()
            if len(marker) > room // 2:
                marker = SHORT_TRUNCATION_MARKER.encode()[:room]
            data = truncate_utf8(data, room - len(marker)) + marker
        return data, fdata, flags | FLAG_TRUNCATED

    def close(self) -> None:
        """Stop logging through this Producer: later calls return False and write nothing.

        The ring's mapping stays for other Producers of this process.
        """
        self.min_level = _CLOSED

    @property
    def closed(self) -> bool:
        return self.min_level == _CLOSED


_CLOSED = 1 << 30


def _level_method(level: int, name: str):
    # The whole common call in one frame: an exact str message, its % arguments (not a
    # single dict), no fields, a record that fits, a thread that has its slot and a ring
    # with room.  Anything else goes through _emit / _put, which handle every case.
    # Producer._bind_levels puts a C builtin that does the same in each Producer's place of
    # this method; the builtin hands what it does not take to this one, or to the same
    # _format_failed, _put or _refused call this one would make (tests/test_fast_level_call.py
    # holds the two to the same records and counters).
    def method(self: Producer, msg: Any, /, *args: Any, **fields: Any) -> bool:
        if self.min_level > level:
            return False
        # type(), not msg.__class__, which a class can fake
        if fields or type(msg) is not str or (len(args) == 1 and args[0].__class__ is dict):
            return self._emit(level, msg, args, fields)
        if args:
            try:
                text = msg % args
            except Exception:
                return self._format_failed(level, msg, args)
        else:
            text = msg
        data = _utf8(text)  # the C builtins take the hot call; this one may make a call more
        n = len(data)
        if n > self._budget:
            return self._put(level, data, b"", 0)
        try:
            slot = self._ring._tls.slot
        except AttributeError:
            return self._put(level, data, b"", 0)
        rc = self._fast(slot, level, data)
        if rc:
            return self._refused(rc, slot, level, data, b"", 0)
        return True

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Log msg % args at {name.upper()} ({level}); keyword arguments become fields."
    return method


_PYTHON_LEVELS = {name: _level_method(level, name) for level, name in _LEVELS}
for _name, _method in _PYTHON_LEVELS.items():
    setattr(Producer, _name, _method)
Producer.warn = Producer.warning  # type: ignore[attr-defined]
Producer.fatal = Producer.critical  # type: ignore[attr-defined]


def connect(ring: str | None = None, *, name: str = "root", on_full: str = "block",
            block_timeout: float = 1.0, level: int | str = 0, capacity: int | None = None,
            max_record: int | None = None, mode: int = 0o600, allow_foreign: bool = False,
            writer_timeout: float = DEFAULT_WRITER_TIMEOUT) -> Producer:
    """Attach to (or create) the ring and return a Producer for it.

    ring: the ring's name (None: $LOGGER_SYSTEM_RING, else "logger_system").
    name: the logger name written with every record.
    on_full: "block" (wait up to block_timeout seconds for room, then drop) or "drop".
      A process waits at most once: after a wait that timed out its calls drop
      at once until the ring has room again; a call on a thread running an
      asyncio event loop never waits.
    writer_timeout: a writer whose heartbeat is older than this many seconds is
      taken as gone, and nothing waits for it.
    level: records below it are discarded in the caller, nearly free.
    capacity, max_record, mode: used only if this call creates the ring.
    """
    options: dict[str, Any] = {"mode": mode, "allow_foreign": allow_foreign}
    if capacity is not None:
        options["capacity"] = capacity
    if max_record is not None:
        options["max_record"] = max_record
    r = attach(ring_name(ring), **options)
    return Producer(r, name=name, on_full=on_full, block_timeout=block_timeout, level=level,
                    writer_timeout=writer_timeout)


def _reconnect(ring: str, name: str, on_full: str, block_timeout: float, level: int,
               writer_timeout: float = DEFAULT_WRITER_TIMEOUT) -> Producer:
    return connect(ring, name=name, on_full=on_full, block_timeout=block_timeout, level=level,
                   writer_timeout=writer_timeout)
