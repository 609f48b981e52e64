"""loguru integration: a sink that writes each message into the ring, fields intact.

    from loguru import logger
    import logger_system.loguru
    logger.add(logger_system.loguru.sink("app"), format="{message}")
    logger.bind(user="u1").info("hello {}", "x")  # msg "hello x", fields user, file, line, ...

A record keeps what loguru knew about it: the formatted message as the text,
the level number (clamped to 0..255) and the module name in the record itself,
`extra` (what bind() and contextualize() added) as fields, and the call site as
the fields file, line, func and thread, as logger_system.Handler writes them.
A bound key of the same name wins over a call-site field.  When the record
carries an exception, its traceback text is the `exc_info` field.

The sink reads loguru's record, not the text loguru formatted, so the format
of `add()` does not reach the ring; format="{message}" keeps that text cheap.
Removing the sink (logger.remove(id)) stops it: it writes nothing afterwards.
enqueue=True is not needed (the ring is safe across threads and processes and
never waits on a disk) and costs detail: loguru drops a traceback's frames
before an enqueued record reaches the sink, so `exc_info` holds only the
exception's last line.
"""
from __future__ import annotations

import traceback
from typing import Any

from .producer import Producer, connect

__all__ = ["RingSink", "sink"]

_CACHE_LIMIT = 10000


def _format_exception(exc: Any) -> str | None:
    """loguru's (type, value, traceback) as traceback text; None if there is no exception."""
    try:
        etype, value, tb = exc
    except (TypeError, ValueError):
        return None
    if etype is None and value is None:
        return None
    try:
        return "".join(traceback.format_exception(etype, value, tb)).rstrip("\n")
    except Exception as err:  # a hostile exception: say so, never raise
        return f"<exception not formatted: {type(err).__name__}>"


class RingSink:
    """A loguru sink object: loguru calls write(message) and, when removed, stop().

    ring and connect_options are those of logger_system.connect(); its `level`
    drops records below it here, and its `name` is the logger name for
    records whose module loguru does not know (default "root").
    """

    def __init__(self, ring: str | None = None, **connect_options: Any) -> None:
        self._producer = connect(ring, **connect_options)
        self._by_name: dict[str, Producer] = {self._producer.name: self._producer}

    @property
    def producer(self) -> Producer:
        return self._producer

    def __repr__(self) -> str:
        return f"<logger_system RingSink ring={self._producer.ring.name!r}>"

    def write(self, message: Any) -> bool:
        """Write one loguru message (its `.record`) into the ring; True if it entered."""
        record = message.record
        level = record["level"].no
        level = 0 if level < 0 else 255 if level > 255 else level
        producer = self._producer
        name = record["name"]
        if name is not None and name != producer.name:
            producer = self._by_name.get(name) or self._child(name)
        if producer.min_level > level:  # below the sink's level, or stopped
            return False
        fields: dict[str, Any] = {
            "file": record["file"].path,
            "line": record["line"],
            "func": record["function"],
            "thread": record["thread"].name,
        }
        fields.update(record["extra"])
        if record["exception"] is not None:
            text = _format_exception(record["exception"])
            if text is not None:
                fields["exc_info"] = text
        # args=(): loguru has formatted the message already, no % is applied
        return producer._emit(level, record["message"], (), fields)

    __call__ = write

    def _child(self, name: str) -> Producer:
        if self._producer.closed:  # stopped: nothing is written, under any name
            return self._producer
        if len(self._by_name) >= _CACHE_LIMIT:  # module names made at run time: do not grow forever
            self._by_name.clear()
            self._by_name[self._producer.name] = self._producer
        child = self._by_name[name] = self._producer.child(str(name))
        return child

    def stop(self) -> None:
        """Write nothing more (loguru calls this from logger.remove())."""
        self._producer.close()
        for producer in list(self._by_name.values()):
            producer.close()

    close = stop


def sink(ring: str | None = None, **connect_options: Any) -> RingSink:
    """A sink for loguru's logger.add(): logger.add(sink("app"), format="{message}").

    ring and connect_options are those of logger_system.connect().
    """
    return RingSink(ring, **connect_options)
