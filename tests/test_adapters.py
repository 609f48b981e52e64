"""structlog and loguru adapters: what they write, read back from a real writer's files.

Each test starts `logger-system writer` on a fresh ring, logs through an
adapter, waits until the writer has written every record, stops the writer
and reads the JSON lines it wrote: the fields are checked as a log file holds
them.
"""
from __future__ import annotations

import logging
import sys
import threading

import pytest

from conftest import read_records, stats, wait_for

structlog = pytest.importorskip("structlog")
loguru = pytest.importorskip("loguru")

import logger_system.loguru as ring_loguru  # noqa: E402
import logger_system.structlog as ring_structlog  # noqa: E402

logger = loguru.logger

pytestmark = pytest.mark.timeout(120)

WRITE_TIMEOUT = 30.0


@pytest.fixture
def written(ring_name, writer_factory, tmp_path):
    """Start a writer; collect(n) waits for n records written, stops the writer, returns them.

    Each record must have entered the ring (none dropped); format_errors is how
    many of them are to say that their text could not be made.
    """
    w = writer_factory().start()

    def collect(n: int, format_errors: int = 0) -> list[dict]:
        def done():
            s = stats(ring_name)
            return s["written"] >= n and s["used_bytes"] == 0

        try:
            wait_for(done, timeout=WRITE_TIMEOUT, what=f"{n} records written")
        except AssertionError:
            raise AssertionError(f"not written: {stats(ring_name)}; writer: {w.stderr()}") from None
        assert w.stop(timeout=WRITE_TIMEOUT) == 0, w.stderr()
        records = read_records(tmp_path / "logs")
        s = stats(ring_name)
        assert s["committed"] == s["written"] == n, s
        assert s["dropped"] == 0 and s["format_errors"] == format_errors, s
        assert len(records) == n
        return records

    return collect


class Shown:
    """A value json cannot express, with a known text."""

    def __str__(self) -> str:
        return "shown-value"


