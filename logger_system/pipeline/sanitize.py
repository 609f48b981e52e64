"""The sanitize stage: PII and secrets out of a whole batch before it is written.

Built-in rules run in C over the batch buffer (native/sanitize.c) and give
spans; policy rules (RE2) run over the same buffer in one call each; the
spans of the hash action get their keyed pseudonym here; then one C call
rewrites the batch with every span replaced.  Python does work per span only
for hash and policy rules, never per record.
"""
from __future__ import annotations

import hashlib
import hmac

import numpy as np

from .._native import ffi, lib
from ..policy import ACTIONS, BUILTIN_RULES, FIELD_RULE, Policy, compile_pattern, field_key
from ..record import META_DTYPE
from . import Batch

SPAN_DTYPE = np.dtype([("rec", "<u4"), ("start", "<u4"), ("len", "<u4"), ("rule", "<u2"),
                       ("action", "u1"), ("flags", "u1"), ("repl_off", "<u4"), ("repl_len", "<u4")])
assert SPAN_DTYPE.itemsize == ffi.sizeof("lsr_span")

FIELD_ID = lib.LSR_R_FIELD
CUSTOM_BASE = 64
_NO_REPL = 0xFFFFFFFF
_HASH = ACTIONS.index("hash")


def rule_names(policy: Policy) -> list[str]:
    """Name of every rule id: built-ins, `field` at 63, policy rules from 64."""
    names = list(BUILTIN_RULES) + [""] * (FIELD_ID - len(BUILTIN_RULES)) + [FIELD_RULE]
    return names + [r.name for r in policy.rules]


_NUMBER = frozenset(b"0123456789+-.eE")


def _fit_json(raw: bytes, lo: int, hi: int, a: int, b: int) -> tuple[int, int, bool] | None:
    """Where a match [a, b) in the fields JSON [lo, hi) may be replaced.

    Inside a string: as it is, unless it holds a quote or a backslash.  In a
    number: the whole number, quoted.  Anywhere else: nowhere (None).
    """
    in_string, i = False, lo
    while i < a:
        ch = raw[i]
        if in_string and ch == 0x5C:  # backslash: skip the escaped byte
            i += 2
            continue
        if ch == 0x22:
            in_string = not in_string
        i += 1
    if i > a:
        return None  # the match starts inside an escape
    if in_string:
        part = raw[a:b]
        return None if (b'"' in part or b"\\" in part) else (a, b, False)
    if not all(c in _NUMBER for c in raw[a:b]):
        return None
    while a > lo and raw[a - 1] in _NUMBER:
        a -= 1
    while b < hi and raw[b] in _NUMBER:
        b += 1
    return a, b, True


