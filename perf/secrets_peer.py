"""The sanitizer against a peer secret scanner, Yelp's detect-secrets, on the labeled corpus.

Both see the same records of perf.corpus.labeled(): ours as the writer sees
them (logged by a real Producer into a ring, drained into batches, run through
the real Sanitize stage with the default policy); detect-secrets as the log
lines of a log file (message, then the fields as JSON), through its file
scan (`detect_secrets.core.scan.scan_file`, what `detect-secrets scan` runs
per file) with every default plugin and filter.

Recall, per class: the share of labeled records whose secrets were caught.
Ours catches a record when none of its labeled substrings is left anywhere in
the output (message or any string in the fields, keys too).  detect-secrets
reports findings, not rewrites: it catches a record when every labeled
substring lies inside the value of one of its findings ("covers"); "flagged"
counts a record with any finding at all, the most lenient reading.
Precision: of the records a scanner changed (ours) or flagged (the peer), the
share that hold a secret; the hard negatives and look-alikes are the rest.
MB/s: input bytes over time, median of rounds, both measured in the same run.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable

import numpy as np

from perf.corpus import Case, class_counts, labeled

try:  # the peer is optional: perf's extra installs it
    from detect_secrets.core.scan import scan_file as _ds_scan_file
    from detect_secrets.settings import default_settings as _ds_default_settings
except ImportError:  # pragma: no cover - reported as skipped
    _ds_scan_file = None


# ---------------------------------------------------------------------------
# ours: the real Sanitize stage over batches drained from a real ring

class Feeder:
    """A ring and a producer; batches(cases) logs the cases and drains them as the writer does."""

    def __init__(self, capacity: int = 16 << 20) -> None:
        import logger_system
        from logger_system._native import ffi, lib
        from logger_system.ring import unlink

        self._ffi, self._lib, self._unlink = ffi, lib, unlink
        self.name = f"perf-peer-{uuid.uuid4().hex[:10]}"
        self.log = logger_system.connect(self.name, capacity=capacity, max_record=1 << 18, on_full="drop",
                                         name="corpus")
        self.ring = self.log.ring
        self._max = 8192
        self._meta = ffi.new("lsr_meta[]", self._max)
        self._buf = ffi.new("uint8_t[]", self.ring.capacity)
        self._b = ffi.new("lsr_batch *")
        self._b.meta, self._b.buf, self._b.max_records, self._b.buf_cap = (self._meta, self._buf, self._max,
                                                                            self.ring.capacity)

    def batches(self, cases: Iterable[Case]) -> list[tuple[np.ndarray, bytes]]:
        from logger_system.record import META_DTYPE

        ffi, lib = self._ffi, self._lib
        for c in cases:
            if not self.log.info(c.msg, *c.args, **c.fields):
                raise RuntimeError(f"the ring refused {c.name()}")
        out = []
        cursor = lib.lsr_head(self.ring.ptr)
        while True:
            if lib.lsr_drain(self.ring.ptr, cursor, self._b) != 0:
                raise RuntimeError("lsr_drain failed")
            if self._b.end == cursor:
                break
            n = self._b.n
            meta = np.frombuffer(ffi.buffer(self._meta, n * META_DTYPE.itemsize), META_DTYPE).copy()
            out.append((meta, ffi.buffer(self._buf, self._b.buf_len)[:]))
            totals = ffi.new("lsr_totals *")
            totals.written = n
            lib.lsr_release(self.ring.ptr, self._b.end, totals)
            cursor = self._b.end
        return out

    def close(self) -> None:
        self.ring.close()
        self._unlink(self.name)


def sanitize_batches(batches, stage) -> list[tuple[bytes, bytes] | None]:
    """Each record's (message, fields JSON) bytes after `stage`, None for a record it dropped."""
    from logger_system.pipeline import Batch

    out: list[tuple[bytes, bytes] | None] = []
    for meta, buf in batches:
        b = stage(Batch(meta=meta.copy(), buf=memoryview(buf), end=0))
        data = bytes(b.buf)
        for m, keep in zip(b.meta, b.keep):
            if not keep:
                out.append(None)
                continue
            mo, ml, fo, fl = int(m["msg_off"]), int(m["msg_len"]), int(m["fields_off"]), int(m["fields_len"])
            out.append((data[mo:mo + ml], data[fo:fo + fl]))
    return out


