"""The sanitize stage: PII and secrets out of a whole batch before it is written.

Built-in rules run in C over the batch buffer (native/sanitize.c) and give
spans; policy rules (RE2) run over the same buffer in one call each; the
spans of the hash action get their keyed pseudonym here; then one C call
rewrites the batch with every span replaced.  Python does work per span only
for hash and policy rules, never per record.
"""
from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import re

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


WHOLE_VALUE = "policy:whole_value"  # hits counter: values replaced whole by a policy rule
_ACTION_RANK = np.array([3, 1, 2, 4], np.int8)  # redact, mask, hash, drop: the strongest wins a merge
_MASK = ACTIONS.index("mask")
_DROP = ACTIONS.index("drop")
_REPL_MAX = 160  # lsr_san_rewrite writes at most this much of a caller's replacement

# the fields JSON as tokens: a string, a scalar (number, true, false, null), one structural byte
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[^\s"{}\[\]:,]+|[{}\[\]:,]')
_S, _SCALAR, _OPEN, _CLOSE, _COLON, _COMMA = range(6)
_KIND = {ord("{"): _OPEN, ord("["): _OPEN, ord("}"): _CLOSE, ord("]"): _CLOSE, ord(":"): _COLON,
         ord(","): _COMMA, ord('"'): _S}
# one escape in a JSON string; a surrogate pair counts as one
_ESCAPE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.")
_WORD = re.compile(rb"[A-Za-z0-9_]")
_PUNCT = np.zeros(256, bool)
_PUNCT[list(b"{}[]:, \t\r")] = True


class _Fields:
    """One record's fields JSON, tokenized, for placing policy-rule matches.

    toks: (start, end, kind) in the batch buffer; key_value[i]: for a key
    (a string followed by ':') the token range of its value; esc[i]: True for
    a string with an escape in it.  `ok` is False when the text is not the
    JSON object it should be: then nothing is placed in it, the whole of it
    is replaced (fail closed).
    """

    __slots__ = ("lo", "hi", "toks", "starts", "key_value", "esc", "ok")

    def __init__(self, raw: bytes, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        toks = [(m.start(), m.end(), _KIND.get(raw[m.start()], _SCALAR)) for m in _TOKEN.finditer(raw, lo, hi)]
        self.toks, self.starts = toks, [t[0] for t in toks]
        self.esc = {i: raw.find(b"\\", t[0], t[1]) >= 0 for i, t in enumerate(toks) if t[2] == _S}
        self.key_value: dict[int, tuple[int, int]] = {}
        closing: dict[int, int] = {}
        stack: list[int] = []
        ok = bool(toks) and toks[0][2] == _OPEN and raw[lo] == 0x7B
        for i, t in enumerate(toks):
            if t[2] == _OPEN:
                stack.append(i)
            elif t[2] == _CLOSE:
                if not stack:
                    ok = False
                    break
                closing[stack.pop()] = i
            elif t[2] == _S and i + 2 < len(toks) and toks[i + 1][2] == _COLON:
                self.key_value[i] = (i + 2, i + 2)
        self.ok = ok and not stack
        if self.ok:
            for i, (v, _) in self.key_value.items():
                kind = toks[v][2]
                if kind == _OPEN:
                    self.key_value[i] = (v, closing[v])
                elif kind not in (_S, _SCALAR):
                    self.ok = False

    def touched(self, a: int, b: int) -> list[int]:
        """Tokens holding bytes of [a, b) (for a string: of its content, not its quotes)."""
        out = []
        for i in range(max(bisect.bisect_right(self.starts, a) - 1, 0), len(self.toks)):
            s, e, kind = self.toks[i]
            if s >= b:
                break
            if kind == _S:
                s, e = s + 1, e - 1
            if kind in (_S, _SCALAR) and s < b and a < e:
                out.append(i)
        return out


def _literal_runs(raw: bytes, cs: int, ce: int) -> tuple[list[int], list[tuple[int, int]], int]:
    """Where the decoded value of a JSON string's content [cs, ce) is its raw bytes.

    Returns the decoded offsets of the runs without escapes, their raw ranges,
    and the decoded length (UTF-8).  A match inside one run has the same bytes
    in the raw JSON and can be replaced there.
    """
    dec_at, runs = [], []
    rp, dp = cs, 0
    for m in _ESCAPE.finditer(raw, cs, ce):
        es, ee = m.span()
        if es > rp:
            dec_at.append(dp)
            runs.append((rp, es))
            dp += es - rp
        esc = raw[es:ee]
        if len(esc) == 12:
            dp += 4
        elif esc[1] == 0x75:  # \uXXXX
            dp += len(chr(int(esc[2:], 16)).encode("utf-8", "surrogatepass"))
        else:
            dp += 1
        rp = ee
    if ce > rp:
        dec_at.append(dp)
        runs.append((rp, ce))
        dp += ce - rp
    return dec_at, runs, dp


def counter_names(policy: Policy) -> tuple[list[str], np.ndarray]:
    """The names the writer gives the ring's hit counters, in order, and the rule id each counts.

    Every built-in, the field rule, each policy rule and, with policy rules, the values a
    rule replaced whole: at most the ring's RULE_COUNTERS (policy.MAX_RULES keeps it so).
    """
    custom = len(policy.rules)
    names = (list(BUILTIN_RULES) + [FIELD_RULE] + [r.name for r in policy.rules]
             + ([WHOLE_VALUE] if custom else []))
    ids = list(range(len(BUILTIN_RULES))) + [FIELD_ID] + [CUSTOM_BASE + i for i in range(custom + 1 if custom else 0)]
    return names, np.array(ids)


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

    whole_values = 0  # values replaced whole by a policy rule, since the start (see _Placer)
    _hits: np.ndarray | None = None
    _repl = b""

    def scan(self, batch: Batch) -> np.ndarray:
        """Spans of the built-in rules and the policy's own rules, sorted by start, not overlapping.

        Also sets self._hits (hits per rule id, the last entry counting values
        replaced whole) and self._repl (replacements made for policy-rule spans).
        """
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
        hits = np.zeros(len(self.names) + 1, np.int64)
        hits[:len(self.names)] = np.bincount(found["rule"], minlength=len(self.names))[:len(self.names)]
        self._repl = b""
        if self._custom:
            placer = _Placer(self, batch)
            extra = placer.run()
            hits += placer.hits
            self._repl = bytes(placer.repl)
            self.whole_values += int(placer.hits[-1])
            if len(extra):
                found = np.concatenate([found, extra])
                found = _merge(found[np.lexsort((-found["len"].astype(np.int64), found["start"]))])
        self._hits = hits
        return found

    def _pseudonyms(self, batch: Batch, spans: np.ndarray) -> bytes:
        """Keyed, stable pseudonyms for the spans whose action is hash (and that have no
        replacement yet), after the replacements the policy rules made."""
        out = bytearray(self._repl)
        idx = np.nonzero((spans["action"] == _HASH) & (spans["repl_off"] == _NO_REPL))[0]
        if not len(idx):
            return bytes(out)
        key = self.policy.hash_key
        assert key is not None  # the policy refuses hash without a key
        data = batch.buf
        for i in idx:
            s = spans[i]
            value = bytes(data[s["start"]:s["start"] + s["len"]])
            text = _pseudonym(key, self.names[s["rule"]], value)
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
            self.on_hits(self._hits)  # per rule id; the last entry: values replaced whole
        return batch


def _pseudonym(key: bytes, name: str, value: bytes) -> bytes:
    digest = hmac.new(key, value, hashlib.sha256).hexdigest()[:16]
    return f"[HASH:{name}:{digest}]".encode()


def _merge(spans: np.ndarray) -> np.ndarray:
    """Overlapping spans (sorted by start, longest first) made one, so none is skipped.

    The rewrite skips a span that overlaps an earlier one; a policy rule's span
    may overlap a built-in's, or a value replaced whole the spans inside it.
    The union is replaced, by the strongest action among them (drop, redact,
    hash, mask); a span that covers the union and has that action gives its
    own replacement.
    """
    n = len(spans)
    if n < 2:
        return spans
    end = spans["start"].astype(np.int64) + spans["len"]
    run_end = np.maximum.accumulate(end)
    head = np.ones(n, bool)
    head[1:] = spans["start"][1:] >= run_end[:-1]
    if head.all():
        return spans
    heads = np.flatnonzero(head)
    sizes = np.diff(np.append(heads, n))
    out = spans[heads].copy()
    for g in np.flatnonzero(sizes > 1):
        lo, hi = int(heads[g]), int(heads[g] + sizes[g])
        grp = spans[lo:hi]
        u_start, u_end = int(grp["start"][0]), int(run_end[hi - 1])
        rank = _ACTION_RANK[grp["action"]]
        best = np.flatnonzero((grp["start"] == u_start) & (end[lo:hi] == u_end) & (rank == rank.max()))
        if len(best):
            out[g] = grp[best[0]]
            continue
        rep = grp[int(np.argmax(rank))].copy()
        rep["start"], rep["len"] = u_start, u_end - u_start
        rep["repl_off"], rep["repl_len"] = _NO_REPL, 0
        rep["flags"] = np.bitwise_or.reduce(grp["flags"])
        if rep["action"] == _MASK:
            rep["action"] = 0  # a mask of a union would show bytes of another span: redact
        out[g] = rep
    return out


class _Placer:
    """The policy rules over one batch: where each match goes in the batch buffer.

    Messages are text: a match is replaced where it is.  Fields are JSON: a
    rule is matched against the decoded string values (at any depth, keys too)
    and numbers.  Every pattern first runs once over the raw text of the whole
    batch (messages and fields, one region each, a newline after each), where
    the quotes around the strings of the fields are made newlines too, so ^ and
    $ hold at each value's start and end and `.` cannot leave a value.  Only
    the strings that hold an escape are decoded and matched again, one by one.

    Fail closed: a match that cannot be replaced where it is (it covers an
    escape, it crosses from one value to another) replaces the value whole; a
    match in a field name replaces the name (where it is, or whole) and the
    field's value whole; a match in a number or in true/false/null replaces it
    whole, quoted.  Each value replaced whole is counted in hits[-1].
    """

    def __init__(self, san: Sanitize, batch: Batch) -> None:
        self.san, self.batch = san, batch
        self.rows: list[tuple] = []
        self.repl = bytearray()
        self.hits = np.zeros(len(san.names) + 1, np.int64)
        self.fields: dict[int, _Fields] = {}
        self.raw = bytes(batch.buf)
        self.done_whole: set[tuple[int, int]] = set()  # (token start, rule id) replaced whole

    # -- emitting spans

    def _row(self, rec, start, end, rid, action, flags, text: bytes | None = None) -> None:
        off, ln = _NO_REPL, 0
        if text is not None:
            off, ln = len(self.repl), len(text)
            self.repl += text
        self.rows.append((rec, start, end - start, rid, action, flags, off, ln))

    def _text(self, rid: int, action: int, matched: list[bytes]) -> bytes | None:
        """What replaces a value whole: the replacement of each distinct match, as far as they fit."""
        if action not in (_HASH, _MASK):
            return None  # [REDACTED:rule], written by the rewrite
        name = self.san.names[rid]
        parts: list[bytes] = []
        size = 0
        for value in dict.fromkeys(matched):
            if action == _HASH:
                part = _pseudonym(self.san.policy.hash_key, name, value)
            else:
                part = f"[MASKED:{name}:****".encode() + b"".join(_WORD.findall(value)[-4:]) + b"]"
            if parts and size + 1 + len(part) > _REPL_MAX:
                break
            parts.append(part)
            size += len(part) + (1 if len(parts) > 1 else 0)
        return b" ".join(parts)

    def _whole(self, rec: int, f: _Fields, i: int, rid: int, action: int, text: bytes | None,
               upto: int | None = None) -> None:
        """Token i (through token `upto`, for an object or a list) replaced whole."""
        if (f.toks[i][0], rid) in self.done_whole:
            return
        self.done_whole.add((f.toks[i][0], rid))
        s, e, kind = f.toks[i]
        if upto is not None and upto != i:
            e = f.toks[upto][1]
            kind = _OPEN
        if kind == _S:
            if e - s <= 2:
                return  # "": nothing to hide
            self._row(rec, s + 1, e - 1, rid, action, 2, text)
        else:
            self._row(rec, s, e, rid, action, 3, text)  # LSR_SPAN_IN_FIELDS | LSR_SPAN_QUOTE
        self.hits[-1] += 1

    def _value_of(self, rec: int, f: _Fields, key: int, rid: int, action: int) -> None:
        """The value of a field whose name a rule matched: replaced whole (its bytes were not matched)."""
        if key not in f.key_value:
            return
        v, vend = f.key_value[key]
        text = None
        if action == _MASK:
            text = f"[MASKED:{self.san.names[rid]}:****]".encode()
        self._whole(rec, f, v, rid, action, text, upto=vend)

    def _fields_of(self, rec: int) -> _Fields:
        f = self.fields.get(rec)
        if f is None:
            m = self.batch.meta[rec]
            lo = int(m["fields_off"])
            f = self.fields[rec] = _Fields(self.raw, lo, lo + int(m["fields_len"]))
        return f

    def _broken(self, rec: int, f: _Fields, rid: int, action: int) -> None:
        """Fields that are not the JSON object they should be: all of them replaced."""
        if (f.lo, -1) not in self.done_whole:
            self.done_whole.add((f.lo, -1))
            # inside the braces, quoted: the result is not JSON, so the rewrite replaces the fields whole
            self._row(rec, f.lo + 1, max(f.hi - 1, f.lo + 1), rid, action, 3)
            self.hits[-1] += 1

    # -- placing matches

    def in_fields(self, rec: int, rid: int, action: int, a: int, b: int) -> None:
        """A match [a, b) of the raw pass in a record's fields.

        Inside one string without escapes, or one number: placed (a number
        whole).  Inside a string with escapes: left to the decoded pass.
        Anything else (it runs out of a value, over the JSON between values):
        the record's values are matched one by one instead (exact pass).
        """
        f = self._fields_of(rec)
        if not f.ok:
            self._broken(rec, f, rid, action)
            return
        touched = f.touched(a, b)
        if len(touched) != 1:
            if touched:
                self.exact.add(rec)
            return  # in the JSON punctuation only: no value of the record is in it
        i = touched[0]
        s, e, kind = f.toks[i]
        if kind == _S:
            s, e = s + 1, e - 1
        if a < s or b > e:
            self.exact.add(rec)
            return
        if kind == _S and f.esc[i]:
            return  # a string with escapes: matched decoded
        self.pending.setdefault(rec, []).append((i, rid, action, a, b))

    def _place(self, rec: int, f: _Fields, i: int, rid: int, action: int, a: int, b: int) -> None:
        """A match [a, b) inside token i, which has no escape."""
        s, e, kind = f.toks[i]
        if kind == _S:
            self._row(rec, a, b, rid, action, 2)
        else:
            self._row(rec, s, e, rid, action, 3)  # a number (or true/false/null) stands whole, quoted
        if i in f.key_value:
            self._value_of(rec, f, i, rid, action)

    def per_value(self, rec: int, every: bool) -> None:
        """The values of a record's fields matched one by one, each decoded: the strings with an
        escape (every=False), or every string and scalar (every=True)."""
        f = self._fields_of(rec)
        if not f.ok:
            return
        raw = self.raw
        for i, (s, e, kind) in enumerate(f.toks):
            if kind == _S:
                if not (every or f.esc[i]):
                    continue
                runs = None
                if f.esc[i]:
                    try:
                        dec = json.loads(raw[s:e]).encode("utf-8", "surrogatepass")
                    except ValueError:  # not a JSON string after all: no match can be placed in it
                        dec, runs = raw[s + 1:e - 1], ([], [], -1)
                else:
                    dec, runs = raw[s + 1:e - 1], ([0], [(s + 1, e - 1)], e - s - 2)
            elif kind == _SCALAR and every:
                dec = raw[s:e]
            else:
                continue
            for rid, rx, action in self.san._custom:
                found = [m.span() for m in rx.finditer(dec)]
                found = [(x, y) for x, y in found if y > x]
                if not found:
                    continue
                self.hits[rid] += len(found)
                if kind == _SCALAR:
                    self._place(rec, f, i, rid, action, s, e)
                    continue
                if runs is None:
                    runs = _literal_runs(raw, s + 1, e - 1)
                dec_at, spans, size = runs
                whole = size != len(dec)  # the decoded value is not what the raw runs say: unclear
                for x, y in found:
                    if whole:
                        break
                    k = bisect.bisect_right(dec_at, x) - 1
                    if k < 0 or y - dec_at[k] > spans[k][1] - spans[k][0]:
                        whole = True  # the match covers an escape
                        break
                    start = spans[k][0] + x - dec_at[k]
                    self._row(rec, start, start + y - x, rid, action, 2)
                if whole:
                    self._whole(rec, f, i, rid, action, self._text(rid, action, [dec[x:y] for x, y in found]))
                if i in f.key_value:
                    self._value_of(rec, f, i, rid, action)

    def _message_again(self, rec: int, lo: int, hi: int, rid: int, rx, action: int, a: int, b: int) -> None:
        """A message [lo, hi) matched on its own, for a match that ran out of it: the matches
        that meet [a, b) (offsets in the buffer) are placed."""
        for m in rx.finditer(self.raw[lo:hi]):
            x, y = lo + m.start(), lo + m.end()
            if y > x and x < b and y > a:
                self._row(rec, x, y, rid, action, 0)
                self.hits[rid] += 1

    def run(self) -> np.ndarray:
        batch = self.batch
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
        escaped = self._unquote(text, at, infields)
        data = text.tobytes()
        self.exact: set[int] = set()  # records whose values are matched one by one
        self.pending: dict[int, list] = {}  # raw-pass matches in fields, placed unless the record is exact
        for rid, rx, action in self.san._custom:
            for m in rx.finditer(data):
                a, b = m.span()
                if b == a:
                    continue
                k = int(np.searchsorted(at, a, side="right")) - 1
                if b <= at[k] + lens[k]:
                    start, end = int(starts[k] + a - at[k]), int(starts[k] + b - at[k])
                    if infields[k]:
                        self.in_fields(int(recs[k]), rid, action, start, end)
                    else:
                        self._row(int(recs[k]), start, end, rid, action, 0)
                        self.hits[rid] += 1
                    continue
                # it runs on into the next region(s): each region it meets, on its own
                while k < len(at) and at[k] < b:
                    lo, hi = int(starts[k]), int(starts[k] + lens[k])
                    if infields[k]:
                        if lens[k]:
                            self.exact.add(int(recs[k]))
                    else:
                        ta, tb = max(a, int(at[k])), min(b, int(at[k] + lens[k]))
                        self._message_again(int(recs[k]), lo, hi, rid, rx, action,
                                            lo + max(ta - int(at[k]), 0), lo + max(tb - int(at[k]), 0) + 1)
                    k += 1
        for rec, matches in self.pending.items():
            if rec in self.exact:
                continue
            f = self._fields_of(rec)
            for i, rid, action, a, b in matches:
                self.hits[rid] += 1
                self._place(rec, f, i, rid, action, a, b)
        for k in escaped:
            rec = int(recs[k])
            if rec not in self.exact:
                self.per_value(rec, every=False)
        for rec in self.exact:
            self.per_value(rec, every=True)
        return np.array(self.rows, SPAN_DTYPE) if self.rows else np.empty(0, SPAN_DTYPE)

    @staticmethod
    def _unquote(text: np.ndarray, at: np.ndarray, infields: np.ndarray) -> np.ndarray:
        """Make the quotes of the fields' strings newlines (in place); the fields regions with an escape."""
        region = lambda pos: np.searchsorted(at, pos, side="right") - 1  # noqa: E731
        bs = np.flatnonzero(text == 0x5C)
        escaped = np.unique(region(bs)) if len(bs) else np.empty(0, np.int64)
        escaped = escaped[infields[escaped] == 1]
        q = np.flatnonzero(text == 0x22)
        if len(q):
            q = q[infields[region(q)] == 1]
        if len(q) and len(escaped):
            esc = np.zeros(len(q), bool)  # after an odd run of backslashes: inside the string
            live = np.ones(len(q), bool)
            back = 1
            while True:
                idx = q - back
                live &= idx >= 0
                live[live] = text[idx[live]] == 0x5C
                if not live.any():
                    break
                esc ^= live
                back += 1
            q = q[~esc]
        # between the strings, the JSON punctuation and blanks become line ends too: a number
        # (true, false, null) stands on a line of its own, like a string's value
        c = np.flatnonzero(_PUNCT[text])
        if len(c):
            rc = region(c)
            c, rc = c[infields[rc] == 1], rc[infields[rc] == 1]
            before = np.searchsorted(q, c) - np.searchsorted(q, at[rc])  # this region's quotes before c
            text[c[before % 2 == 0]] = 0x0A
        text[q] = 0x0A
        return escaped
