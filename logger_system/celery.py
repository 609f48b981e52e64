"""Celery integration: the worker and every pool child log into the ring.

    # tasks.py, the module that defines the Celery app
    from celery import Celery
    import logger_system.celery

    app = Celery("tasks", broker="redis://127.0.0.1:6379/0")
    logger_system.celery.install("app", level="INFO")

Calling logger_system.install() at import is not enough in a worker: Celery
sets up logging after the app module is imported, removing the root logger's
handlers (worker_hijack_root_logger), and the task loggers
(celery.utils.log.get_task_logger) hang under `celery.task`, which does not
propagate to the root logger.  install() therefore only connects receivers to
Celery's signals; when Celery has set up logging (after_setup_logger for the
root logger, after_setup_task_logger for `celery.task`), one logger_system
Handler is added to both.  Records of stdlib loggers, of task loggers, of
Celery's own loggers and, when the worker redirects stdout/stderr (the
default), of print() in a task go to the ring, each once.

Pool children: a prefork child is forked from the worker, after that set-up,
so it inherits the Handler, which attaches to the ring in each process; this
holds for the children that replace others (max_tasks_per_child,
max_memory_per_child, a killed child).  A child started as a fresh
interpreter imports the app module and sets up logging itself, so the same
receivers run there.  worker_process_init, and celeryd_after_setup in the
worker, check that the Handler is in place, which also covers applications
whose own `setup_logging` receiver configures logging instead of Celery.

Celery's own output stays as Celery configures it: the worker keeps printing
to stderr (or to --logfile) at its --loglevel; the ring receives records at
`level` and above whatever --loglevel says (the loggers' levels are lowered to
`level` where needed, and Celery's handlers keep --loglevel as their own
level).  `celery worker --logfile /dev/null` leaves the ring as the only
destination of the log records (the start-up banner is still printed).

Nothing attaches to the ring until a signal fires, so a process that imports
the app module only to send tasks (a web server calling .delay()) gets no
Handler and opens no ring.  If the ring cannot be attached in the worker (for
example it belongs to another user), the worker stops with the reason rather
than run with its records going nowhere.

Celery stays an optional dependency (`pip install 'logger_system[celery]'`):
`import logger_system` does not import this module or celery.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

from celery import signals

from .handler import Handler
from .producer import connect

__all__ = ["install", "handler"]

_UID = "logger_system.celery"
_TASK_LOGGER = "celery.task"


class _State:
    __slots__ = ("ring", "level", "options", "handler")

    def __init__(self) -> None:
        self.ring: str | None = None
        self.level = logging.INFO
        self.options: dict[str, Any] = {}
        self.handler: Handler | None = None


_state = _State()


def _level(level: int | str) -> int:
    # the check logging's own setLevel makes: a name it knows, or an int
    return int(logging._checkLevel(level.upper() if isinstance(level, str) else level))  # type: ignore[attr-defined]


def install(ring: str | None = None, *, level: int | str = "INFO", **options: Any) -> None:
    """Send every record of the Celery worker and of its pool children to the ring.

    Call it in the module that defines the Celery app.  ring and options are
    those of logger_system.connect (on_full, block_timeout, ...); records
    below `level` are not written to the ring.  The Handler is made in the
    worker when Celery has set up its logging (see the module's docstring);
    calling install() again replaces the settings, and the Handler if one was
    made.  Celery's own stderr (or --logfile) output stays, at --loglevel.
    """
    try:  # a wrong option fails here, at import, in every process
        inspect.signature(connect).bind(ring, **options)
    except TypeError as exc:
        raise TypeError(f"logger_system.celery.install(): {exc}") from None
    _state.ring, _state.level, _state.options = ring, _level(level), dict(options)
    old, _state.handler = _state.handler, None
    if old is not None:  # installed again: the new settings take the old Handler's place
        for logger in (logging.getLogger(), logging.getLogger(_TASK_LOGGER)):
            if old in logger.handlers:
                logger.removeHandler(old)
                _attach(logger, None)
        old.close()
    signals.after_setup_logger.connect(_on_setup_logger, weak=False, dispatch_uid=_UID)
    signals.after_setup_task_logger.connect(_on_setup_task_logger, weak=False, dispatch_uid=_UID)
    signals.worker_process_init.connect(_on_process_init, weak=False, dispatch_uid=_UID)
    signals.celeryd_after_setup.connect(_on_process_init, weak=False, dispatch_uid=_UID)


def handler() -> Handler | None:
    """The Handler install() made in this process, or None (not a worker, or not yet)."""
    return _state.handler


def _handler() -> Handler:
    h = _state.handler
    if h is None:
        try:
            h = Handler(_state.ring, **_state.options)
        except Exception as exc:
            # a receiver's Exception is only logged by Celery: stop the worker instead
            raise SystemExit(f"logger_system.celery: cannot log into ring "
                             f"{_state.ring or '(default)'}: {exc}") from exc
        h.setLevel(_state.level)
        _state.handler = h
    return h


def _attach(logger: logging.Logger, celery_level: int | None) -> None:
    """Put the Handler on `logger`; let records at our level through it, Celery's handlers
    keeping the level Celery gave the logger (celery_level, None: leave them)."""
    h = _handler()
    if h not in logger.handlers:
        logger.addHandler(h)
    if logger.getEffectiveLevel() > _state.level:
        if celery_level is not None:
            for other in logger.handlers:
                if other is not h and other.level == logging.NOTSET:
                    other.setLevel(celery_level)
        logger.setLevel(_state.level)


def _on_setup_logger(logger: logging.Logger | None = None, loglevel: int | None = None,
                     **_: Any) -> None:
    _attach(logger if logger is not None else logging.getLogger(), loglevel or logging.WARNING)


def _on_setup_task_logger(logger: logging.Logger | None = None, loglevel: int | None = None,
                          **_: Any) -> None:
    _attach(logger if logger is not None else logging.getLogger(_TASK_LOGGER),
            loglevel or logging.WARNING)


def _on_process_init(**_: Any) -> None:
    # logging is set up by now, by Celery or by the application: make sure records reach us
    h = _handler()
    root = logging.getLogger()
    if h not in root.handlers:
        root.addHandler(h)
    task = logging.getLogger(_TASK_LOGGER)
    if not task.propagate and h not in task.handlers:
        task.addHandler(h)
