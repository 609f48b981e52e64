"""structlog integration: bound context and keyword arguments arrive as fields.

    import structlog
    import logger_system.structlog
    logger_system.structlog.configure("app", level="INFO")
    log = structlog.get_logger("web").bind(request_id="r-1")
    log.info("user logged in", user="u1")   # msg "user logged in", fields request_id, user, ...

A record keeps what structlog knew about it: the event as the message text,
the level and the logger name (the first argument of get_logger) in the
record itself, everything else in the event dict as fields.  The pieces can be
used on their own with structlog.configure(): RingLoggerFactory as the
logger_factory and render_to_ring as the last processor.
"""
from __future__ import annotations

import sys
import traceback
from typing import Any

import structlog

from .producer import Producer, connect
from .record import level_number

__all__ = ["RingLogger", "RingLoggerFactory", "render_to_ring", "add_call_site", "configure"]

_CACHE_LIMIT = 10000
# the levels structlog's filtering loggers exist for, highest first
_STRUCTLOG_LEVELS = (50, 40, 30, 20, 10, 0)


def _method(level: int, name: str):
    def method(self: "RingLogger", event: Any = None, *args: Any, **fields: Any) -> bool:
        producer = self._producer
        if producer.min_level > level:  # below the producer's level, or closed
            return False
        # a non-str event is written as str(event); one whose __str__ fails becomes a
        # record that says so, never an exception in the caller
        return producer._emit(level, "" if event is None else event, args, fields)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = (f"Write a record at level {level}: `event` as the message text, "
                      "keyword arguments as fields.  True if it entered the ring.")
    return method


class RingLogger:
    """The logger structlog's bound loggers hand the final event dict to.

    Every method takes the last processor's output: the event (the message
    text) and the remaining keys as keyword arguments, which become fields.
    """

    __slots__ = ("_producer",)

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    @property
    def producer(self) -> Producer:
        return self._producer

    @property
    def name(self) -> str:
        return self._producer.name

    def __repr__(self) -> str:
        return f"<RingLogger {self._producer.name!r} ring={self._producer.ring.name!r}>"

    debug = _method(10, "debug")
    info = _method(20, "info")
    msg = _method(20, "msg")
    log = _method(20, "log")
    warning = _method(30, "warning")
    warn = _method(30, "warn")
    error = _method(40, "error")
    exception = _method(40, "exception")
    critical = _method(50, "critical")
    fatal = _method(50, "fatal")


class RingLoggerFactory:
    """structlog's logger_factory: one RingLogger per logger name, all on one ring.

    ring and connect_options are those of logger_system.connect(); its `name`
    option is the logger name used when get_logger() is called without one
    (default "root").
    """

    def __init__(self, ring: str | None = None, **connect_options: Any) -> None:
        self._producer = connect(ring, **connect_options)
        self._loggers: dict[str, RingLogger] = {self._producer.name: RingLogger(self._producer)}

    @property
    def producer(self) -> Producer:
        return self._producer

    def __call__(self, *args: Any) -> RingLogger:
        name = args[0] if args and isinstance(args[0], str) else self._producer.name
        logger = self._loggers.get(name)
        if logger is None:
            if self._producer.closed:  # a closed factory's loggers write nothing
                return RingLogger(self._producer)
            if len(self._loggers) >= _CACHE_LIMIT:  # names made per request: do not grow forever
                self._loggers.clear()
            producer = self._producer if name == self._producer.name else self._producer.child(name)
            logger = self._loggers[name] = RingLogger(producer)
        return logger

    def close(self) -> None:
        """Stop writing: every RingLogger made by this factory writes nothing afterwards."""
        self._producer.close()
        for logger in list(self._loggers.values()):
            logger.producer.close()


def _format_exception(value: Any) -> str | None:
    """An exc_info value (True, an exception or a (type, value, tb) tuple) as traceback text."""
    if isinstance(value, BaseException):
        info = (type(value), value, value.__traceback__)
    elif isinstance(value, tuple) and len(value) == 3:
        info = value
    elif value:
        info = sys.exc_info()
    else:
        return None
    if info[0] is None:
        return None
    try:
        return "".join(traceback.format_exception(*info)).rstrip("\n")
    except Exception as exc:  # a hostile exception: say so, never raise
        return f"<exception not formatted: {type(exc).__name__}>"


def render_to_ring(logger: Any, method_name: str, event_dict: dict) -> dict:
    """The last processor: the event dict as RingLogger takes it.

    "level" is dropped (the record has its level), an `exc_info` no processor
    has rendered yet becomes the traceback text under "exception" (as
    structlog.processors.format_exc_info would put it), everything else stays.
    Values json cannot express are written as text when the record is made.
    """
    event_dict.pop("level", None)
    if "exc_info" in event_dict:
        text = _format_exception(event_dict.pop("exc_info"))
        if text is not None:
            event_dict.setdefault("exception", text)
    return event_dict


_callsite = structlog.processors.CallsiteParameterAdder(
    {structlog.processors.CallsiteParameter.PATHNAME,
     structlog.processors.CallsiteParameter.LINENO,
     structlog.processors.CallsiteParameter.FUNC_NAME,
     structlog.processors.CallsiteParameter.THREAD_NAME},
    additional_ignores=[__name__])
_CALLSITE_NAMES = (("pathname", "file"), ("lineno", "line"), ("func_name", "func"),
                   ("thread_name", "thread"))


def add_call_site(logger: Any, method_name: str, event_dict: dict) -> dict:
    """A processor adding the fields logger_system.Handler writes: file, line, func, thread.

    A key the caller bound or passed under one of those names is kept.
    """
    event_dict = _callsite(logger, method_name, event_dict)
    for found, field in _CALLSITE_NAMES:
        if found in event_dict:
            value = event_dict.pop(found)
            event_dict.setdefault(field, value)
    return event_dict


def _filtering_level(level: int) -> int:
    # the highest level structlog has a filtering logger for; the Producer filters the rest
    return next(lvl for lvl in _STRUCTLOG_LEVELS if lvl <= level)


def configure(ring: str | None = None, *, processors: Any = None, callsite: bool = True,
              **connect_options: Any) -> RingLoggerFactory:
    """Configure structlog to log into the ring; returns the logger factory.

    processors: more processors, run after the defaults (context variables,
    level, stack_info, exc_info and, with callsite, the call site's file, line,
    func and thread) and before render_to_ring.
    connect_options: those of logger_system.connect(); its `level` (default 0)
    also makes calls below it nearly free in structlog's bound logger.
    """
    level = level_number(connect_options.get("level", 0))
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if callsite:
        chain.append(add_call_site)
    chain.extend(processors or ())
    chain.append(render_to_ring)
    factory = RingLoggerFactory(ring, **connect_options)
    structlog.configure(
        processors=chain,
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(_filtering_level(level)),
        cache_logger_on_first_use=True,
    )
    return factory
