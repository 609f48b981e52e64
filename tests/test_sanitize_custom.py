"""Policy rules (RE2, `[[rules]]`) fail closed in fields.

A rule is matched against the decoded string values of the fields (keys too,
at any depth) and against the message text.  A match that maps onto the raw
JSON without an escape inside is replaced where it is; one that does not (it
covers an escape) replaces the whole value; a `drop` rule drops the record
wherever it matches.  Records are made two ways: logged through a real ring
(the producer's own JSON), and put in a batch by hand, byte for byte, to get
the escapes a producer may write (\\u00e9, \\/, surrogate pairs).  One test
runs a real writer with a policy file and a record logged with exc_info.
"""
from __future__ import annotations

import json
import logging
import re
import uuid

import numpy as np
import pytest

from conftest import read_records, stats, wait_for
from logger_system import Handler, connect
from logger_system.pipeline import Batch
from logger_system.pipeline.sanitize import WHOLE_VALUE, Sanitize, _Fields
from logger_system.pipeline.stages import FormatJsonl
from logger_system.policy import parse
from logger_system.record import META_DTYPE
from test_sanitize import hash_key, sanitize

SECRET = "TICKET-424242"
TICKET = {"name": "ticket", "pattern": r"TICKET-[0-9]{6}"}
# a rule whose match covers a quote, a backslash or a line end in the decoded value
QUOTED = {"name": "quoted", "pattern": r'token="[a-z0-9]+"'}
WINPATH = {"name": "winpath", "pattern": r"C:\\Users\\[a-z]+"}
BLOCK = {"name": "block", "pattern": r"(?s)BEGIN SECRET.*?END SECRET"}
HASH_RE = re.compile(r"\[HASH:([a-z0-9_]+):([0-9a-f]{16})\]")


def traceback_text(secret: str = SECRET) -> str:
    try:
        raise ValueError(f'lookup failed for "{secret}" in C:\\data\\x.db\n\tdetail: caf\u00e9')
    except ValueError:
        import traceback

        return traceback.format_exc()


def everything(obj) -> str:
    """Every key and value of a parsed record, and its JSON spelling: a secret must be in none."""
    return json.dumps(obj, ensure_ascii=False) + "\n" + json.dumps(obj, ensure_ascii=True)


def hand_batch(records: list[tuple[bytes, bytes]]) -> Batch:
    """A batch of (msg, fields JSON) records, exactly these bytes (the way the drain lays them out)."""
    meta = np.zeros(len(records), META_DTYPE)
    buf = bytearray()
    for i, (msg, fields) in enumerate(records):
        meta[i]["seq"], meta[i]["ts_ns"], meta[i]["pid"], meta[i]["level"] = i + 1, 1_700_000_000 * 10**9, 7, 20
        meta[i]["msg_off"], meta[i]["msg_len"] = len(buf), len(msg)
        buf += msg
        meta[i]["logger_off"], meta[i]["logger_len"] = len(buf), 3
        buf += b"app"
        meta[i]["fields_off"], meta[i]["fields_len"] = len(buf), len(fields)
        buf += fields
    return Batch(meta=meta, buf=memoryview(bytes(buf)), end=len(records))


def run_hand(records, policy, hits: list | None = None) -> tuple[list[bytes], Batch]:
    san = Sanitize(policy, on_hits=hits.append if hits is not None else None)
    batch = FormatJsonl()(san(hand_batch(records)))
    return [line + b"\n" for line in bytes(batch.out).split(b"\n")[:-1]], batch


# ---------------------------------------------------------------------------
# through a real ring: the producer's JSON


@pytest.mark.parametrize("value", [
    traceback_text(),
    f"first line\nsecond {SECRET} line\n",
    f'quoted "{SECRET}" and \\ backslash',
    f"caf\u00e9 \u00e9\u00e9 {SECRET}\u2028next",
    f"{SECRET}\n",
    f"\t{SECRET}\t",
])
def test_ticket_in_a_multi_line_or_quoted_value_is_replaced(value):
    out = sanitize([("m", {"exc_info": value, "other": "kept"})], parse({"rules": [TICKET]}))
    (f,) = out.fields
    assert SECRET not in everything(f)
    assert f["other"] == "kept"
    # the match itself has no escape in it: it is replaced where it is, the rest of the value stays
    assert f["exc_info"] == value.replace(SECRET, "[REDACTED:ticket]")