def raw_records(batches) -> list[tuple[bytes, bytes]]:
    """Each record's (message, fields JSON) bytes as they entered the stage."""
    out = []
    for meta, buf in batches:
        for m in meta:
            mo, ml, fo, fl = int(m["msg_off"]), int(m["msg_len"]), int(m["fields_off"]), int(m["fields_len"])
            out.append((buf[mo:mo + ml], buf[fo:fo + fl]))
    return out


def strings_of(value) -> list[str]:
    """Every string in a parsed JSON value, keys too; other scalars in their JSON spelling."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings_of(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return [json.dumps(value)]


def survivors(case: Case, out: tuple[bytes, bytes] | None) -> list[str]:
    """The labeled substrings of `case` still in its sanitized record (none if it was dropped)."""
    if out is None:
        return []
    msg, fields = out
    texts = [msg.decode("utf-8", "replace")]
    raw_fields = fields.decode("utf-8", "replace")
    if fields:
        try:
            texts += strings_of(json.loads(fields))
        except ValueError:
            pass  # not JSON any more: the raw text below still counts
        texts.append(raw_fields)
    return [s for s in case.secrets if any(s in t for t in texts)]


def ours_outcomes(cases: list[Case], stage=None) -> list[dict]:
    """Per case: changed (the record differs from what went in) and left (labeled substrings surviving)."""
    from logger_system.pipeline.sanitize import Sanitize
    from logger_system.policy import Policy

    stage = stage or Sanitize(Policy())
    feeder = Feeder()
    try:
        batches = feeder.batches(cases)
    finally:
        feeder.close()
    before = raw_records(batches)
    after = sanitize_batches(batches, stage)
    assert len(after) == len(cases), "every case is one record"
    return [{"changed": a != b, "left": survivors(c, a)} for c, b, a in zip(cases, before, after)]


def ours_speed(records: list[tuple[str, tuple, dict]], rounds: int) -> dict:
    """MB/s of the Sanitize stage over the records' batches (payload bytes), median of rounds."""
    from logger_system.pipeline import Batch
    from logger_system.pipeline.sanitize import Sanitize
    from logger_system.policy import Policy

    feeder = Feeder(capacity=64 << 20)
    try:
        batches = feeder.batches(Case("", "", "", m, a, f) for m, a, f in records)
    finally:
        feeder.close()
    nbytes = sum(len(buf) for _, buf in batches)
    stage = Sanitize(Policy())
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for meta, buf in batches:
            stage(Batch(meta=meta.copy(), buf=memoryview(buf), end=0))
        rates.append(nbytes / (time.perf_counter() - t0) / 1e6)
    return {"bytes": nbytes, "mb_s": statistics.median(rates), "rounds": rates}


# ---------------------------------------------------------------------------
# the peer

def _escaped(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1]


def peer_findings(lines: list[str]) -> list[list[str]]:
    """detect-secrets over the lines as one log file (its file scan, every default plugin and
    filter): the values it found on each line.  A line holding newlines is several file lines."""
    spans, n = [], 0
    for line in lines:
        k = line.count("\n") + 1
        spans.append((n + 1, n + k))
        n += k
    with tempfile.TemporaryDirectory(prefix="perf-peer-") as d:
        path = os.path.join(d, "service.log")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        by_line: dict[int, list[str]] = {}
        with _ds_default_settings():
            for found in _ds_scan_file(path):
                by_line.setdefault(found.line_number, []).append(found.secret_value or "")
    return [[v for i in range(a, b + 1) for v in by_line.get(i, ())] for a, b in spans]


