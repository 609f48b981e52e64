"""The producer against values whose own methods lie or fail.

format_message and encode_fields are called directly, then the same cases go
through Producer.info into a real ring and out of drain + FormatJsonl.  What
they hold to:

* a message that is not exactly a str becomes str(msg) % args, as logging's
  LogRecord.getMessage() gives it, and only as text: a str subclass's own
  encode() or __mod__ never fails the call, nor does a faked __class__;
* a field json cannot write (an int over sys.get_int_max_str_digits(), NaN, a
  value whose str() and repr() fail, a mapping whose items() fails) becomes
  text and costs no other field, nor the other elements of its container.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logger_system.producer import Producer, encode_fields, format_message
from logger_system.record import FLAG_FORMAT_ERROR
from logger_system.ring import attach
from test_ring import Drainer

pytestmark = pytest.mark.timeout(120)

FORMAT_FAILED = "<formatting failed: "


# ---------------------------------------------------------------------------
# hostile values


class EncodeRaises(str):
    def encode(self, *args, **kwargs):
        raise RuntimeError("no encode")


class ModReturnsInt(str):
    def __mod__(self, other):
        return 5


class ModReturnsEncodeRaises(str):
    def __mod__(self, other):
        return EncodeRaises(str.__mod__(self, other))


class ClassFakedStr(str):
    """Says it is a str: msg.__class__ is str holds, type(msg) is str does not."""

    __class__ = str  # type: ignore[assignment]

    def encode(self, *args, **kwargs):
        raise RuntimeError("no encode")

    def __mod__(self, other):
        return 5


class StrGives:
    """An object whose __str__ returns what it was given (a str subclass, say)."""

    def __init__(self, text) -> None:
        self.text = text

    def __str__(self):
        return self.text


class FormatRaises(str):
    def __format__(self, spec):
        raise RuntimeError("no format")

    def __len__(self):
        raise RuntimeError("no len")


class ReprGivesFormatRaises:
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        return FormatRaises("r")


class NameRaises(type):
    @property
    def __name__(cls):
        raise RuntimeError("no name")


class Nameless(Exception, metaclass=NameRaises):
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


class RaisesNameless:
    def __str__(self):
        raise Nameless()


class ClassFakedInt:
    __class__ = int  # type: ignore[assignment]


class HostileInt(int):
    def __lt__(self, other):
        raise RuntimeError("no <")

    def __abs__(self):
        raise RuntimeError("no abs")

    def bit_length(self):
        raise RuntimeError("no bit_length")

    def __repr__(self):
        raise RuntimeError("no repr")


class ReprRaisesFloat(float):
    def __repr__(self):
        raise RuntimeError("no repr")


class ItemsRaise(dict):
    def items(self):
        raise RuntimeError("no items")


class Unprintable:
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def cyclic_list() -> list:
    value: list = [1]
    value.append(value)
    return value


BIG = 10 ** 5000


def returns(fn, *args, **kwargs):
    """fn(...), or a test failure that names what escaped without asking it for its name."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        escaped = type.__repr__(type(exc))
    pytest.fail(f"raised into the caller: {escaped}", pytrace=False)  # outside: no chained exception


def stdlib_text(msg, args) -> str:
    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, None).getMessage()


# ---------------------------------------------------------------------------
# format_message: the text of a message, whatever its type claims


# name -> (msg, args); each formats as logging formats it, and the text is an exact str
MESSAGES_AS_LOGGING = {
    "encode_raises": lambda: (EncodeRaises("hello"), ()),
    "encode_raises_with_args": lambda: (EncodeRaises("hello %s"), ("you",)),
    "mod_returns_int": lambda: (ModReturnsInt("x %s"), (1,)),
    "mod_returns_encode_raises": lambda: (ModReturnsEncodeRaises("x %s"), (1,)),
    "class_faked_str": lambda: (ClassFakedStr("x %s"), (1,)),
    "class_faked_str_no_args": lambda: (ClassFakedStr("plain"), ()),
    "str_gives_encode_raises": lambda: (StrGives(EncodeRaises("x %s")), (2,)),
    "mapping_arg_encode_raises": lambda: ("%(a)s", ({"a": EncodeRaises("v")},)),
}