@pytest.mark.parametrize("rule,value,secret", [
    (QUOTED, 'Traceback (most recent call last):\n  config token="s3cr3tvalue" rejected\n', "s3cr3tvalue"),
    (WINPATH, "opened C:\\Users\\alice\\notes.txt\nthen failed", "alice"),
    (BLOCK, "head\nBEGIN SECRET\nhunter2-the-secret\nEND SECRET\ntail", "hunter2-the-secret"),
    ({"name": "lines", "pattern": r"pin:\s+[0-9]+"}, "name: x\npin:\n99115577\nend", "99115577"),
])
@pytest.mark.parametrize("action", ["redact", "mask", "hash"])
def test_a_match_over_an_escape_replaces_the_whole_value(tmp_path, rule, value, secret, action):
    p = parse({"builtin": [], "rules": [dict(rule, action=action)], "hash_key_file": str(hash_key(tmp_path))})
    deep = {"l": [{"in": [value, "plain"]}]}
    out = sanitize([("m", {"exc_info": value, "deep": deep, "n": 1})], p)
    (f,) = out.fields
    assert secret not in everything(f), f
    assert f["n"] == 1 and f["deep"]["l"][0]["in"][1] == "plain"
    name = rule["name"]
    for got in (f["exc_info"], f["deep"]["l"][0]["in"][0]):
        if action == "redact":
            assert got == f"[REDACTED:{name}]"
        elif action == "mask":
            assert re.fullmatch(rf"\[MASKED:{name}:\*\*\*\*[A-Za-z0-9_]{{0,4}}\]", got), got
        else:
            assert HASH_RE.fullmatch(got).group(1) == name
    if action == "hash":  # the same secret, the same pseudonym, wherever it stood
        assert f["exc_info"] == f["deep"]["l"][0]["in"][0]


def test_whole_value_hash_is_the_pseudonym_of_the_match(tmp_path):
    # a value replaced whole says the pseudonym of what matched: the same as that text
    # replaced where it stands in a message
    p = parse({"rules": [{"name": "quoted", "pattern": r'token="[a-z0-9]+"', "action": "hash"}],
               "hash_key_file": str(hash_key(tmp_path))})
    out = sanitize([('see token="abc123" here', {"v": 'line\ntoken="abc123"'})], p)
    assert out.msgs[0].split(" ")[1] == out.fields[0]["v"]


@pytest.mark.parametrize("where", ["exc_info", "deep", "key", "message", "number"])
def test_drop_rule_drops_the_record_wherever_it_matches(where):
    p = parse({"rules": [{"name": "nuke", "pattern": r"DROP-ME-[0-9]+", "action": "drop"},
                         {"name": "quoted", "pattern": r'x="[0-9]+"', "action": "drop"},
                         {"name": "num", "pattern": r"^77[0-9]{5}$", "action": "drop"}]})
    fields = {"exc_info": 'Traceback\n  ValueError: DROP-ME-1 "q" \\',
              "deep": {"a": [{"b": ['x="7"\n']}]},
              "key": {"DROP-ME-3": 1},
              "message": "fine",
              "number": {"n": [1, 7712345]}}[where]
    msg = "DROP-ME-2 in the message" if where == "message" else "m"
    out = sanitize([("before", {"k": 1}), (msg, {"f": fields}), ("after", {"k": 2})], p)
    assert out.msgs == ["before", "after"]
    assert out.delta.sanitize_dropped == 1


def test_drop_rule_over_an_escape_drops_through_the_decoded_value():
    # the raw JSON reads 'a\nb'; only the decoded value has the line break the rule wants
    p = parse({"rules": [{"name": "nuke", "pattern": r"(?m)^DROPME$", "action": "drop"}]})
    out = sanitize([("m", {"v": "first\nDROPME\nlast"}), ("kept", {"v": "DROPME is not alone"})], p)
    assert out.msgs == ["kept"] and out.delta.sanitize_dropped == 1


