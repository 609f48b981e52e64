"""logging integration: what Handler, the lean Logger and LogRecord, and install() write.

Records are read back from the real ring with the writer's own drain and
formatting (test_ring.Drainer), so each test sees exactly the JSON a log file
would hold.
"""
from __future__ import annotations

import logging
import logging.config
import sys
import threading
import uuid

import pytest

from logger_system import handler as hmod
from logger_system.handler import Handler, Logger, LogRecord, install
from logger_system.ring import Ring
from test_ring import Drainer


def fresh_logger(name: str | None = None, cls: type = logging.Logger) -> logging.Logger:
    """A logger outside the hierarchy's cache, so tests do not share state."""
    lg = cls(name or f"t.{uuid.uuid4().hex[:8]}")
    lg.parent = logging.root
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    return lg


@pytest.fixture
def drained(ring_name):
    rings: list[Ring] = []

    def read() -> list[dict]:
        if not rings:
            rings.append(Ring(ring_name, create=False))
        recs, malformed, abandoned = Drainer(rings[0]).drain_all()
        assert malformed == abandoned == 0
        return [r.obj for r in recs]

    yield read
    for r in rings:
        r.close()


@pytest.fixture(params=[logging.Logger, Logger], ids=["stdlib-logger", "lean-logger"])
def logger_cls(request):
    return request.param


def test_message_level_name_and_call_site(ring_name, drained, logger_cls):
    lg = fresh_logger("svc.orders", logger_cls)
    lg.addHandler(Handler(ring_name))
    line = sys._getframe().f_lineno + 1
    lg.warning("order %s for %d items", "A-17", 3)
    lg.debug("plain %s message without args")
    [first, second] = drained()
    assert first["msg"] == "order A-17 for 3 items"
    assert first["level"] == "WARNING"
    assert first["logger"] == "svc.orders"
    assert first["fields"] == {"file": __file__, "line": line,
                               "func": "test_message_level_name_and_call_site",
                               "thread": "MainThread"}
    assert second["msg"] == "plain %s message without args"  # no args: no % applied, as stdlib
    assert second["level"] == "DEBUG"
    assert second["fields"]["line"] == line + 1


def test_lean_and_stdlib_paths_write_the_same(ring_name, drained):
    h = Handler(ring_name)
    plain, lean = fresh_logger("same", logging.Logger), fresh_logger("same", Logger)
    plain.addHandler(h)
    lean.addHandler(h)

    def site(lg):  # one call site for both
        lg.error("value %(a)s and %(b)d", {"a": "x", "b": 5})

    site(plain)
    site(lean)
    a, b = drained()
    for k in ("msg", "level", "logger", "fields", "pid"):
        assert a[k] == b[k], k
    assert a["msg"] == "value x and 5"
    assert a["fields"]["func"] == "site"


def test_extra_exc_info_and_stack_info(ring_name, drained, logger_cls):
    lg = fresh_logger("x", logger_cls)
    lg.addHandler(Handler(ring_name))
    try:
        {}["missing"]
    except KeyError:
        lg.exception("lookup failed", extra={"user": "u1", "attempt": 2, "tags": ["a", "b"]})
    lg.info("where am I", stack_info=True)
    lg.info("with extra only", extra={"request_id": "r-9"})
    exc, stack, extra = drained()
    assert exc["level"] == "ERROR"
    assert exc["fields"]["user"] == "u1" and exc["fields"]["attempt"] == 2
    assert exc["fields"]["tags"] == ["a", "b"]
    assert "Traceback (most recent call last)" in exc["fields"]["exc_info"]
    assert "KeyError: 'missing'" in exc["fields"]["exc_info"]
    assert exc["fields"]["func"] == "test_extra_exc_info_and_stack_info"
    assert stack["fields"]["stack_info"].startswith("Stack (most recent call last):")
    assert "test_extra_exc_info_and_stack_info" in stack["fields"]["stack_info"]
    assert extra["fields"]["request_id"] == "r-9"
    assert extra["fields"]["file"] == __file__