class Sanitize:
    """Replace what the policy's rules find; count records changed and hits per rule."""

    def __init__(self, policy: Policy, on_hits=None) -> None:
        self.policy = policy
        self.on_hits = on_hits  # called with an array of hits per rule id after each batch
        cfg = self._cfg = ffi.new("lsr_san_config *")
        for name in policy.builtin:
            cfg.enabled |= 1 << BUILTIN_RULES.index(name)
        if policy.redact_fields:
            cfg.enabled |= 1 << FIELD_ID
        for rid, name in enumerate(BUILTIN_RULES):
            cfg.action[rid] = ACTIONS.index(policy.action_of(name))
        cfg.action[FIELD_ID] = ACTIONS.index(policy.action_of(FIELD_RULE))
        encoded = [k for k in dict.fromkeys(field_key(f) for f in policy.redact_fields) if 0 < len(k) < 256]
        names = b"".join(bytes([len(f)]) + f for f in encoded)
        self._field_names = ffi.new("uint8_t[]", names or b"\0")
        cfg.field_names = self._field_names
        cfg.field_names_len = len(names)
        self.names = rule_names(policy)
        table = b"".join(n.encode() + b"\0" for n in self.names)
        offsets = np.cumsum([0] + [len(n.encode()) + 1 for n in self.names[:-1]]).astype(np.uint32)
        self._names = ffi.new("uint8_t[]", table)
        self._name_off = ffi.new("uint32_t[]", offsets.tolist())
        self._custom = [(CUSTOM_BASE + i, compile_pattern(r.pattern, r.name, multiline=True),
                         ACTIONS.index(r.action)) for i, r in enumerate(policy.rules)]
        self._spans = np.empty(4096, SPAN_DTYPE)
        self._out = ffi.new("uint8_t[]", 1 << 20)
        self._out_cap = 1 << 20
        self._meta_out = np.empty(0, META_DTYPE)

    def scan(self, batch: Batch) -> np.ndarray:
        """Spans of the built-in rules and the policy's own rules, sorted by start."""
        n = len(batch.meta)
        meta = ffi.from_buffer("lsr_meta[]", batch.meta)
        buf = ffi.from_buffer("uint8_t[]", batch.buf)
        keep = ffi.from_buffer("uint8_t[]", batch.keep)
        while True:
            spans = ffi.from_buffer("lsr_span[]", self._spans)
            got = lib.lsr_san_scan(meta, n, buf, keep, self._cfg, spans, len(self._spans))
            if got >= 0:
                break
            self._spans = np.empty(len(self._spans) * 4, SPAN_DTYPE)
        found = self._spans[:got]
        if self._custom:
            extra = self._scan_custom(batch)
            if len(extra):
                found = np.concatenate([found, extra])
                found = found[np.argsort(found["start"], kind="stable")]
        return found

    def _scan_custom(self, batch: Batch) -> np.ndarray:
        """Policy rules over the whole batch at once.

        The messages and fields of the kept records are gathered into one text,
        a newline after each, and every pattern runs over it once in multi-line
        mode, so ^ and $ hold at each message's (and line's) start and end.  A
        match must lie inside one region; in fields it must not cut a JSON
        string apart, and a match in a number stands for the whole number.
        """
        meta, keep = batch.meta, batch.keep != 0
        starts = np.stack([meta["msg_off"], meta["fields_off"]], 1)[keep].ravel().astype(np.int64)
        lens = np.stack([meta["msg_len"], meta["fields_len"]], 1)[keep].ravel().astype(np.int64)
        recs = np.repeat(np.nonzero(keep)[0], 2).astype(np.uint32)
        infields = np.tile(np.array([0, 1], np.uint8), int(keep.sum()))
        at = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)  # region k in the text
        total = int(lens.sum())
        src = np.frombuffer(batch.buf, np.uint8)
        text = np.full(int((lens + 1).sum()), 0x0A, np.uint8)
        if total:
            first = np.cumsum(lens) - lens
            step = np.arange(total, dtype=np.int64)
            text[np.repeat(at - first, lens) + step] = src[np.repeat(starts - first, lens) + step]
        data = text.tobytes()
        raw = bytes(batch.buf)
        rows = []
        for rid, rx, action in self._custom:
            for m in rx.finditer(data):
                a, b = m.start(), m.end()
                if b == a:
                    continue
                k = int(np.searchsorted(at, a, side="right")) - 1
                if b > at[k] + lens[k]:
                    continue  # runs across two regions
                start, end = int(starts[k] + a - at[k]), int(starts[k] + b - at[k])
                flags = 0
                if infields[k]:
                    fit = _fit_json(raw, int(starts[k]), int(starts[k] + lens[k]), start, end)
                    if fit is None:
                        continue
                    start, end, quote = fit
                    flags = 2 | (1 if quote else 0)  # LSR_SPAN_IN_FIELDS, LSR_SPAN_QUOTE
                rows.append((recs[k], start, end - start, rid, action, flags, _NO_REPL, 0))
        return np.array(rows, SPAN_DTYPE) if rows else np.empty(0, SPAN_DTYPE)

    def _pseudonyms(self, batch: Batch, spans: np.ndarray) -> bytes:
        """Keyed, stable pseudonyms for the spans whose action is hash."""
        idx = np.nonzero(spans["action"] == _HASH)[0]
        if not len(idx):
            return b""
        key = self.policy.hash_key
        assert key is not None  # the policy refuses hash without a key
        data = batch.buf
        out = bytearray()
        for i in idx:
            s = spans[i]
            value = bytes(data[s["start"]:s["start"] + s["len"]])
            digest = hmac.new(key, value, hashlib.sha256).hexdigest()[:16]
            text = f"[HASH:{self.names[s['rule']]}:{digest}]".encode()
            spans["repl_off"][i] = len(out)
            spans["repl_len"][i] = len(text)
            out += text
        return bytes(out)

    def __call__(self, batch: Batch) -> Batch:
        if not self.policy.enabled or len(batch.meta) == 0:
            return batch
        spans = self.scan(batch)
        if not len(spans):
            return batch
        repl = self._pseudonyms(batch, spans)
        n = len(batch.meta)
        need = lib.lsr_san_bound(len(batch.buf), len(spans))
        if need > self._out_cap:
            self._out_cap = max(need, self._out_cap * 2)
            self._out = ffi.new("uint8_t[]", self._out_cap)
        if len(self._meta_out) < n:
            self._meta_out = np.empty(max(n, 2 * len(self._meta_out)), META_DTYPE)
        kept_before = batch.kept
        size = lib.lsr_san_rewrite(
            ffi.from_buffer("lsr_meta[]", batch.meta), n, ffi.from_buffer("uint8_t[]", batch.buf),
            ffi.from_buffer("uint8_t[]", batch.keep), ffi.from_buffer("lsr_span[]", spans), len(spans),
            self._names, self._name_off, len(self.names), ffi.from_buffer("uint8_t[]", repl or b"\0"),
            ffi.from_buffer("lsr_meta[]", self._meta_out), self._out, self._out_cap)
        if size < 0:
            raise RuntimeError("sanitizer output buffer too small")  # lsr_san_bound rules this out
        dropped = kept_before - batch.kept
        batch.delta.sanitize_dropped += dropped
        batch.delta.sanitized += len(np.unique(spans["rec"])) - dropped
        batch.meta = self._meta_out[:n]
        batch.buf = ffi.buffer(self._out, size)
        if self.on_hits is not None:
            self.on_hits(np.bincount(spans["rule"], minlength=len(self.names)))
        return batch
