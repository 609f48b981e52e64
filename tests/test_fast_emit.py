"""The hot paths' one C call: the builtin bound to a producer's struct, and its fallback.

Producer's Python level methods and Handler.emit write the common record through
Producer._fast (the builtin made from FAST_EMIT in _ffi_build.py; the C level methods,
LEVEL_METHOD, are held to the Python ones in test_fast_level_call.py); these tests
check it writes what lsr_emit writes, refuses what lsr_emit refuses, and that
the cffi fallback and the general paths write the same records.
"""
from __future__ import annotations

import logging
import uuid

import pytest

import logger_system
from logger_system import producer as pmod
from logger_system._native import lib
from logger_system.handler import Handler
from logger_system.ring import Ring
from test_ring import Drainer


def _drain(ring_name: str) -> list[dict]:
    ring = Ring(ring_name, create=False)
    try:
        recs, malformed, abandoned = Drainer(ring).drain_all()
        assert malformed == abandoned == 0
        return [r.obj for r in recs]
    finally:
        ring.close()


def test_the_builtin_writes_and_refuses_as_lsr_emit(ring_name):
    log = logger_system.connect(ring_name, on_full="drop", name="fast")
    slot = log.ring.slot()
    assert log._fast(slot, 20, b"plain") == 0
    assert log._fast(slot, 30, b"with fields", b'{"k":1}') == 0
    assert log._fast(slot, 256, b"level out of range") == lib.LSR_EARG
    assert log._fast(slot, -1, b"negative level") == lib.LSR_EARG
    assert log._fast(lib.LSR_SLOTS, 20, b"slot out of range") == lib.LSR_EARG
    assert log._fast(-7, 20, b"no slot") == lib.LSR_ENOSLOT
    for bad in ((slot, 20, "a str"), (slot, 20, b"x", None), (slot,), (slot, 20, b"x", b"", 1),
                ("0", 20, b"x")):
        with pytest.raises(TypeError):
            log._fast(*bad)
    with pytest.raises(OverflowError):
        log._fast(1 << 70, 20, b"x")
    got = _drain(ring_name)
    assert [(r["msg"], r["level"], r["logger"]) for r in got] == [("plain", "INFO", "fast"),
                                                                 ("with fields", "WARNING", "fast")]
    assert got[1]["fields"] == {"k": 1}
    assert log.ring.stats().as_dict()["dropped_no_slot"] == 1


def test_the_builtin_keeps_its_struct_alive(ring_name):
    log = logger_system.connect(ring_name, on_full="drop", name="kept")
    fast, slot = log._fast, log.ring.slot()
    del log
    assert fast(slot, 20, b"after the producer is gone") == 0
    assert [r["logger"] for r in _drain(ring_name)] == ["kept"]


def test_without_the_builtin_the_cffi_call_writes_the_same(ring_name, monkeypatch):
    monkeypatch.setattr(pmod, "_new_builtin", None)
    log = logger_system.connect(ring_name, on_full="drop", name="cffi")
    assert not isinstance(log._fast, type(len))
    assert log.info("request %s took %d ms", "r-1", 12)
    lg = logging.Logger(f"cffi.{uuid.uuid4().hex[:6]}")
    lg.propagate = False
    lg.addHandler(Handler(ring_name, on_full="drop"))
    lg.warning("through %s", "logging")
    a, b = _drain(ring_name)
    assert (a["msg"], a["logger"]) == ("request r-1 took 12 ms", "cffi")
    assert (b["msg"], b["level"]) == ("through logging", "WARNING")
    assert set(b["fields"]) == {"file", "line", "func", "thread"}


def test_a_record_class_of_its_own_takes_the_general_path_and_writes_the_same(ring_name):
    class Mine(logging.LogRecord):
        pass

    h = Handler(ring_name, on_full="drop")
    plain = logging.LogRecord("own", logging.INFO, "/app/x.py", 7, "n=%d", (5,), None, "f")
    mine = Mine("own", logging.INFO, "/app/x.py", 7, "n=%d", (5,), None, "f")
    h.handle(plain)
    h.handle(mine)
    a, b = _drain(ring_name)
    varying = ("seq", "ts", "n")  # the record's place in the ring and its time
    assert {k: v for k, v in a.items() if k not in varying} == {k: v for k, v in b.items() if k not in varying}
    assert a["msg"] == "n=5" and a["fields"]["line"] == 7