def peer_outcomes(cases: list[Case]) -> list[dict]:
    found = peer_findings([c.line() for c in cases])
    res = []
    for c, values in zip(cases, found):
        covered = [s for s in c.secrets if any(s in v or _escaped(s) in v for v in values)]
        res.append({"flagged": bool(values), "left": [s for s in c.secrets if s not in covered]})
    return res


def peer_speed(lines: list[str], rounds: int) -> dict:
    nbytes = sum(len(line.encode()) for line in lines)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        peer_findings(lines)
        rates.append(nbytes / (time.perf_counter() - t0) / 1e6)
    return {"bytes": nbytes, "mb_s": statistics.median(rates), "rounds": rates}


# ---------------------------------------------------------------------------
# scores

def _score(cases: list[Case], caught: list[bool], hit: list[bool]) -> dict:
    """caught: the case's secrets are all gone/covered; hit: the scanner changed/flagged the record."""
    per: dict[str, dict] = {}
    for c, ok, h in zip(cases, caught, hit):
        d = per.setdefault(c.cls, {"cases": 0, "caught": 0, "hit": 0})
        d["cases"] += 1
        d["caught"] += ok
        d["hit"] += h
    secret = [(ok, h) for c, ok, h in zip(cases, caught, hit) if not c.negative]
    neg_hits = sum(h for c, h in zip(cases, hit) if c.negative)
    pos_hits = sum(h for _, h in secret)
    by_pos: dict[str, list[int]] = {}
    for c, ok in zip(cases, caught):
        if not c.negative:
            p = by_pos.setdefault(c.position, [0, 0])
            p[0] += ok
            p[1] += 1
    return {
        "recall": sum(ok for ok, _ in secret) / len(secret),
        "flagged_share": pos_hits / len(secret),
        "precision": pos_hits / (pos_hits + neg_hits) if pos_hits + neg_hits else 1.0,
        "negatives": sum(c.negative for c in cases),
        "negatives_hit": neg_hits,
        "recall_by_position": {p: v[0] / v[1] for p, v in by_pos.items()},
        "per_class": per,
    }


def run(rounds: int = 3, seed: int = 13, corpus_rounds: int = 2, realistic_n: int = 20000) -> dict:
    """The labeled corpus, its class counts, and both scanners' recall, precision and MB/s."""
    from perf.corpus import realistic
    from perf.sanitize_bench import measure

    cases = labeled(seed, corpus_rounds)
    out: dict = {"corpus": {"seed": seed, "records": len(cases), "secret_records": sum(not c.negative for c in cases),
                            "negative_records": sum(c.negative for c in cases), "classes": class_counts(cases)}}
    ours = ours_outcomes(cases)
    out["ours"] = _score(cases, [not o["left"] for o in ours], [o["changed"] for o in ours])
    out["ours"]["missed"] = [{"case": c.name(), "left": o["left"]} for c, o in zip(cases, ours) if o["left"]]
    out["ours"]["changed_negatives"] = [c.name() for c, o in zip(cases, ours) if c.negative and o["changed"]]
    records = [(c.msg, c.args, c.fields) for c in cases]
    lines = [c.line() for c in cases]
    # side by side: each round times ours, then the peer
    speed_ours, speed_peer = [], []
    if _ds_scan_file is None:
        out["detect_secrets"] = {"skipped": "detect-secrets is not installed (pip install -e '.[perf]')"}
    else:
        from detect_secrets.__version__ import VERSION

        peer = peer_outcomes(cases)
        out["detect_secrets"] = _score(cases, [not o["left"] for o in peer], [o["flagged"] for o in peer])
        out["detect_secrets"]["version"] = VERSION
    for _ in range(rounds):
        speed_ours.append(ours_speed(records, 1))
        if _ds_scan_file is not None:
            speed_peer.append(peer_speed(lines, 1))
    out["ours"]["mb_s"] = statistics.median(s["mb_s"] for s in speed_ours)
    out["ours"]["bytes"] = speed_ours[0]["bytes"]
    if speed_peer:
        out["detect_secrets"]["mb_s"] = statistics.median(s["mb_s"] for s in speed_peer)
        out["detect_secrets"]["bytes"] = speed_peer[0]["bytes"]
    r = measure(realistic(n=realistic_n), rounds)
    out["realistic"] = {"records": r["records"], "ours_mb_s": r["ours_mb_s"], "naive_mb_s": r["naive_mb_s"],
                        "ratio": r["ratio"]}
    return out


