"""What reaches a reader's screen: `cat` and `cat --text` show every character for what it is.

Bidi controls, zero-width and other format characters are escaped in both
outputs (`user \\u202eNIMDA\\u202c` must never display as "user ADMIN"); the
JSON lines still decode to the same records, and lines without such
characters pass unchanged.  In --text, names and values that would not read
back as themselves are quoted, so a value cannot pose as fields.  Files are
written by a real writer and read with the real command line.
"""
from __future__ import annotations

import json
import re
import subprocess
import unicodedata

from hypothesis import given, settings, strategies as st

from conftest import cli, stats, wait_for
from logger_system import connect
from logger_system.files.reader import display_line, render_text

# every character that must never stand raw on the screen, found without the reader's own table
FILLERS = "\u034f\u115f\u1160\u3164\uffa0"
HIDDEN_BYTES = re.compile(rb"\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xa9]|\xef\xbb\xbf|\xd8\x9c|\xc2\xad"
                          rb"|\xe1\xa0\x8e|\xf3\xa0[\x80-\x81][\x80-\xbf]|\xe2\x80[\xa8\xa9]|\xc2[\x80-\x9f]|\x7f")


def hidden(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
            or c in FILLERS]


TRICKS = {
    "rlo": "\u202eNIMDA\u202c",
    "zw": "ad\u200bmi\u200cn\u200d!\u2060",
    "bom": "\ufeffroot",
    "marks": "a\u200eb\u200fc\u061cd\u2066e\u2067f\u2068g\u2069h\u202ai\u202bj\u202dk",
    "shy": "ad\u00admin",
    "mvs": "x\u180ey",
    "tag": "safe\U000e0041\U000e0042",
    "filler": "a\u3164b",
}


