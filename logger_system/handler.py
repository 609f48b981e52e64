"""logging.Handler that writes stdlib LogRecords into the ring.

emit() never takes the handler's lock: the ring is safe for many threads and
processes, and a lock held across fork() is how the stdlib recipe wedges.
"""
from __future__ import annotations

import logging
from typing import Any

from .producer import Producer, connect

# attributes every LogRecord has; anything else came from `extra`
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class Handler(logging.Handler):
    """Send records to a logger_system ring.

    Usable from dictConfig: {"class": "logger_system.Handler", "ring": "app"}.
    Options are those of logger_system.connect (on_full, block_timeout, ...).
    """

    def __init__(self, ring: str | None = None, level: int = logging.NOTSET, **options: Any) -> None:
        super().__init__(level)
        self._producer: Producer = connect(ring, **options)
        self._by_name: dict[str, Producer] = {}
        self._formatter = logging.Formatter()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        rv = self.filter(record)
        if rv:
            self.emit(record if rv is True else rv)  # type: ignore[arg-type]
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception as exc:  # the stdlib would print a traceback to stderr; keep it as a record
            msg = f"<formatting failed: {type(exc).__name__}: {exc}; msg={record.msg!r}>"
        try:
            fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
            if record.exc_info:
                fields["exc_info"] = self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                fields["exc_info"] = record.exc_text
            if record.stack_info:
                fields["stack_info"] = record.stack_info
            if self._producer.closed:
                return
            p = self._by_name.get(record.name)
            if p is None:
                if len(self._by_name) > 10000:  # logger names made per request: do not grow forever
                    self._by_name.clear()
                p = self._by_name[record.name] = self._producer.child(record.name)
            p._emit(min(max(record.levelno, 0), 255), msg, (), fields)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._producer.close()
        super().close()