def render(res: dict) -> list[str]:
    """The Markdown section of the perf report."""
    c, o, p = res["corpus"], res["ours"], res.get("detect_secrets", {})
    have_peer = "recall" in p
    lines = ["## Labeled corpus: logger_system against detect-secrets", "",
             f"`perf.corpus.labeled(seed={c['seed']})`: {c['records']} records, {c['secret_records']} with a "
             f"secret (each sample in 6 positions: text, %-args, field, field at depth, JSON in text, "
             f"traceback), {c['negative_records']} hard negatives. Recall: records whose labeled secrets are all "
             "gone (ours) or all inside a finding's value (detect-secrets; `flagged`: any finding on the line). "
             "Precision: of the records changed / flagged, the share holding a secret.", ""]
    if not have_peer:
        lines += [f"detect-secrets: {p.get('skipped', 'not measured')}", ""]
    head = "| | logger_system | detect-secrets" + (f" {p['version']}" if have_peer else "") + " |"
    lines += [head, "|---|---:|---:|"]

    def both(label, key, fmt):
        lines.append(f"| {label} | {fmt(o[key])} | {fmt(p[key]) if have_peer else '—'} |")

    both("recall", "recall", lambda v: f"{v:.1%}")
    both("records flagged or changed", "flagged_share", lambda v: f"{v:.1%}")
    both("precision", "precision", lambda v: f"{v:.1%}")
    both("hard negatives hit", "negatives_hit", lambda v: f"{v} of {o['negatives']}")
    both("MB/s (median of rounds)", "mb_s", lambda v: f"{v:.2f}")
    r = res["realistic"]
    lines += ["", f"Ours on the realistic corpus in the same run: {r['ours_mb_s']:.1f} MB/s, "
              f"{r['ratio']:.0f}x the naive baseline ({r['naive_mb_s']:.1f} MB/s).", "",
              "| class | records | ours recall | detect-secrets covers | detect-secrets flagged |",
              "|---|---:|---:|---:|---:|"]
    for cls, d in o["per_class"].items():
        if cls.startswith("neg:"):
            continue
        q = p["per_class"][cls] if have_peer else None
        lines.append(f"| {cls} | {d['cases']} | {d['caught'] / d['cases']:.0%} | "
                     + (f"{q['caught'] / q['cases']:.0%} | {q['hit'] / q['cases']:.0%} |" if q else "— | — |"))
    lines += ["", "| hard negative | records | ours changed | detect-secrets flagged |", "|---|---:|---:|---:|"]
    for cls, d in o["per_class"].items():
        if cls.startswith("neg:"):
            q = p["per_class"][cls] if have_peer else None
            lines.append(f"| {cls} | {d['cases']} | {d['hit']} | {q['hit'] if q else '—'} |")
    lines += ["", "Recall by position (ours): " + ", ".join(f"{k} {v:.0%}" for k, v in o["recall_by_position"].items())]
    if have_peer:
        lines += ["Recall by position (detect-secrets): "
                  + ", ".join(f"{k} {v:.0%}" for k, v in p["recall_by_position"].items())]
    lines.append("")
    return lines


if __name__ == "__main__":
    print("\n".join(render(run())))
