"""Micro-benchmarks of the hot paths, with pytest-benchmark; not part of the CI run.

    python -m pytest perf/bench_hotpaths.py --benchmark-only

Each benchmark runs one hot path in this process: a producer's claim + copy +
commit (one `Producer.info`), the C record write alone, a batch decode
(drain of 4096 records), the sanitize stage on a realistic batch, the JSON
lines formatter, and sealing a 1 MiB chunk.
"""
from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import logger_system
from logger_system._native import ffi, lib
from logger_system.pipeline import Batch
from logger_system.pipeline.sanitize import Sanitize
from logger_system.pipeline.stages import FormatJsonl
from logger_system.policy import Policy
from logger_system.record import META_DTYPE
from logger_system.ring import unlink
from logger_system.sealed import seal_chunk

from perf.corpus import realistic
from perf.workload import MESSAGE, args_for


@pytest.fixture
def producer():
    name = f"bench-{uuid.uuid4().hex[:8]}"
    log = logger_system.connect(name, capacity=256 << 20, on_full="drop")
    yield log
    unlink(name)


def _drain_all(ring) -> None:
    meta = ffi.new("lsr_meta[]", 8192)
    buf = ffi.new("uint8_t[]", 8 << 20)
    b = ffi.new("lsr_batch *")
    b.meta, b.buf, b.max_records, b.buf_cap = meta, buf, 8192, 8 << 20
    delta = ffi.new("lsr_totals *")
    cursor = lib.lsr_head(ring.ptr)
    while True:
        lib.lsr_drain(ring.ptr, cursor, b)
        if b.end == cursor:
            return
        lib.lsr_release(ring.ptr, b.end, delta)
        cursor = b.end


def test_producer_info_call(benchmark, producer):
    args = args_for(1, 0)
    benchmark(producer.info, MESSAGE, *args)
    _drain_all(producer.ring)


def test_c_write_record(benchmark, producer):
    ring = producer.ring
    slot = ring.slot()
    payload = b"x" * 100
    benchmark(lib.lsr_write, ring.ptr, slot, 20, 0, payload, 100, b"bench", 5, b"", 0, 0, 0)
    _drain_all(ring)


@pytest.fixture
def filled_batch(producer):
    """4096 realistic records drained into a batch: (meta, payload)."""
    for msg, fields in realistic(n=4096):
        producer.info(msg, **fields)
    ring = producer.ring
    meta = ffi.new("lsr_meta[]", 4096)
    buf = ffi.new("uint8_t[]", 8 << 20)
    b = ffi.new("lsr_batch *")
    b.meta, b.buf, b.max_records, b.buf_cap = meta, buf, 4096, 8 << 20
    lib.lsr_drain(ring.ptr, lib.lsr_head(ring.ptr), b)
    arr = np.frombuffer(ffi.buffer(meta, b.n * META_DTYPE.itemsize), META_DTYPE).copy()
    return arr, ffi.buffer(buf, b.buf_len)[:], (ring, b)


def test_batch_decode_4096(benchmark, filled_batch):
    _meta, _buf, (ring, b) = filled_batch
    head = lib.lsr_head(ring.ptr)
    benchmark(lib.lsr_drain, ring.ptr, head, b)
    assert b.n == 4096


def test_sanitize_batch_4096(benchmark, filled_batch):
    meta, buf, _ = filled_batch
    stage = Sanitize(Policy())
    benchmark(lambda: stage(Batch(meta=meta.copy(), buf=memoryview(buf), end=0)))


def test_format_batch_4096(benchmark, filled_batch):
    meta, buf, _ = filled_batch
    stage = FormatJsonl()
    out = benchmark(lambda: stage(Batch(meta=meta, buf=memoryview(buf), end=0)).out)
    assert out.count(b"\n") == 4096


def test_seal_chunk_1mib(benchmark):
    aead = AESGCM(AESGCM.generate_key(256))
    data = os.urandom(1 << 20)
    out = bytearray()
    benchmark(seal_chunk, aead, bytes(32), 0, data, final=False, last_seq=0, out=out)