def test_bad_format_and_hostile_arguments_become_records(ring_name, drained, logger_cls):
    class Hostile:
        def __str__(self):
            raise RuntimeError("no str for you")

    lg = fresh_logger("x", logger_cls)
    lg.addHandler(Handler(ring_name))
    lg.info("%d apples", "not a number")
    lg.info("%s", Hostile())
    lg.info(12345)  # a non-str message, as the stdlib allows
    lg.info("surrogate \udcff here")
    bad, hostile, number, surrogate = drained()
    assert bad["msg"].startswith("<formatting failed: TypeError")
    assert "%d apples" in bad["msg"]
    assert hostile["msg"].startswith("<formatting failed: RuntimeError")
    assert number["msg"] == "12345"
    assert surrogate["msg"] == "surrogate \\udcff here"
    r = Ring(ring_name, create=False)
    try:
        assert r.stats().as_dict()["format_errors"] == 2
    finally:
        r.close()


def test_handler_level_filters_and_other_handlers_are_honoured(ring_name, drained, capsys):
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record)

    lg = fresh_logger("f", Logger)
    h = Handler(ring_name, level=logging.WARNING)
    lg.addHandler(h)
    lg.info("below the handler's level")
    lg.warning("kept 1")
    h.addFilter(lambda r: "secret" not in r.getMessage())
    lg.warning("a secret thing")
    lg.warning("kept 2")
    h.filters.clear()
    lg.addFilter(lambda r: r.levelno != logging.CRITICAL)
    lg.critical("stopped by the logger's filter")
    lg.filters.clear()
    other = Collect()
    lg.addHandler(other)
    lg.error("kept 3, seen by both")
    lg.disabled = True
    lg.error("disabled logger")
    assert [r["msg"] for r in drained()] == ["kept 1", "kept 2", "kept 3, seen by both"]
    assert [r.getMessage() for r in seen] == ["kept 3, seen by both"]
    assert capsys.readouterr().err == ""  # a record below a handler's level is not lastResort's


def test_propagation_reaches_handlers_up_the_tree(ring_name, drained):
    parent = fresh_logger("app", Logger)
    child = Logger("app.db")
    child.parent = parent
    child.setLevel(logging.DEBUG)
    parent.addHandler(Handler(ring_name))
    parent.addHandler(Handler(ring_name))  # two handlers: each writes the record
    child.info("query took %d ms", 12)
    child.propagate = False
    child.info("not propagated, no handler: lastResort, not the ring")
    out = [(r["logger"], r["msg"]) for r in drained()]
    assert out == [("app.db", "query took 12 ms")] * 2


def test_lean_record_has_the_stdlib_attributes_and_values():
    args = ({"k": 1},)
    for pathname in ("/srv/app/views.py", "views", "", None):
        std = logging.LogRecord("n", 25, pathname, 7, "m %(k)s", args, None, "fn", "sinfo")
        lean = LogRecord("n", 25, pathname, 7, "m %(k)s", args, None, "fn", "sinfo")
        a, b = vars(std), vars(lean)
        assert a.keys() == b.keys()
        for k in a:
            if k not in ("created", "msecs", "relativeCreated"):
                assert a[k] == b[k], (pathname, k)
        assert abs(a["created"] - b["created"]) < 5
        assert lean.getMessage() == std.getMessage() == "m 1"
    logging.addLevelName(25, "NOTICE")
    assert LogRecord("n", 25, "p", 1, "m", (), None).levelname == "NOTICE"
    assert LogRecord("n", 33, "p", 1, "m", (), None).levelname == "Level 33"


def test_lean_find_caller_matches_the_stdlib():
    lean, plain = fresh_logger("a", Logger), fresh_logger("a", logging.Logger)

    def inner(lg, level):
        return lg.findCaller(False, level)

    def outer(lg, level):
        return inner(lg, level)

    for level in (1, 2, 3, 50):
        assert outer(lean, level) == outer(plain, level)
    fn, line, func, sinfo = outer(lean, 1)
    assert func == "inner" and fn == __file__ and sinfo is None
    with_stack = [lg.findCaller(True, 1) for lg in (lean, plain)]  # one call site for both
    assert with_stack[0] == with_stack[1]
    assert with_stack[0][3].startswith("Stack (most recent call last):")


def test_stacklevel_is_honoured_on_the_direct_path(ring_name, drained):
    lg = fresh_logger("s", Logger)
    lg.addHandler(Handler(ring_name))

    def helper(msg):
        lg.info(msg, stacklevel=2)

    line = sys._getframe().f_lineno + 1
    helper("reported at the caller of helper")
    [rec] = drained()
    assert rec["fields"]["line"] == line
    assert rec["fields"]["func"] == "test_stacklevel_is_honoured_on_the_direct_path"