def test_matches_at_depth_and_in_lists():
    p = parse({"rules": [TICKET, QUOTED]})
    fields = {"a": [{"b": [{"c": [f"x {SECRET}", 'token="zz9"\n']}]}, [[[f"{SECRET}"]]]],
              "plain": ["no", {"match": "here"}]}
    (f,) = sanitize([("m", fields)], p).fields
    assert f["a"][0]["b"][0]["c"] == ["x [REDACTED:ticket]", "[REDACTED:quoted]"]
    assert f["a"][1] == [[["[REDACTED:ticket]"]]]
    assert f["plain"] == ["no", {"match": "here"}]


def test_anchors_hold_at_each_value_and_each_decoded_line():
    p = parse({"rules": [{"name": "exact", "pattern": r"^ID[0-9]{4}$"}]})
    (f,) = sanitize([("m", {"a": "ID1234", "b": "xID1234", "c": "line\nID5678\nmore", "d": ["ID0001", 5]})],
                    p).fields
    assert f == {"a": "[REDACTED:exact]", "b": "xID1234", "c": "line\n[REDACTED:exact]\nmore",
                 "d": ["[REDACTED:exact]", 5]}


def test_a_match_cannot_run_from_one_value_into_the_next():
    # \s+ would cross the JSON between two values; each value is matched on its own
    p = parse({"rules": [{"name": "pw", "pattern": r"pass\s+\S+"}]})
    (f,) = sanitize([("m", {"a": "pass", "b": "word", "c": "pass word", "d": "pass  "})], p).fields
    assert f == {"a": "pass", "b": "word", "c": "[REDACTED:pw]", "d": "pass  "}
    # a greedy class that may eat the quote still ends at the value's end
    p = parse({"rules": [{"name": "tail", "pattern": r"secret[^,]*"}]})
    (f,) = sanitize([("m", {"a": "my secret x", "b": "kept"})], p).fields
    assert f == {"a": "my [REDACTED:tail]", "b": "kept"}


def test_a_match_running_out_of_the_message_is_still_replaced():
    p = parse({"rules": [{"name": "tail", "pattern": r"code\s*[0-9]*"}]})
    out = sanitize([("the code 1234", {"k": "v"}), ("code", {}), ("x code 99", {"k": 1})], p)
    assert out.msgs == ["the [REDACTED:tail]", "[REDACTED:tail]", "x [REDACTED:tail]"]
    assert out.fields == [{"k": "v"}, None, {"k": 1}]


def test_field_name_match_replaces_the_name_and_the_value():
    p = parse({"rules": [TICKET]})
    (f,) = sanitize([("m", {SECRET: "value for it", "n": {f"x-{SECRET}": {"deep": [1, 2]}}, "k": 3})], p).fields
    assert SECRET not in everything(f)
    assert f == {"[REDACTED:ticket]": "[REDACTED:ticket]", "n": {"x-[REDACTED:ticket]": "[REDACTED:ticket]"},
                 "k": 3}


def test_number_match_stands_for_the_whole_number_quoted():
    p = parse({"rules": [{"name": "acct", "pattern": r"9876[0-9]{4}"}]})
    (f,) = sanitize([("m", {"a": 12398760000, "b": [98761111, -3.5], "c": "98762222 text"})], p).fields
    assert f == {"a": "[REDACTED:acct]", "b": ["[REDACTED:acct]", -3.5], "c": "[REDACTED:acct] text"}


def test_records_without_matches_are_untouched_byte_for_byte():
    p = parse({"builtin": [], "redact_fields": [], "rules": [TICKET, QUOTED, BLOCK]})
    recs = [("plain", {"tb": traceback_text("NOTHING"), "q": 'say "hi" \\ there', "e": "caf\u00e9"}),
            ("nothing here", {"n": [1, 2.5, None, True], "s": {"d": ["x\ny"]}}),
            (f"one {SECRET}", {"k": "v"})]
    clean = sanitize(recs[:2], parse({"enabled": False}))
    out = sanitize(recs, p)
    def tail(line: bytes) -> bytes:  # seq, ts and pid differ from run to run
        return line[line.index(b'"msg":'):]

    assert [tail(x) for x in out.lines[:2]] == [tail(x) for x in clean.lines]
    assert out.msgs[2] == "one [REDACTED:ticket]" and out.delta.sanitized == 1


