"""The stdlib `logging` integration: Handler, install(), and a leaner LogRecord and Logger.

Handler.emit() never takes the handler's lock: the ring is safe for many
threads and processes, and a lock held across fork() is how the stdlib recipe
wedges.  A record keeps what `logging` knew about it: the logger name and level
in the record itself, the source location and thread name as fields, `extra`
as fields, and exc_info / stack_info as text fields.

Most of the cost of `logger.info(...)` is the stdlib's own, before any handler
runs: finding the caller's frame and building the LogRecord.  LogRecord and
Logger below compute exactly the same attributes with less work (install()
puts them in place), so records stay ordinary LogRecords for every other
handler and formatter.
"""
from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from collections.abc import Mapping as _Mapping
from typing import Any

from .producer import Producer, _utf8, connect, encode_fields, format_failure
from .record import FLAG_FORMAT_ERROR

# the attributes a LogRecord of this Python has; anything else came from `extra`
_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_STANDARD = _RECORD_KEYS | {"message", "asctime"}
_N_RECORD_KEYS = len(_RECORD_KEYS)
# the fields a Handler adds to every record
SOURCE_FIELDS = ("file", "line", "func", "thread")
_CACHE_LIMIT = 4096


def _json_str(value: Any) -> str:
    return json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)


class Handler(logging.Handler):
    """Send `logging` records to a logger_system ring.

    From dictConfig: {"class": "logger_system.Handler", "ring": "app"}.
    Options are those of logger_system.connect (on_full, block_timeout, ...).
    The ring is attached lazily in each process, so a Handler made in a parent
    keeps working in children started by fork, and one rebuilt by spawn from a
    config attaches there.
    """

    def __init__(self, ring: str | None = None, level: int | str = logging.NOTSET,
                 **options: Any) -> None:
        super().__init__(level)
        self._producer: Producer = connect(ring, **options)
        self._by_name: dict[str, Producer] = {}
        # (pathname, lineno, funcName, threadName) -> the fields JSON for that call site
        self._sources: dict[tuple, bytes] = {}
        self._formatter = logging.Formatter()
        # emit() writes the common record itself unless a subclass changed how records are written
        self._inline = type(self)._write is Handler._write

    @property
    def producer(self) -> Producer:
        return self._producer

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # no lock (see the module's docstring); Filterer.filter only when there are filters
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return False
            if rv is not True:  # a filter may return a record to use instead (3.12)
                record = rv  # type: ignore[assignment]
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            d = record.__dict__
            # the common record, in this frame: a LogRecord of logging's own classes with
            # no extra attributes, no traceback or stack, an exact str message; its
            # attributes read from its __dict__ (they are all there), its call site's
            # fields and its logger's Producer cached, one C call when the ring has room
            if (not self._inline or type(record) not in _PLAIN_RECORDS or len(d) != _N_RECORD_KEYS
                    or d["exc_info"] is not None or d["exc_text"] is not None
                    or d["stack_info"] is not None or type(d["msg"]) is not str):
                self._emit_other(record)
                return
            msg = d["msg"]
            args = d["args"]
            if args:
                try:
                    text = msg % args
                except Exception as exc:
                    self._write_text(record, format_failure(msg, args, exc), FLAG_FORMAT_ERROR)
                    return
            else:
                text = msg
            try:
                data = text.encode()
            except UnicodeEncodeError:  # lone surrogates
                data = text.encode("utf-8", "backslashreplace")
            key = (d["pathname"], d["lineno"], d["funcName"], d["threadName"])
            fdata = self._sources.get(key)
            if fdata is None:
                fdata = self._source_json(key)
            # from here _write's steps, in this frame: a Python call more per record is what
            # this path exists to save (tests/test_fast_emit.py holds both to the same records)
            name = d["name"]
            p = self._by_name.get(name)
            if p is None:
                p = self._child(name)
            level = d["levelno"]
            if not 0 <= level <= 255:
                level = min(max(level, 0), 255)
            n, fn = len(data), len(fdata)
            if n + fn > p._budget:
                p._put(level, data, fdata, 0)
                return
            try:
                slot = p._ring._tls.slot
            except AttributeError:
                p._put(level, data, fdata, 0)
                return
            rc = p._fast(slot, level, data, fdata)
            if rc:
                p._refused(rc, slot, level, data, fdata, 0)
        except Exception:
            self.handleError(record)

    def _emit_other(self, record: logging.LogRecord) -> None:
        """Any other record: its fields built when it has extra attributes, a traceback or a stack."""
        if (len(record.__dict__) == _N_RECORD_KEYS and record.exc_info is None
                and record.exc_text is None and record.stack_info is None):
            fdata = None  # the call site's fields: cached
        else:
            fdata = self._fields(record)
        self._write(record.name, record.levelno, record.msg, record.args, record.pathname,
                    record.lineno, record.funcName, record.threadName, fdata, record)

    def _write_text(self, record: logging.LogRecord, text: str, flags: int) -> None:
        """Put already formatted text in the ring with the record's call-site fields."""
        key = (record.pathname, record.lineno, record.funcName, record.threadName)
        fdata = self._sources.get(key)
        if fdata is None:
            fdata = self._source_json(key)
        p = self._by_name.get(record.name)
        if p is None:
            p = self._child(record.name)
        level = record.levelno
        p._put(level if 0 <= level <= 255 else min(max(level, 0), 255), _utf8(text), fdata, flags)

    def _write(self, name: str, level: int, msg: Any, args: Any, pathname: str, lineno: int,
               func: str | None, thread: str | None, fdata: bytes | None,
               record: logging.LogRecord | None) -> None:
        """Format msg % args and put it in the ring with the call site's fields."""
        flags = 0
        if type(msg) is str:  # not msg.__class__, which a class can fake
            if args:
                try:
                    text = msg % args
                except Exception as exc:
                    text, flags = format_failure(msg, args, exc), FLAG_FORMAT_ERROR
            else:
                text = msg
        else:
            try:
                text = record.getMessage() if record is not None else str(msg) % args if args else str(msg)
                if type(text) is not str:  # a str subclass's __str__ or __mod__: keep only the text
                    if not isinstance(text, str):
                        raise TypeError(f"msg % args gave {type(text).__name__}, not str")
                    text = str.__str__(text)
            except Exception as exc:
                text, flags = format_failure(msg, args, exc), FLAG_FORMAT_ERROR
        try:
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = text.encode("utf-8", "backslashreplace")
        if fdata is None:
            key = (pathname, lineno, func, thread)
            fdata = self._sources.get(key)
            if fdata is None:
                fdata = self._source_json(key)
        p = self._by_name.get(name)
        if p is None:
            p = self._child(name)
        if not 0 <= level <= 255:
            level = min(max(level, 0), 255)
        if flags or len(data) + len(fdata) > p._budget:
            p._put(level, data, fdata, flags)
            return
        try:
            slot = p._ring._tls.slot
        except AttributeError:
            p._put(level, data, fdata, 0)
            return
        rc = p._fast(slot, level, data, fdata)
        if rc:
            p._refused(rc, slot, level, data, fdata, 0)

    def _source_json(self, key: tuple) -> bytes:
        pathname, lineno, func, thread = key
        fdata = (f'{{"file":{_json_str(pathname)},"line":{int(lineno or 0)},'
                 f'"func":{_json_str(func)},"thread":{_json_str(thread)}}}').encode(
                     "utf-8", "backslashreplace")
        if len(self._sources) >= _CACHE_LIMIT:
            self._sources.clear()
        self._sources[key] = fdata
        return fdata

    def _fields(self, record: logging.LogRecord) -> bytes:
        fields: dict[str, Any] = {"file": record.pathname, "line": record.lineno,
                                  "func": record.funcName, "thread": record.threadName}
        for k, v in record.__dict__.items():
            if k not in _STANDARD:
                fields[k if isinstance(k, str) else repr(k)] = v
        if record.exc_info:
            fields["exc_info"] = self._formatter.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = record.stack_info
        return encode_fields(fields)

    def _child(self, name: str) -> Producer:
        if self._producer.closed:
            return self._producer  # its calls write nothing
        if len(self._by_name) > 10000:  # logger names made per request: do not grow forever
            self._by_name.clear()
        p = self._by_name[name] = self._producer.child(name)
        return p

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that could not be written: counted as dropped, and said on stderr
        without its message or arguments, which are not sanitized yet."""
        try:
            ring = self._producer.ring
            if not self._producer.closed:
                ring.count("dropped")
        except Exception:
            pass
        if logging.raiseExceptions and sys.stderr:
            try:
                exc = sys.exc_info()[1]
                sys.stderr.write(f"logger_system.Handler: a record of logger {str(record.name)[:200]!r} "
                                 f"could not be written ({type(exc).__name__}); it was dropped and "
                                 "counted, its message and arguments are not shown\n")
            except Exception:
                pass

    def close(self) -> None:
        self._producer.close()
        for p in self._by_name.values():
            p.close()
        super().close()


_time = time.time
_getpid = os.getpid
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_level_names = logging._levelToName  # what getLevelName reads; levels added later appear in it
_HAS_TASK_NAME = "taskName" in _RECORD_KEYS
_file_parts: dict[str, tuple[str, str]] = {}


class LogRecord(logging.LogRecord):
    """A LogRecord built with less work: same attributes, same values.

    The file name and module are cached per path, and the level name is read
    from the same table logging.getLevelName uses.
    """

    def __init__(self, name, level, pathname, lineno, msg, args, exc_info,  # noqa: PLR0913
                 func=None, sinfo=None, **kwargs):
        ct = _time()
        self.name = name
        self.msg = msg
        if (args and len(args) == 1 and isinstance(args[0], _Mapping) and args[0]):
            args = args[0]
        self.args = args
        try:
            self.levelname = _level_names[level]
        except (KeyError, TypeError):
            self.levelname = logging.getLevelName(level)
        self.levelno = level
        self.pathname = pathname
        try:
            self.filename, self.module = _file_parts[pathname]
        except (KeyError, TypeError):
            try:
                filename = os.path.basename(pathname)
                parts = (filename, os.path.splitext(filename)[0])
            except (TypeError, ValueError, AttributeError):
                parts = (pathname, "Unknown module")
            else:
                if isinstance(pathname, str):
                    if len(_file_parts) >= _CACHE_LIMIT:
                        _file_parts.clear()
                    _file_parts[pathname] = parts
            self.filename, self.module = parts
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func
        self.created = ct
        self.msecs = int((ct - int(ct)) * 1000) + 0.0
        self.relativeCreated = (ct - logging._startTime) * 1000
        if logging.logThreads:
            self.thread = _get_ident()
            self.threadName = _current_thread().name
        else:
            self.thread = None
            self.threadName = None
        self.processName = None
        if logging.logMultiprocessing:
            self.processName = "MainProcess"
            mp = sys.modules.get("multiprocessing")
            if mp is not None:
                try:
                    self.processName = mp.current_process().name
                except Exception:
                    pass
        self.process = _getpid() if logging.logProcesses else None
        if _HAS_TASK_NAME:
            self.taskName = None
            if getattr(logging, "logAsyncioTasks", True):
                asyncio = sys.modules.get("asyncio")
                if asyncio is not None:
                    try:
                        self.taskName = asyncio.current_task().get_name()
                    except Exception:
                        pass


_PLAIN_FACTORIES = (logging.LogRecord, LogRecord)
_PLAIN_RECORDS = frozenset(_PLAIN_FACTORIES)


class Logger(logging.Logger):
    """A logging.Logger that does the stdlib's work with less of it.

    When every handler a call would reach is a logger_system Handler without
    filters, and the call has no exc_info, extra or stack_info, the call goes
    straight to those handlers: no LogRecord is built, because nothing could
    see it.  Any other case takes the stdlib's path, with a findCaller that
    walks the same frames more cheaply.
    """

    def _log(self, level, msg, args, exc_info=None, extra=None, stack_info=False,  # noqa: PLR0913
             stacklevel=1):
        if exc_info or extra is not None or stack_info:
            return super()._log(level, msg, args, exc_info, extra, stack_info, stacklevel)
        return self._direct(level, msg, args, stacklevel)

    def _direct(self, level: int, msg: Any, args: tuple, stacklevel: int = 1) -> None:
        if self.filters or self.disabled or logging._logRecordFactory not in _PLAIN_FACTORIES:
            return logging.Logger._log(self, level, msg, args, stacklevel=stacklevel)
        targets = []
        found = False
        c = self
        while c:
            for h in c.handlers:
                if h.__class__ is not Handler or h.filters:
                    return logging.Logger._log(self, level, msg, args, stacklevel=stacklevel)
                found = True
                if level >= h.level:
                    targets.append(h)
            c = c.parent if c.propagate else None
        if not targets:
            if not found:  # no handler at all: the stdlib's lastResort applies
                logging.Logger._log(self, level, msg, args, stacklevel=stacklevel)
            return None
        f = sys._getframe(1)
        while stacklevel > 0:  # _caller(), inline: this is the hot path
            next_f = f.f_back
            if next_f is None:
                break
            f = next_f
            filename = f.f_code.co_filename
            if not (filename in _INTERNAL_FILES or ("importlib" in filename and "_bootstrap" in filename)):
                stacklevel -= 1
        co = f.f_code
        thread = _current_thread().name if logging.logThreads else None
        if len(args) == 1 and isinstance(args[0], _Mapping) and args[0]:
            args = args[0]
        for h in targets:
            try:
                h._write(self.name, level, msg, args, co.co_filename, f.f_lineno, co.co_name,
                         thread, None, None)
            except Exception:
                h.handleError(self.makeRecord(self.name, level, co.co_filename, f.f_lineno,
                                              msg, args, None, co.co_name))
        return None

    def findCaller(self, stack_info: bool = False, stacklevel: int = 1):
        f = _caller(stacklevel)
        co = f.f_code
        sinfo = None
        if stack_info:
            with io.StringIO() as sio:
                sio.write("Stack (most recent call last):\n")
                traceback.print_stack(f, file=sio)
                sinfo = sio.getvalue().removesuffix("\n")
        return co.co_filename, f.f_lineno, co.co_name, sinfo


def _level_method(level: int, name: str):
    def method(self: Logger, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            if kwargs:
                self._log(level, msg, args, **kwargs)
            else:
                self._direct(level, msg, args)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(logging.Logger, name).__doc__
    return method


for _level, _name in ((logging.DEBUG, "debug"), (logging.INFO, "info"), (logging.WARNING, "warning"),
                      (logging.ERROR, "error"), (logging.CRITICAL, "critical")):
    setattr(Logger, _name, _level_method(_level, _name))
Logger.fatal = Logger.critical  # type: ignore[attr-defined]

# frames of these files are logging's own, never the caller's
_INTERNAL_FILES = frozenset({logging._srcfile, Logger._direct.__code__.co_filename})


def _caller(stacklevel: int):
    """The frame findCaller reports: `stacklevel` frames out from the first not logging's own."""
    f = sys._getframe(1)
    while stacklevel > 0:
        next_f = f.f_back
        if next_f is None:
            break
        f = next_f
        filename = f.f_code.co_filename
        if not (filename in _INTERNAL_FILES or ("importlib" in filename and "_bootstrap" in filename)):
            stacklevel -= 1
    return f