class Hostile:
    """A value whose str() and repr() both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def in_thread(fn, name: str) -> None:
    t = threading.Thread(target=fn, name=name)
    t.start()
    t.join(10)
    assert not t.is_alive()


# ---- structlog ----------------------------------------------------------------

@pytest.fixture
def slog(ring_name):
    """structlog configured by the adapter; configure(**options) again to change it."""
    factories: list = []

    def configure(**options):
        f = ring_structlog.configure(ring_name, **options)
        factories.append(f)
        return f

    configure()
    yield configure
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for f in factories:
        f.close()


def test_structlog_context_kwargs_level_and_logger_name(slog, written):
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log = structlog.get_logger("svc.web").bind(user="u1")
    line = sys._getframe().f_lineno + 1
    assert log.info("user %s logged in", "u1", attempt=2, tags=["a", "b"], ok=True) is True
    log.debug("d")
    log.warning("w")
    log.error("e")
    log.critical("c")
    log.log(logging.WARNING, "via log()")
    structlog.get_logger().info("no name given", n=1)
    in_thread(lambda: structlog.get_logger("svc.worker").info("from a thread"), "worker-1")
    recs = written(8)

    first = recs[0]
    assert first["msg"] == "user u1 logged in"
    assert first["level"] == "INFO"
    assert first["logger"] == "svc.web"
    assert first["fields"] == {"request_id": "r-1", "user": "u1", "attempt": 2, "tags": ["a", "b"],
                               "ok": True, "file": __file__, "line": line,
                               "func": "test_structlog_context_kwargs_level_and_logger_name",
                               "thread": "MainThread"}
    assert [(r["level"], r["msg"]) for r in recs[1:6]] == [
        ("DEBUG", "d"), ("WARNING", "w"), ("ERROR", "e"), ("CRITICAL", "c"), ("WARNING", "via log()")]
    for r in recs[1:6]:
        assert r["logger"] == "svc.web"
        assert r["fields"]["request_id"] == "r-1" and r["fields"]["user"] == "u1"
        assert "level" not in r["fields"] and "event" not in r["fields"]
    root = recs[6]
    assert (root["logger"], root["msg"], root["fields"]["n"]) == ("root", "no name given", 1)
    assert root["fields"]["request_id"] == "r-1"  # context variables reach every logger
    worker = recs[7]
    assert worker["logger"] == "svc.worker"
    assert worker["fields"]["thread"] == "worker-1"
    assert "request_id" not in worker["fields"]  # a new thread starts with empty context


def test_structlog_exception_text(slog, written):
    log = structlog.get_logger("exc")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed", order=7)
    err = ValueError("bad value")
    log.error("passed an exception", exc_info=err)  # not being handled: no frames
    log.info("no exception", exc_info=False)
    log.info("stack", stack_info=True)
    exc, passed, none, stack = written(4)

    assert exc["level"] == "ERROR" and exc["msg"] == "lookup failed"
    assert exc["fields"]["order"] == 7
    text = exc["fields"]["exception"]
    assert text.startswith("Traceback (most recent call last)")
    assert "KeyError: 'missing'" in text and "test_structlog_exception_text" in text
    assert "exc_info" not in exc["fields"] and "level" not in exc["fields"]
    assert passed["fields"]["exception"].endswith("ValueError: bad value")
    assert "exception" not in none["fields"] and "exc_info" not in none["fields"]
    assert stack["fields"]["stack"].startswith("Stack (most recent call last):")
    assert "test_structlog_exception_text" in stack["fields"]["stack"]


def test_structlog_values_json_cannot_express(slog, written):
    log = structlog.get_logger("values")
    log.info("odd values", tags={"only"}, obj=Shown(), raw=b"ab", key=(1, 2))
    log.info("not a number", ratio=float("nan"))
    log.info("hostile", h=Hostile())
    log.info({"event": "is a dict"})
    log.info(Hostile())  # an event with no text at all
    odd, nan, hostile, event_dict, no_text = written(5, format_errors=1)

    assert odd["fields"]["tags"] == "{'only'}"
    assert odd["fields"]["obj"] == "shown-value"
    assert odd["fields"]["raw"] == "b'ab'"
    assert odd["fields"]["key"] == [1, 2]
    assert nan["fields"]["ratio"] == "nan"
    assert hostile["msg"] == "hostile"
    assert isinstance(hostile["fields"]["h"], str) and "Hostile" in hostile["fields"]["h"]
    assert event_dict["msg"] == "{'event': 'is a dict'}"
    assert no_text["msg"].startswith("<formatting failed: RuntimeError")


def test_structlog_levels_processors_and_factory(slog, ring_name, written):
    # level 25 is between structlog's own levels: the producer drops INFO
    factory = slog(level=25, callsite=False,
                   processors=[lambda _logger, _name, ed: {**ed, "added": "by processor"}])
    log = structlog.get_logger("lvl")
    assert log.debug("dropped") is None  # structlog's filtering logger: nothing done
    assert log.info("dropped by the producer") is False
    log.warning("kept", n=1)
    assert factory("lvl") is factory("lvl")
    assert factory().name == factory(42).name == "root"
    assert factory("other").producer.ring is factory.producer.ring

    # the pieces on their own: no format_exc_info, render_to_ring formats exc_info
    structlog.configure(processors=[structlog.processors.add_log_level,
                                    ring_structlog.render_to_ring],
                        logger_factory=ring_structlog.RingLoggerFactory(ring_name, name="plain"))
    plain = structlog.get_logger()
    try:
        1 / 0
    except ZeroDivisionError:
        plain.error("raw exc_info", exc_info=True)
    plain.msg("msg is info")
    kept, raw, msg = written(3)

    assert (kept["level"], kept["msg"], kept["logger"]) == ("WARNING", "kept", "lvl")
    assert kept["fields"] == {"n": 1, "added": "by processor"}  # no call-site fields, no level
    assert raw["logger"] == "plain" and raw["level"] == "ERROR"
    assert raw["fields"]["exception"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert "level" not in raw["fields"]
    assert (msg["level"], msg["msg"], msg.get("fields", {})) == ("INFO", "msg is info", {})


def test_structlog_closed_factory_writes_nothing(slog, written):
    log = structlog.get_logger("closing")
    log.info("before")
    factory = slog()  # a second configuration; close it and its loggers stop
    late = structlog.get_logger("closing")
    late.info("from the new factory")
    factory.close()
    assert late.info("after close") is False
    assert structlog.get_logger("another name").info("after close") is False
    log.info("the first factory still writes")  # its logger was cached on first use
    recs = written(3)
    assert [r["msg"] for r in recs] == ["before", "from the new factory",
                                        "the first factory still writes"]


# ---- loguru -------------------------------------------------------------------

@pytest.fixture
def lsink(ring_name):
    """add(**options): a ring sink added to loguru's logger; removed at teardown."""
    ids: list[int] = []

    def add(**options):
        s = ring_loguru.sink(ring_name, **options)
        ids.append(logger.add(s, format="{message}", level=0))
        return s, ids[-1]

    yield add
    for i in ids:
        try:
            logger.remove(i)
        except ValueError:  # the test removed it already
            pass