# ---------------------------------------------------------------------------
# batches made by hand: the escapes a producer may write


HAND = [
    # (fields JSON as bytes, the secret, what the value must become)
    (rb'{"v":"caf\u00e9 TICKET-424242"}', SECRET, "caf\u00e9 [REDACTED:ticket]"),
    (rb'{"v":"TICKET-424242\u00e9"}', SECRET, "[REDACTED:ticket]\u00e9"),
    (rb'{"v":"\ud83d\ude00 TICKET-424242 \/ x"}', SECRET, "\U0001f600 [REDACTED:ticket] / x"),
    (rb'{"v":"TICKET\u002d424242"}', SECRET, "[REDACTED:ticket]"),  # the escape is inside the match
    (rb'{"v":"TICKET-42\u00342\u003442"}', SECRET, "[REDACTED:ticket]"),
    (rb'{"v":"a\"TICKET-424242\"b\\c"}', SECRET, 'a"[REDACTED:ticket]"b\\c'),
    (rb'{"T\u0049CKET-424242":"v"}', SECRET, None),  # in a field name, spelled with an escape
]


@pytest.mark.parametrize("fields,secret,want", HAND)
def test_hand_made_escapes(fields, secret, want):
    hits: list = []
    lines, _ = run_hand([(b"m", fields), (b"clean", b'{"x":"caf\\u00e9"}')], parse({"rules": [TICKET]}), hits)
    rec = json.loads(lines[0])
    assert secret not in everything(rec)
    for spelled in (secret.encode(), b"TICKET\\u002d", b"42\\u0034"):
        assert spelled not in lines[0]
    if want is not None:
        assert rec["fields"]["v"] == want
    else:
        assert rec["fields"] == {"[REDACTED:ticket]": "[REDACTED:ticket]"}
    assert lines[1].endswith(b'"fields":{"x":"caf\\u00e9"}}\n')  # untouched, escape and all
    (h,) = hits
    assert h[64] == 1


def test_values_replaced_whole_are_counted():
    hits: list = []
    p = parse({"rules": [TICKET, QUOTED]})
    san = Sanitize(p, on_hits=hits.append)
    recs = [(b"m", rb'{"a":"TICKET\u002d424242","b":"TICKET-111111","c":"token=\"x1\""}'),
            (b"m", rb'{"d":"line\nTICKET-222222"}')]
    FormatJsonl()(san(hand_batch(recs)))
    (h,) = hits
    assert len(h) == len(san.names) + 1, "the last entry counts the values replaced whole"
    assert h[64] == 3 and h[65] == 1  # hits per rule: ticket 3, quoted 1
    assert h[-1] == 2 and san.whole_values == 2  # "a" and "c" whole; "b" and "d" in place
    assert WHOLE_VALUE == "policy:whole_value"


def test_broken_fields_are_replaced_whole():
    lines, _ = run_hand([(b"m", b'{"a":"TICKET-424242"]')], parse({"rules": [TICKET]}))
    rec = json.loads(lines[0])
    assert SECRET not in lines[0].decode() and rec["fields"] == {"_sanitizer": "[REDACTED:fields]"}


def test_fields_tokenizer_finds_keys_and_values():
    raw = b'{"a": [1, {"b": "x\\"y"}], "c": true}'
    f = _Fields(raw, 0, len(raw))
    assert f.ok
    kinds = [raw[s:e] for s, e, _ in f.toks]
    assert kinds[:3] == [b"{", b'"a"', b":"]
    keys = {raw[f.toks[k][0]:f.toks[k][1]]: raw[f.toks[v][0]:f.toks[w][1]] for k, (v, w) in f.key_value.items()}
    assert keys == {b'"a"': b'[1, {"b": "x\\"y"}]', b'"b"': b'"x\\"y"', b'"c"': b"true"}