def write_and_cat(ring_name, writer_factory, records, *cat_args):
    w = writer_factory().start()
    log = connect(ring_name)
    try:
        for msg, fields in records:
            assert log.info(msg, **fields)
        wait_for(lambda: stats(ring_name)["written"] >= len(records), timeout=30, what="records written")
        assert w.stop() == 0
    finally:
        log.ring.close()
    files = sorted(w.dir.iterdir())
    raw = b"".join(p.read_bytes() for p in files)
    res = subprocess.run(cli("cat", *cat_args, w.dir), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return raw, res.stdout


def test_cat_json_escapes_hidden_characters_and_keeps_the_records(ring_name, writer_factory):
    records = [("user \u202eNIMDA\u202c logged in", dict(TRICKS)),
               ("plain ascii", {"n": 1, "s": "x y"}),
               ("caf\u00e9 \u00fcber \u65e5\u672c \U0001f600", {"v": "na\u00efve", "w": "\u00a0\u3000"}),
               ("\u200b", {"\u202ekey": "v"})]
    raw, out = write_and_cat(ring_name, writer_factory, records)
    assert "\u202e".encode() in raw, "the writer keeps the characters; display escapes them"
    raw_lines, lines = raw.splitlines(keepends=True), out.splitlines(keepends=True)
    assert len(lines) == len(raw_lines) == len(records)
    assert not HIDDEN_BYTES.search(out), HIDDEN_BYTES.search(out)
    for before, after in zip(raw_lines, lines):
        assert json.loads(after) == json.loads(before)  # the same record
        assert not hidden(after.decode()[:-1])
    assert lines[1] == raw_lines[1] and lines[2] == raw_lines[2], "lines without them pass unchanged"
    assert b'"rlo":"\\u202eNIMDA\\u202c"' in lines[0]
    assert b'"msg":"\\u200b"' in lines[3] and b'{"\\u202ekey":"v"}' in lines[3]


def test_cat_text_escapes_hidden_characters(ring_name, writer_factory):
    records = [("user \u202eNIMDA\u202c logged in", dict(TRICKS)), ("\u200b", {"\u202ekey": "v"})]
    _, out = write_and_cat(ring_name, writer_factory, records, "--text")
    text = out.decode("utf-8")
    lines = text.splitlines()
    assert len(lines) == 2
    assert not hidden(text.replace("\n", "")), hidden(text)
    assert ": user \\u202eNIMDA\\u202c logged in " in lines[0]
    assert ' rlo="\\u202eNIMDA\\u202c"' in lines[0] and ' shy="ad\\u00admin"' in lines[0]
    assert ' tag="safe\\udb40\\udc41\\udb40\\udc42"' in lines[0] and ' filler="a\\u3164b"' in lines[0]
    assert lines[1].endswith(': \\u200b "\\u202ekey"=v')
    msg, fields = parse_text(lines[0])
    assert msg == records[0][0] and fields == TRICKS


def test_cat_text_quotes_values_that_would_pose_as_fields(ring_name, writer_factory):
    records = [("login", {"user": "bob role=admin"}),
               ("login", {"user": "bob", "role": "admin"}),
               ("odd", {"a b": "c", "k=v": 1, 'q"': '"', "e": "", "n": "5", "t": "true", "l": "[1]", "sp": " x",
                        "tab": "a\tb", "nb": "a\u00a0b", "bs": "a\\b", "ok": "plain-value.1", "num": 5,
                        "list": ["x y", 2], "obj": {"k": "v w"}}),
               ('msg with role=admin and "quotes"', {"k": "v"})]
    _, out = write_and_cat(ring_name, writer_factory, records, "--text")
    lines = out.decode("utf-8").splitlines()
    assert lines[0].endswith(': login user="bob role=admin"')
    assert lines[1].endswith(": login user=bob role=admin")
    assert lines[0] != lines[1]
    assert lines[2].endswith(': odd "a b"=c "k=v"=1 "q\\""="\\"" e="" n="5" t="true" l="[1]" sp=" x" '
                             'tab="a\\tb" nb="a\u00a0b" bs="a\\\\b" ok=plain-value.1 num=5 list=["x y",2] '
                             'obj={"k":"v w"}')
    assert lines[3].endswith(': "msg with role=admin and \\"quotes\\"" k=v')
    for line, (msg, fields) in zip(lines, records):
        assert parse_text(line) == (msg, fields)


def test_display_line_only_rewrites_lines_that_need_it():
    plain = b'{"msg":"caf\xc3\xa9","fields":{"a":"\\u202e"}}\n'  # already escaped: unchanged
    assert display_line(plain) is plain
    line = '{"msg":"a\u202eb\u200bc\ufeff\U000e0041"}\n'.encode()
    out = display_line(line)
    assert out == b'{"msg":"a\\u202eb\\u200bc\\ufeff\\udb40\\udc41"}\n'
    assert json.loads(out) == json.loads(line)


# ---------------------------------------------------------------------------
# --text parses back: a small reader of the format


_BARE_ESC = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _unescape_bare(text: str) -> str:
    def one(m: re.Match) -> str:
        e = m.group(1)
        return "\\" if e == "\\" else chr(int(e[1:], 16))
    return _BARE_ESC.sub(one, text)


def _value(rest: str, i: int, dec: json.JSONDecoder):
    if rest[i:i + 1] in ('"', "[", "{"):
        try:
            value, end = dec.raw_decode(rest, i)
            if end == len(rest) or rest[end] == " ":
                return value, end
        except ValueError:
            assert rest[i] != '"', "a quoted value must be a JSON string"
    end = rest.find(" ", i)
    end = len(rest) if end < 0 else end
    run = rest[i:end]
    assert run, "a bare value is never empty"
    try:
        return json.loads(run), end
    except ValueError:
        return run, end


def parse_text(line: str) -> tuple[str, dict]:
    """(msg, fields) of a --text line whose logger name has no '[' or ']'."""
    dec = json.JSONDecoder()
    rest = line.split("]: ", 1)[1]
    if rest.startswith('"'):
        msg, i = dec.raw_decode(rest)
    else:  # a bare message has no '=' and no quote: the first of them is in the first field
        marks = [j for j in (rest.find("="), rest.find('"')) if j >= 0]
        if not marks:
            return _unescape_bare(rest), {}
        j = min(marks)
        start = j if rest[j] == '"' else rest.rfind(" ", 0, j) + 1
        assert start > 0 and rest[start - 1] == " "
        msg, i = _unescape_bare(rest[:start - 1]), start - 1
    fields = {}
    while i < len(rest):
        assert rest[i] == " ", (rest, i)
        i += 1
        if rest[i] == '"':
            key, i = dec.raw_decode(rest, i)
        else:
            j = rest.index("=", i)
            key, i = rest[i:j], j
        assert rest[i] == "=" and key not in fields
        fields[key], i = _value(rest, i + 1, dec)
    return msg, fields


ANY_CHAR = st.characters(codec="utf-8") | st.sampled_from(list(' ="\\[]{}:,\t\n\u00a0\u3000\ud800\udfff\x7f\x85' + "".join(TRICKS.values())))
TEXT = st.text(ANY_CHAR, max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                      | TEXT | st.sampled_from(["5", "-1.5e3", "true", "null", "[1]", "{}", "[x", "NaN", "05", ""]),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(msg=TEXT, fields=st.dictionaries(TEXT, VALUES, max_size=5))
def test_property_text_parses_back_and_hides_nothing(msg, fields):
    line = render_text({"ts": "2024-01-01T00:00:00.000000Z", "level": "INFO", "logger": "app", "pid": 42,
                        "msg": msg, "fields": fields})
    assert "\n" not in line and not hidden(line), hidden(line)
    got_msg, got_fields = parse_text(line)
    assert got_msg == msg
    assert got_fields == fields
