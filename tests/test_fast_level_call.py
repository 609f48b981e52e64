"""Producer.debug() ... critical() as C builtins (_ffi_build.py, LEVEL_METHOD) against the
Python methods they stand in for (Producer.info etc. on the class): for every kind of call,
the same return values, the same bytes in the ring and the same counters.

Each test makes two producers alike on two rings of their own, makes the same calls through
the builtin on one and through the class's Python method on the other, and compares.
"""
from __future__ import annotations

import gc
import pickle
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logger_system
from logger_system import producer as pmod
from logger_system.producer import Producer
from logger_system.ring import unlink
from test_ring import KIB, MIN_CAP, Drainer, fork, reap

LEVELS = ("debug", "info", "warning", "error", "critical", "warn", "fatal")
VARYING = ("seq", "ts", "n")  # a record's place in its ring and its time
OTHER_RING = ("name", "ring_id", "released_ns")  # the two rings' own, and when drained


@pytest.fixture
def pair():
    """make(**options) -> (through the builtins, through the Python methods), on two rings."""
    names: list[str] = []
    made: list[Producer] = []

    def make(**options):
        options.setdefault("on_full", "drop")
        options.setdefault("name", "same")
        out = []
        for _ in range(2):
            name = f"lstest-{uuid.uuid4().hex[:12]}"
            names.append(name)
            p = logger_system.connect(name, **options)
            made.append(p)
            out.append(p)
        c, py = out
        assert isinstance(c.__dict__["info"], type(len))  # the builtin, bound to c
        return c, py

    yield make
    for p in made:
        p.ring.close()
    for name in names:
        unlink(name)


def c_call(p: Producer, method: str, *args, **fields):
    return getattr(p, method)(*args, **fields)


def py_call(p: Producer, method: str, *args, **fields):
    return getattr(Producer, method)(p, *args, **fields)


def both(c: Producer, py: Producer, method: str, *args, **fields):
    """The same call through each; what they returned, which must be the same."""
    a, b = c_call(c, method, *args, **fields), py_call(py, method, *args, **fields)
    assert a is b, (method, args, fields, a, b)
    return a


def contents(p: Producer) -> tuple[list[dict], dict, list[tuple]]:
    """The records (as the writer formats them, and their bytes in the ring) and counters."""
    recs, malformed, abandoned = Drainer(p.ring).drain_all()
    assert malformed == abandoned == 0
    objs = [{k: v for k, v in r.obj.items() if k not in VARYING} for r in recs]
    counters = {k: v for k, v in p.ring.stats().as_dict().items() if k not in OTHER_RING}
    raw = [(r.pid, r.tid, r.level, r.flags, r.msg, r.logger, r.fields, r.size) for r in recs]
    return objs, counters, raw


def assert_same(c: Producer, py: Producer, n: int | None = None) -> list[dict]:
    a, b = contents(c), contents(py)
    assert a[0] == b[0]
    assert a[2] == b[2]
    assert {k: v for k, v in a[1].items() if b[1][k] != v} == {k: v for k, v in b[1].items() if a[1][k] != v}
    if n is not None:
        assert len(a[0]) == n
    return a[0]


def test_the_common_call_at_each_level(pair):
    c, py = pair()
    for method in LEVELS:
        assert both(c, py, method, "plain %s", method)
        assert both(c, py, method, "no arguments, 100% as it is")
        assert both(c, py, method, "request %s handled for user %s in %d ms status=%d path=%s p=%d i=%d",
                    "r-1", "u", 12, 200, "/a", 3, 4)
        assert both(c, py, method, "%s|%r|%5.2f|%x", "é✓", [1], 2.5, 255)
        assert both(c, py, method, "one %s", ("a", "tuple"))  # a single argument that is a tuple
    recs = assert_same(c, py, 5 * len(LEVELS))
    assert recs[0]["msg"] == "plain debug" and recs[0]["level"] == "DEBUG"
    assert recs[-1]["level"] == "CRITICAL"


def test_below_the_level_changed_level_and_closed(pair):
    c, py = pair(level="warning")
    assert both(c, py, "info", "below %s", 1) is False
    assert both(c, py, "debug", "below") is False
    assert both(c, py, "warning", "at %s", 1) is True
    for p in (c, py):
        p.min_level = 45
    assert both(c, py, "error", "now below") is False
    assert both(c, py, "fatal", "above") is True
    for p in (c, py):
        p.min_level = 0
    assert both(c, py, "debug", "all again %d", 3) is True
    for p in (c, py):
        p.close()
    for method in LEVELS:
        assert both(c, py, method, "closed %s", 1, k=2) is False
    assert [r["msg"] for r in assert_same(c, py, 3)] == ["at 1", "above", "all again 3"]


class Loud:
    def __str__(self) -> str:
        raise ValueError("no text")


class Hostile(str):
    def __mod__(self, other):
        raise RuntimeError("no")

    def encode(self, *a, **k):
        raise RuntimeError("no")


class FakeDict:
    @property
    def __class__(self):
        return dict


