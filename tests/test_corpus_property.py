"""The labeled corpus (perf.corpus.labeled) through the Sanitize stage, called directly.

Records are logged by a real Producer into a real ring and drained into
batches as the writer drains them; the default Sanitize stage runs over each
batch.  No labeled secret may survive in any position (message text, %-args,
a field, a field at depth, JSON in the text, a traceback field), and no hard
negative may change, byte for byte.  Every class is checked on its own (a
failure names the record and the substring left), then a hypothesis property
mixes fresh corpora of any seed into batches of any composition.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the corpus lives in perf/, next to tests/
    sys.path.insert(0, str(ROOT))
from perf.corpus import POSITIONS, labeled  # noqa: E402
from perf.secrets_peer import Feeder, raw_records, sanitize_batches, survivors  # noqa: E402

from logger_system.pipeline.sanitize import Sanitize  # noqa: E402
from logger_system.policy import Policy  # noqa: E402

CASES = labeled()
SECRET_CLASSES = sorted({c.cls for c in CASES if not c.negative})
NEGATIVE_CLASSES = sorted({c.cls for c in CASES if c.negative})


@pytest.fixture(scope="module")
def feeder():
    f = Feeder()
    yield f
    f.close()


@pytest.fixture(scope="module")
def stage():
    return Sanitize(Policy())


def through(feeder, stage, cases):
    """(before, after) of each case's record: (message, fields JSON) bytes; after None if dropped."""
    batches = feeder.batches(cases)
    before, after = raw_records(batches), sanitize_batches(batches, stage)
    assert len(before) == len(after) == len(cases)
    return before, after


def _short(value, n: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def leaks(cases, after) -> list[str]:
    """One line per leaking record: its class/variant/position, what is left, and where."""
    return [f"{c.name()}: left {[_short(s, 50) for s in left]} in {_short(out)}"
            for c, out in zip(cases, after) if not c.negative and (left := survivors(c, out))]


def changed(cases, before, after) -> list[str]:
    return [f"{c.name()}: {_short(b)} became {_short(a)}"
            for c, b, a in zip(cases, before, after) if c.negative and a != b]


@pytest.fixture(scope="module")
def corpus_out(feeder, stage):
    return through(feeder, stage, CASES)


def test_corpus_has_every_class_in_every_position():
    for cls in SECRET_CLASSES + NEGATIVE_CLASSES:
        assert {c.position for c in CASES if c.cls == cls} == set(POSITIONS), cls
    again = labeled()  # deterministic for a seed, secrets and all
    assert [(c.line(), c.secrets) for c in again] == [(c.line(), c.secrets) for c in CASES]
    assert [c.line() for c in labeled(seed=99)] != [c.line() for c in CASES]


@pytest.mark.parametrize("cls", SECRET_CLASSES)
def test_no_labeled_secret_survives(cls, corpus_out):
    _, after = corpus_out
    picked = [(c, a) for c, a in zip(CASES, after) if c.cls == cls]
    found = leaks([c for c, _ in picked], [a for _, a in picked])
    if found:
        pytest.fail(f"{cls}: {len(found)} of {len(picked)} records leak:\n" + "\n".join(found[:12]), pytrace=False)


@pytest.mark.parametrize("cls", NEGATIVE_CLASSES)
def test_hard_negative_is_unchanged(cls, corpus_out):
    before, after = corpus_out
    picked = [(c, b, a) for c, b, a in zip(CASES, before, after) if c.cls == cls]
    found = changed(*zip(*picked))
    if found:
        pytest.fail(f"{cls}: {len(found)} of {len(picked)} records changed:\n" + "\n".join(found[:12]), pytrace=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_property_any_seed_any_batch(feeder, stage, seed, data):
    corpus = labeled(seed, rounds=1)
    picks = data.draw(st.lists(st.integers(0, len(corpus) - 1), min_size=1, max_size=40), label="records")
    cases = [corpus[i] for i in picks]
    before, after = through(feeder, stage, cases)
    found = leaks(cases, after) + changed(cases, before, after)
    assert not found, "\n".join(found[:5])