# name -> (msg, args); each is a formatting failure that says so
MESSAGES_FAILING = {
    # str(msg) gives a str subclass, logging then calls its __mod__: an int is not text
    "str_gives_mod_returns_int": lambda: (StrGives(ModReturnsInt("x %s")), (1,)),
    "str_gives_non_str": lambda: (StrGives(42), ()),
    "arg_repr_gives_format_raises": lambda: ("%s", (ReprGivesFormatRaises(),)),
    "msg_repr_gives_format_raises": lambda: (ReprGivesFormatRaises(), ()),
    "exception_type_name_raises": lambda: ("%s", (RaisesNameless(),)),
    "huge_int_arg": lambda: ("%d", (BIG,)),
}


@pytest.mark.parametrize("case", list(MESSAGES_AS_LOGGING))
def test_a_message_not_exactly_str_formats_as_logging_does(case):
    msg, args = MESSAGES_AS_LOGGING[case]()
    text, flags = returns(format_message, msg, args)
    assert type(text) is str and flags == 0
    assert text == stdlib_text(msg, args)


@pytest.mark.parametrize("case", list(MESSAGES_FAILING))
def test_a_message_that_cannot_become_text_is_a_marked_failure(case):
    msg, args = MESSAGES_FAILING[case]()
    text, flags = returns(format_message, msg, args)
    assert type(text) is str and flags == FLAG_FORMAT_ERROR
    assert text.startswith(FORMAT_FAILED) and text.endswith(">")
    assert len(text) < 2048


def test_a_huge_int_argument_is_described_not_dropped():
    text, _ = format_message("%d", (BIG,))
    assert "args=(<int with 5001 digits>,)" in text


# ---------------------------------------------------------------------------
# encode_fields: one bad value costs only itself


GOOD = {"ok": 1, "s": "text é", "l": [1, "a", None, 2.5], "d": {"k": [True]}, "p": Path("/x")}

# name -> a field value json cannot write as it is
BAD_VALUES = {
    "huge_int": lambda: BIG,
    "huge_negative_int": lambda: -BIG,
    "huge_int_subclass_hostile": lambda: HostileInt(BIG),
    "huge_int_key": lambda: {BIG: 1},
    "huge_int_nested": lambda: [1, {"i": BIG}],
    "nan": lambda: math.nan,
    "inf_subclass_repr_raises": lambda: ReprRaisesFloat("inf"),
    "lone_surrogate": lambda: "a\ud800b",
    "encode_raises_beside_nan": lambda: [EncodeRaises("v"), math.nan],
    "class_faked_str_beside_nan": lambda: [ClassFakedStr("v"), math.nan],
    "class_faked_int": lambda: [ClassFakedInt(), math.nan],
    "items_raise": lambda: ItemsRaise(a=1),
    "unprintable": lambda: Unprintable(),
    "repr_gives_format_raises": lambda: ReprGivesFormatRaises(),
    "nameless": lambda: Nameless(),
    "deep": lambda: nested_list(10_000),
    "cyclic": lambda: cyclic_list(),
    "non_str_keys": lambda: {(1, 2): math.nan, None: 1},
}


def decoded(fields) -> dict:
    got = json.loads(encode_fields(fields))
    assert isinstance(got, dict)
    return got


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_field_json_cannot_write_costs_no_other_field(case):
    bad = BAD_VALUES[case]()
    got = decoded({**GOOD, "bad": bad})  # encode_fields raising fails as an error here
    assert list(got) == [*GOOD, "bad"]
    assert {k: got[k] for k in GOOD} == decoded(GOOD)
    assert got["bad"] is not None


@pytest.mark.parametrize("value, text", [
    (BIG, "<int with 5001 digits>"),
    (-BIG, "<negative int with 5001 digits>"),
    (BIG - 1, "<int with 5000 digits>"),
    (HostileInt(BIG), "<int with 5001 digits>"),
], ids=["positive", "negative", "one_digit_fewer", "hostile_subclass"])
def test_an_int_json_cannot_write_becomes_its_size(value, text):
    assert decoded({"big": value, "ok": 1}) == {"big": text, "ok": 1}


