"""Sanitizer throughput: the batch sanitizer against the naive baseline.

The naive baseline is what a typical "redacting filter" does: one `re.sub`
per rule per record, in Python.  Both see the same records (message and
fields JSON) of the same corpus, in the same run; MB/s counts payload bytes.
Rounds are interleaved and the medians reported (see measure).
"""
from __future__ import annotations

import json
import math
import re
import statistics
import time
import uuid

import numpy as np

from logger_system._native import ffi, lib
from logger_system.pipeline import Batch
from logger_system.pipeline.sanitize import Sanitize
from logger_system.policy import Policy
from logger_system.record import META_DTYPE
from logger_system.ring import Ring, unlink

from perf.corpus import dense, realistic

NAIVE_RULES = [
    (re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "[REDACTED:credit_card]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[REDACTED:ssn]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[REDACTED:email]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[REDACTED:ipv4]"),
    (re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b"), "[REDACTED:ipv6]"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"), "[REDACTED:jwt]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[REDACTED:aws_key]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "[REDACTED:github_token]"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "[REDACTED:slack_token]"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "[REDACTED:private_key]"),
    (re.compile(r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"),
     r"\1[REDACTED:password]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED:bearer]"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://[REDACTED:url_credentials]@"),
]


def naive(texts: list[str]) -> list[str]:
    out = []
    for t in texts:
        for rx, repl in NAIVE_RULES:
            t = rx.sub(repl, t)
        out.append(t)
    return out


def _batches(records: list[tuple[str, dict]]) -> list[tuple[np.ndarray, bytes]]:
    """The corpus as the writer would drain it: (meta, payload) per batch."""
    name = f"perf-san-{uuid.uuid4().hex[:8]}"
    ring = Ring(name, capacity=64 << 20)
    out = []
    try:
        import logger_system

        log = logger_system.connect(name, name="svc")
        for msg, fields in records:
            log.info(msg, **fields)
        meta = ffi.new("lsr_meta[]", 8192)
        buf = ffi.new("uint8_t[]", 8 << 20)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = meta, buf, 8192, 8 << 20
        cursor = lib.lsr_head(ring.ptr)
        while True:
            lib.lsr_drain(ring.ptr, cursor, b)
            if b.end == cursor:
                break
            m = np.frombuffer(ffi.buffer(meta, b.n * META_DTYPE.itemsize), META_DTYPE).copy()
            out.append((m, ffi.buffer(buf, b.buf_len)[:]))
            cursor = b.end
    finally:
        unlink(name)
    return out


def measure(records: list[tuple[str, dict]], rounds: int = 15, naive_rounds: int | None = None,
            min_round_s: float = 0.05) -> dict:
    """Median MB/s of the sanitize stage and of the naive baseline over interleaved rounds.

    One pass of each is run first and not counted (caches, the regex cache, lazy
    initialisation).  A round of ours runs the whole corpus as many times as makes it last
    at least min_round_s, so that a round is not a few milliseconds at the mercy of one
    scheduler tick; the naive baseline (a pass takes seconds) runs once per naive round,
    its rounds spread among ours, so that machine noise hits both alike.
    """
    batches = _batches(records)
    nbytes = sum(len(buf) for _, buf in batches)
    stage = Sanitize(Policy())
    texts = [msg + " " + json.dumps(fields) for msg, fields in records]

    def ours_pass() -> None:
        for meta, buf in batches:
            stage(Batch(meta=meta.copy(), buf=memoryview(buf), end=0))

    ours_pass()  # warm-up, not counted
    naive(texts[:500])
    t0 = time.perf_counter()
    ours_pass()  # calibration, not counted
    passes = max(1, math.ceil(min_round_s / max(time.perf_counter() - t0, 1e-9)))
    if naive_rounds is None:
        naive_rounds = max(1, min(5, rounds // 3))
    naive_rounds = min(naive_rounds, rounds)
    ours, naive_rates = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        for _ in range(passes):
            ours_pass()
        ours.append(passes * nbytes / (time.perf_counter() - t0) / 1e6)
        if (r * naive_rounds) // rounds != ((r + 1) * naive_rounds) // rounds:  # spread among ours
            t0 = time.perf_counter()
            naive(texts)
            naive_rates.append(nbytes / (time.perf_counter() - t0) / 1e6)
    o, nv = statistics.median(ours), statistics.median(naive_rates)
    return {"records": len(records), "bytes": nbytes, "ours_mb_s": o, "naive_mb_s": nv, "ratio": o / nv,
            "ours_rounds": ours, "naive_rounds": naive_rates, "passes_per_round": passes}


def run(n: int = 20000, rounds: int = 15) -> dict:
    return {"realistic": measure(realistic(n=n), rounds), "dense": measure(dense(n=n), rounds)}


if __name__ == "__main__":
    res = run()
    for name, r in res.items():
        print(f"{name:<10} ours {r['ours_mb_s']:8.1f} MB/s   naive {r['naive_mb_s']:6.1f} MB/s   "
              f"{r['ratio']:5.1f}x   ({r['records']} records, {r['bytes'] / 1e6:.1f} MB; median of "
              f"{len(r['ours_rounds'])} rounds of {r['passes_per_round']} passes, "
              f"range {min(r['ours_rounds']):.0f}-{max(r['ours_rounds']):.0f})")