# ---------------------------------------------------------------------------
# a real writer with a policy file, a record logged through logging.Handler with exc_info


def test_writer_policy_file_and_a_real_traceback(ring_name, writer_factory, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[[rules]]\nname = \"ticket\"\npattern = 'TICKET-[0-9]{6}'\n\n"
        "[[rules]]\nname = \"quoted\"\npattern = 'token=\"[a-z0-9]+\"'\n\n"
        "[[rules]]\nname = \"nuke\"\npattern = 'NUKE-[0-9]+'\naction = \"drop\"\n")
    w = writer_factory("--policy", str(policy)).start()
    handler = Handler(ring_name)
    lg = logging.getLogger(f"custom-{uuid.uuid4().hex[:8]}")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    lg.addHandler(handler)
    try:
        for secret in (SECRET, 'token="abc123"', "NUKE-7"):
            try:
                raise RuntimeError(f"request for {secret} failed\nwith a second line")
            except RuntimeError:
                lg.exception("it failed")
        lg.info("clean", extra={"note": "nothing"})
        wait_for(lambda: (lambda s: s["written"] + s["sanitize_dropped"] >= 4)(stats(ring_name)), timeout=30,
                 what="4 records")
        s = stats(ring_name)
        assert s["sanitize_dropped"] == 1 and s["written"] == 3
        assert s["rule_hits"]["ticket"] == 1 and s["rule_hits"]["quoted"] == 1
        assert s["rule_hits"][WHOLE_VALUE] == 1  # the quoted match: its traceback replaced whole
        assert w.stop() == 0
    finally:
        lg.removeHandler(handler)
        handler.close()
    recs = read_records(w.dir)
    assert [r["msg"] for r in recs] == ["it failed", "it failed", "clean"]
    data = b"".join(p.read_bytes() for p in sorted(w.dir.iterdir()))
    for spelled in (SECRET.encode(), b"abc123", b"NUKE-7"):
        assert spelled not in data
    tb1, tb2 = recs[0]["fields"]["exc_info"], recs[1]["fields"]["exc_info"]
    assert tb1.startswith("Traceback (most recent call last):") and "[REDACTED:ticket] failed\nwith" in tb1
    assert tb2 == "[REDACTED:quoted]"  # the match covers escaped quotes: the whole traceback goes


def test_a_record_reads_the_same_with_or_without_escapes_elsewhere():
    # the escape in "t" sends the record through the one-value-at-a-time pass: same result
    p = parse({"builtin": [], "rules": [{"name": "num", "pattern": r"^77[0-9]{5}$"}, {"name": "w", "pattern": r"\bab\b"}]})
    base = {"n": [1, 7712345], "s": "x ab y", "k": {"ab": 2}}
    plain, escaped = sanitize([("m", base), ("m", dict(base, t="line\nbreak"))], p).fields
    del escaped["t"]
    assert plain == escaped == {"n": [1, "[REDACTED:num]"], "s": "x [REDACTED:w] y", "k": {"[REDACTED:w]": "[REDACTED:w]"}}


from hypothesis import given, settings, strategies as st  # noqa: E402

NOISE = st.text(st.sampled_from(list('ab \n\t"\\/\u00e9\u2028\x01{}[]:,') + ["\U0001f600"]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.tuples(NOISE, NOISE), min_size=1, max_size=4), action=st.sampled_from(["redact", "mask"]),
       as_key=st.booleans())
def test_property_no_secret_survives_in_any_value(parts, action, as_key):
    secret = "SEC-9f8e7d6c5b4a"
    p = parse({"builtin": [], "redact_fields": [], "rules": [{"name": "sec", "pattern": r"SEC-[0-9a-f]{12}",
                                                              "action": action}]})
    values = [a + secret + b for a, b in parts]
    fields = {"list": [{"v": v} for v in values], "top": values[0]}
    if as_key:
        fields[values[-1]] = values[-1]
    out = sanitize([("m", fields), ("clean", {"v": parts[0][0]})], p)
    assert secret not in everything(out.objs[0]) and secret[:-4] not in out.lines[0].decode()
    assert out.fields[1] == {"v": parts[0][0]}