class MyDict(dict):
    pass


def test_what_the_builtin_hands_on(pair):
    c, py = pair()
    calls = [
        (("with %s", "fields"), {"user": "u1", "n": 2}),
        ((42,), {}),
        ((None,), {}),
        ((["a", "list %s"], 1), {}),
        ((Hostile("str subclass %s"), 1), {}),
        ((Hostile("str subclass"),), {}),
        (("%(a)s and %(b)s", {"a": 1, "b": 2}), {}),
        (("empty dict %s", {}), {}),
        (("dict subclass %s", MyDict(a=1)), {}),
        (("%(k)s", MyDict(k="mapping")), {}),
        (("faked class %s", FakeDict()), {}),
        (("%d", "not a number"), {}),
        (("%s %s", "too few"), {}),
        (("%s", "too", "many"), {}),
        (("%s", Loud()), {}),
        (("bad %q format", 1), {}),
        (("\udc80 lone surrogate",), {}),
        (("arg %s", "\ud800 surrogate"), {}),
        (("%s", b"bytes"), {}),
    ]
    for args, fields in calls:
        for method in ("info", "error"):
            both(c, py, method, *args, **fields)
    recs = assert_same(c, py, 2 * len(calls))
    by_msg = [r["msg"] for r in recs]
    assert "1 and 2" in by_msg and "with fields" in by_msg and "empty dict {}" in by_msg
    assert any(m.startswith("<formatting failed: ValueError") for m in by_msg)
    assert c.ring.stats().format_errors == py.ring.stats().format_errors > 0


def test_what_raises_raises_the_same(pair):
    c, py = pair()

    class Stop(BaseException):
        pass

    class Stops:
        def __str__(self):
            raise Stop()

    class BadClass:
        @property
        def __class__(self):
            raise Stop()

    for args in (("%s", Stops()), ("%s", BadClass())):
        with pytest.raises(Stop):
            c.info(*args)
        with pytest.raises(Stop):
            Producer.info(py, *args)
    with pytest.raises(TypeError):
        c.info()
    with pytest.raises(TypeError):
        Producer.info(py)
    assert_same(c, py, 0)


def test_over_the_budget(pair):
    c, py = pair(capacity=MIN_CAP, max_record=4 * KIB)
    budget = c._budget
    for n in (budget - 1, budget, budget + 1, 3 * budget):
        assert both(c, py, "info", "x" * n)
        assert both(c, py, "info", "%s", "é" * n)
    assert_same(c, py, 8)
    assert c.ring.stats().truncated == 6  # the two x-messages over it, and every é-message


@pytest.mark.parametrize("on_full", ["drop", "block"])
def test_a_full_ring(pair, on_full):
    c, py = pair(on_full=on_full, block_timeout=5.0, capacity=MIN_CAP, max_record=MIN_CAP // 4)
    results = [both(c, py, "info", "%04d %s", i, "y" * 1000) for i in range(100)]
    assert results.count(False) > 30
    assert_same(c, py)
    assert c.ring.stats().dropped == py.ring.stats().dropped == results.count(False)
    Drainer(c.ring).drain_all()
    Drainer(py.ring).drain_all()
    assert both(c, py, "info", "room again")


def test_a_thread_with_no_slot_yet(pair):
    c, py = pair()
    assert both(c, py, "info", "main thread")
    got: list = []

    def run():
        assert not hasattr(c.ring._tls, "slot")
        got.append(both(c, py, "info", "thread %s", 1))
        got.append(both(c, py, "warning", "thread %s", 2))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert got == [True, True]
    assert_same(c, py, 3)


def test_in_a_forked_child(pair):
    c, py = pair()
    assert both(c, py, "info", "parent")

    def child():
        for i in range(3):
            both(c, py, "info", "child %d", i)
        both(c, py, "info", "child %s", "with", extra=1)

    assert reap(fork(child)) == 0
    recs = assert_same(c, py, 5)
    assert [r["msg"] for r in recs][1:] == ["child 0", "child 1", "child 2", "child with"]
    assert recs[1]["pid"] != recs[0]["pid"]


def test_a_removed_ring_moves_the_builtin_too(pair):
    c, py = pair(capacity=MIN_CAP, max_record=4 * KIB)
    assert both(c, py, "info", "before")
    old = [(p, p.ring.ptr) for p in (c, py)]
    for p in (c, py):
        unlink(p.ring.name)
    assert both(c, py, "info", "moved %s", 1)
    for p, ptr in old:
        assert p.ring.ptr != ptr and p._c.ring == p.ring.ptr
    assert both(c, py, "info", "x" * (c._budget + 5))  # the new ring's budget
    assert both(c, py, "info", "after")
    assert [r["msg"] for r in assert_same(c, py, 3)][0] == "moved 1"


def test_binding_class_access_subclasses_pickling_and_children(ring_name):
    p = logger_system.connect(ring_name, on_full="drop", name="b")
    assert isinstance(p.info, type(len)) and p.info.__name__ == "info"
    assert p.warn is p.warning and p.fatal is p.critical
    assert type(Producer.__dict__["info"]).__name__ == "function"
    assert Producer.info(p, "through the class")

    class Own(Producer):
        def info(self, msg, *args, **fields):
            return "own"

    o = Own(p.ring, name="own")
    assert o.info("x") == "own" and isinstance(o.warning, type(len))
    assert "info" not in o.__dict__

    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q.info, type(len)) and q.info("unpickled")
    kid = p.child("kid")
    assert isinstance(kid.info, type(len)) and kid.info("child")

    # a method kept past its producer keeps it
    info = logger_system.connect(ring_name, on_full="drop", name="kept").info
    gc.collect()
    assert info("kept %s", "alive", k=1)
    msgs = [(r.obj["logger"], r.obj["msg"]) for r in Drainer(p.ring).drain_all()[0]]
    assert msgs == [("b", "through the class"), ("b", "unpickled"), ("kid", "child"),
                    ("kept", "kept alive")]