def install(ring: str | None = None, *, level: int | str = logging.INFO, logger: str | None = None,
            lean: bool = True, also: Iterable[str] = (), **options: Any) -> Handler:
    """Send `logging` to a ring in one call; returns the Handler.

    The Handler goes on the root logger (or `logger`), replacing any
    logger_system Handler already there, and that logger's level is set.
    `also` names loggers that do not propagate to it, such as a server's own
    "gunicorn.error" or "uvicorn.error": the same Handler goes on each of them
    too (replacing a logger_system Handler there), and their levels stay as
    their owner sets them (e.g. --log-level).
    With lean=True (the default) the leaner LogRecord and Logger are put in
    place unless the application already chose its own: loggers that exist
    and are plain logging.Logger instances switch class, which adds no state.
    Options are those of logger_system.connect.
    """
    handler = Handler(ring, **options)
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if isinstance(h, Handler)]:
        target.removeHandler(old)
        old.close()
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    for name in [also] if isinstance(also, str) else also:
        other = logging.getLogger(name)
        if other is target:
            continue
        for old in [h for h in other.handlers if isinstance(h, Handler)]:
            other.removeHandler(old)
            old.close()
        other.addHandler(handler)
    if lean:
        if logging.getLogRecordFactory() is logging.LogRecord:
            logging.setLogRecordFactory(LogRecord)
        if logging.getLoggerClass() is logging.Logger:
            logging.setLoggerClass(Logger)
        with logging._lock:  # the lock logging.getLogger takes
            for existing in list(logging.Logger.manager.loggerDict.values()):
                if type(existing) is logging.Logger:
                    existing.__class__ = Logger
            if type(logging.root) is logging.RootLogger:
                logging.root.__class__ = _RootLogger
    return handler


class _RootLogger(logging.RootLogger, Logger):
    pass