def _level(name: str, no: int):
    try:
        return logger.level(name)
    except ValueError:
        return logger.level(name, no=no)


def test_loguru_bind_message_and_call_site(lsink, written):
    lsink()
    line = sys._getframe().f_lineno + 1
    logger.bind(user="u1").info("hello {}", "x")
    logger.info("100% {not formatted} %s")  # no arguments: loguru leaves it, the ring adds no %
    with logger.contextualize(request_id="r-9"):
        logger.bind(file="upload.csv").warning("bound file")
    in_thread(lambda: logger.info("from a thread"), "worker-2")
    hello, literal, bound, threaded = written(4)

    assert (hello["msg"], hello["level"], hello["logger"]) == ("hello x", "INFO", __name__)
    assert hello["fields"] == {"user": "u1", "file": __file__, "line": line,
                               "func": "test_loguru_bind_message_and_call_site",
                               "thread": "MainThread"}
    assert literal["msg"] == "100% {not formatted} %s"
    assert literal["fields"]["line"] == line + 1
    assert bound["level"] == "WARNING"
    assert bound["fields"]["request_id"] == "r-9"
    assert bound["fields"]["file"] == "upload.csv"  # a bound key wins over the call site
    assert bound["fields"]["line"] == line + 3
    assert threaded["fields"]["thread"] == "worker-2"


def test_loguru_exception_traceback(lsink, written):
    lsink()
    try:
        1 / 0
    except ZeroDivisionError:
        logger.bind(order=7).exception("division failed")
    logger.opt(exception=ValueError("bad value")).warning("passed an exception")
    logger.exception("no exception being handled")
    logger.info("plain")
    exc, passed, outside, plain = written(4)

    assert exc["level"] == "ERROR" and exc["msg"] == "division failed"
    assert exc["fields"]["order"] == 7
    text = exc["fields"]["exc_info"]
    assert text.startswith("Traceback (most recent call last)")
    assert "ZeroDivisionError: division by zero" in text
    assert "test_loguru_exception_traceback" in text
    assert passed["level"] == "WARNING"
    assert passed["fields"]["exc_info"] == "ValueError: bad value"
    assert outside["level"] == "ERROR" and "exc_info" not in outside["fields"]
    assert "exc_info" not in plain["fields"]


def test_loguru_levels_map_by_number(lsink, written):
    lsink()
    _level("NOTICE", 25)
    _level("BEYOND", 300)
    logger.trace("t")
    logger.debug("d")
    logger.info("i")
    logger.success("s")
    logger.log("NOTICE", "n")
    logger.warning("w")
    logger.error("e")
    logger.critical("c")
    logger.log("BEYOND", "b")
    recs = written(9)
    assert [(r["level"], r["msg"]) for r in recs] == [
        ("Level 5", "t"), ("DEBUG", "d"), ("INFO", "i"), ("Level 25", "s"), ("Level 25", "n"),
        ("WARNING", "w"), ("ERROR", "e"), ("CRITICAL", "c"), ("Level 255", "b")]


def test_loguru_values_level_option_and_remove(lsink, written):
    sink, sink_id = lsink()
    warn_only, warn_id = lsink(level="WARNING")  # connect()'s level: dropped in the sink
    logger.bind(tags={"only"}, obj=Shown()).info("odd values")
    logger.bind(h=Hostile()).info("hostile")
    logger.warning("seen by both")
    logger.remove(sink_id)  # loguru calls stop(): the sink writes nothing more
    assert sink.producer.closed
    logger.error("only the second sink")
    logger.remove(warn_id)
    logger.error("no ring sink left")
    assert warn_only.producer.closed
    odd, hostile, both_first, both_second, second = written(5)

    assert odd["msg"] == "odd values"
    assert odd["fields"]["tags"] == "{'only'}"
    assert odd["fields"]["obj"] == "shown-value"
    assert isinstance(hostile["fields"]["h"], str) and "Hostile" in hostile["fields"]["h"]
    assert {both_first["msg"], both_second["msg"]} == {"seen by both"}
    assert (second["level"], second["msg"]) == ("ERROR", "only the second sink")
    assert second["logger"] == __name__