def test_without_the_builtin_the_python_methods_stay(ring_name, monkeypatch):
    monkeypatch.setattr(pmod, "_new_builtin", None)
    p = logger_system.connect(ring_name, on_full="drop", name="py")
    assert "info" not in p.__dict__
    assert p.info("python %s", "method") and p.warn("w")
    assert [r.obj["msg"] for r in Drainer(p.ring).drain_all()[0]] == ["python method", "w"]


def test_a_producer_no_longer_referenced_is_collected(ring_name):
    import weakref

    p = logger_system.connect(ring_name, on_full="drop")
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is None


class MyStr(str):
    pass


class MyInt(int):
    pass


def test_formats_the_builtin_writes_without_making_the_text(pair):
    """%s of an exact str or int, %d/%i/%u of an exact int and %% are written straight into
    the record; everything else is formatted by str % args: the same bytes either way."""
    c, py = pair(capacity=1 << 20, max_record=16 * KIB)
    ints = (0, 7, -7, 10, -10, 2**31, -2**31, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 10**30)
    calls = [("%d %i %u %s", (n, n, n, n)) for n in ints]
    calls += [
        ("%s and %s", ("é✓ non-ascii", "😀 astral")),
        ("é %s ✓ %d", ("ü", 3)),
        ("100%% of %s", ("it",)),
        ("%%s %s", ("x",)),
        ("only %%", ("extra",)),
        ("ends in %", ("x",)),
        ("%s", ("",)),
        ("", ("unused",)),
        ("%s %s", ("one",)),
        ("%s", ("one", "two")),
        ("%d", (True,)),
        ("%s", (False,)),
        ("%d", (MyInt(4),)),
        ("%s", (MyStr("sub"),)),
        ("%d", (2.5,)),
        ("%s", (2.5,)),
        ("%d", ("str for %d",)),
        ("%ld %li", (1, 2)),
        ("%5s|%-3d|%03d|%+d|% d|%.2s", ("a", 1, 2, 3, 4, "abc")),
        ("%r %a %x %o %c %f %e %g", ("r", "é", 255, 8, 65, 1.5, 1.5, 1.5)),
        ("%(k)s", (("not", "a mapping"),)),
        ("%s", ("lone \udcff",)),
        ("lone \udcff %s", ("x",)),
        ("%s", ("x" * 4095,)),
        ("%s", ("x" * 4096,)),
        ("%s%s", ("x" * 4000, "é" * 100)),
        ("%s", ("x" * (16 * KIB),)),
        ("%d" * 300, tuple(range(-150, 150))),
    ]
    for msg, args in calls:
        for method in ("info", "critical"):
            both(c, py, method, msg, *args)
    recs = assert_same(c, py, 2 * len(calls))
    assert [r["msg"] for r in recs[:2 * len(ints):2]] == [f"{n} {n} {n} {n}" for n in ints]


_PIECES = ["%s", "%d", "%i", "%u", "%%", "%", "%r", "%5s", "%-2d", "%(k)s", "%x", "text ", "é", "✓", "😀",
           "\udcff", " ", "%ld"]
_ARGS = st.one_of(
    st.text(max_size=40), st.integers(), st.integers(min_value=-2**70, max_value=2**70), st.booleans(),
    st.floats(allow_nan=True), st.builds(MyInt, st.integers(-1000, 1000)), st.builds(MyStr, st.text(max_size=5)),
    st.tuples(st.integers()), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.none(),
    st.binary(max_size=5))


@pytest.fixture
def one_pair(pair):
    """One pair for all of a test's examples: each example drains what it wrote."""
    return pair(capacity=1 << 20, max_record=16 * KIB)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=12), args=st.lists(_ARGS, max_size=6))
def test_any_format_and_arguments_give_the_same_record(one_pair, pieces, args):
    """Whatever the message and arguments, the builtin's record is the Python method's."""
    c, py = one_pair
    msg = "".join(pieces)
    both(c, py, "info", msg, *args)
    assert_same(c, py, 1)