def test_thread_names_are_kept(ring_name, drained, logger_cls):
    lg = fresh_logger("t", logger_cls)
    lg.addHandler(Handler(ring_name))
    threads = [threading.Thread(target=lg.info, args=("from %s", f"w{i}"), name=f"worker-{i}")
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    got = sorted((r["msg"], r["fields"]["thread"]) for r in drained())
    assert got == [(f"from w{i}", f"worker-{i}") for i in range(4)]


def test_dict_config_by_class_name(ring_name, drained):
    name = f"dc.{uuid.uuid4().hex[:8]}"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"ring": {"class": "logger_system.Handler", "ring": ring_name,
                              "on_full": "drop", "level": "INFO"}},
        "loggers": {name: {"handlers": ["ring"], "level": "DEBUG", "propagate": False}},
    })
    lg = logging.getLogger(name)
    try:
        lg.debug("below the handler level")
        lg.info("configured %s", "by dictConfig")
        assert [r["msg"] for r in drained()] == ["configured by dictConfig"]
        [h] = lg.handlers
        assert isinstance(h, Handler) and h.producer.on_full == "drop"
    finally:
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()


@pytest.fixture
def restore_logging():
    factory, cls = logging.getLogRecordFactory(), logging.getLoggerClass()
    root_cls, root_level, root_handlers = type(logging.root), logging.root.level, logging.root.handlers[:]
    yield
    for h in logging.root.handlers:
        if h not in root_handlers:
            h.close()
    logging.root.handlers[:] = root_handlers
    logging.root.setLevel(root_level)
    logging.root.__class__ = root_cls
    logging.setLogRecordFactory(factory)
    logging.setLoggerClass(cls)


def test_install_wires_the_root_logger_once(ring_name, drained, restore_logging):
    before = logging.getLogger(f"made.before.{uuid.uuid4().hex[:6]}")
    h1 = install(ring_name, level="DEBUG")
    h2 = install(ring_name, level=logging.INFO)  # again: replaces, never doubles
    assert [h for h in logging.root.handlers if isinstance(h, Handler)] == [h2]
    assert h1.producer.closed
    assert logging.root.level == logging.INFO
    assert logging.getLogRecordFactory() is LogRecord
    assert logging.getLoggerClass() is Logger
    assert isinstance(before, Logger) and isinstance(logging.root, Logger)
    after = logging.getLogger(f"made.after.{uuid.uuid4().hex[:6]}")
    before.info("from a logger made before install")
    after.info("and one made after")
    logging.info("and the root itself")
    logging.debug("below the root's level")
    got = [(r["logger"], r["msg"]) for r in drained()]
    assert got == [(before.name, "from a logger made before install"),
                   (after.name, "and one made after"), ("root", "and the root itself")]


def test_install_leaves_an_application_factory_alone(ring_name, drained, restore_logging):
    base = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = base(*args, **kwargs)
        record.tenant = "acme"
        return record

    logging.setLogRecordFactory(factory)
    install(ring_name)
    assert logging.getLogRecordFactory() is factory
    lg = logging.getLogger(f"tenant.{uuid.uuid4().hex[:6]}")
    lg.warning("with the factory's attribute")
    [rec] = drained()
    assert rec["fields"]["tenant"] == "acme"  # the record was built: the factory ran


def test_no_handler_falls_back_to_last_resort(capsys):
    lg = fresh_logger("nohandler", Logger)
    lg.warning("goes to lastResort")
    lg.info("below lastResort's level")
    err = capsys.readouterr().err
    assert "goes to lastResort" in err and "below" not in err


def test_call_site_cache_is_bounded(ring_name, drained, monkeypatch):
    monkeypatch.setattr(hmod, "_CACHE_LIMIT", 8)
    h = Handler(ring_name)
    lg = fresh_logger("cache", Logger)
    lg.addHandler(h)
    for i in range(40):  # 40 distinct call sites: one per line of a generated file
        exec(compile("\n" * i + "lg.info('line %d', i)", "generated.py", "exec"), {"lg": lg, "i": i})
        assert len(h._sources) <= 8
    recs = drained()
    assert [(r["msg"], r["fields"]["line"], r["fields"]["file"]) for r in recs] == \
        [(f"line {i}", i + 1, "generated.py") for i in range(40)]


def test_child_of_a_closed_producer_is_closed(ring_name, drained):
    from logger_system import connect

    p = connect(ring_name)
    p.close()
    child = p.child("later")
    assert child.closed and child.info("nothing") is False
    assert drained() == []