def test_a_bad_element_costs_only_itself():
    got = decoded({"l": [1, BIG, "a", math.nan, Unprintable(), Path("/x")], "m": {"i": BIG, "j": 2}})
    assert got["l"][:4] == [1, "<int with 5001 digits>", "a", "nan"]
    assert "Unprintable" in got["l"][4]
    assert got["l"][5] == "/x"  # as json's default writes it when nothing else fails
    assert got["m"] == {"i": "<int with 5001 digits>", "j": 2}


def test_a_mapping_whose_items_fail_is_described():
    assert decoded(ItemsRaise(a=1)) == {"_fields_error": "RuntimeError"}


def test_ints_within_a_lowered_digit_limit_stay_numbers_and_longer_ones_become_text():
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert decoded({"a": 10 ** 639, "b": 10 ** 700}) == {"a": 10 ** 639, "b": "<int with 701 digits>"}
    finally:
        sys.set_int_max_str_digits(limit)


def test_the_digit_count_is_exact_around_powers_of_ten():
    from logger_system.producer import _int_text

    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # so that len(str(n)) can check it
    try:
        for k in (4300, 4301, 5000, 20_000):
            for n in (10 ** k - 1, 10 ** k, 10 ** k + 1, 2 ** (k * 3), 3 ** k):
                assert _int_text(n) == f"<int with {len(str(n))} digits>", n.bit_length()
    finally:
        sys.set_int_max_str_digits(limit)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
bad_values = st.sampled_from(sorted(BAD_VALUES)).map(lambda case: BAD_VALUES[case]())


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(good=st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
                            .filter(lambda k: not k.startswith("bad")), json_values, max_size=5),
       bad=st.dictionaries(st.sampled_from(["bad1", "bad2", "bad3"]), bad_values, max_size=3))
def test_fields_json_can_write_are_written_as_json_writes_them(good, bad):
    fields = {**good, **bad}
    got = json.loads(encode_fields(fields))
    assert list(got) == list(fields)
    for k, v in good.items():
        try:
            expected = json.loads(json.dumps(v, ensure_ascii=False).encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: written escaped, checked elsewhere
            continue
        assert got[k] == expected


# ---------------------------------------------------------------------------
# the same through Producer.info, a ring and drain + FormatJsonl


@pytest.fixture
def producer(ring_name):
    ring = attach(ring_name, capacity=1 << 20, max_record=4096)
    p = Producer(ring, name="hostile", on_full="drop")
    p.drainer = Drainer(ring, max_records=64)
    yield p
    ring.close()


def drained_one(producer):
    recs, malformed, abandoned = producer.drainer.drain_all()
    assert malformed == abandoned == 0 and len(recs) == 1
    return recs[0]


@pytest.mark.parametrize("case", list(MESSAGES_AS_LOGGING))
def test_producer_writes_such_a_message_as_logging_would(producer, case):
    msg, args = MESSAGES_AS_LOGGING[case]()
    assert returns(producer.info, msg, *args) is True
    rec = drained_one(producer)
    assert rec.flags == 0 and rec.obj["msg"] == stdlib_text(msg, args)


@pytest.mark.parametrize("case", list(MESSAGES_FAILING))
def test_producer_writes_a_message_that_cannot_become_text_as_a_marked_failure(producer, case):
    msg, args = MESSAGES_FAILING[case]()
    before = producer.ring.stats().format_errors
    assert returns(producer.info, msg, *args) is True
    rec = drained_one(producer)
    assert rec.flags == FLAG_FORMAT_ERROR and rec.obj["msg"].startswith(FORMAT_FAILED)
    assert producer.ring.stats().format_errors == before + 1


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_producer_keeps_the_other_fields_beside_a_bad_one(producer, case):
    assert producer.info("m", **GOOD, bad=BAD_VALUES[case]()) is True
    got = drained_one(producer).obj["fields"]
    assert {k: got[k] for k in GOOD} == decoded(GOOD) and "bad" in got
