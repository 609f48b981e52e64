"""The leaks a hostile review found (issue 13), end to end through a real writer process.

Each leak is one row of LEAKS: the text a service logs, the (key, value) a
keyword API logs, and the exact substrings that must not reach the file.  Every
row goes through every way to log: the Producer (message text, %-args, a
field, a field at depth, JSON in the text), a stdlib `logging` logger with
logger_system.Handler (msg, args, `extra`, an `exc_info` traceback), and the
structlog and loguru adapters (event text, keyword fields, an exception).
One writer (default sanitizer, --plaintext) runs per way to log; its files are
read back and each row is checked in its own test, so a failure names the
leak and the path it took.  The look-alikes of NEGATIVES must be written
unchanged; custom policy rules must hold in multi-line and quoted field
values; `cat` must not show bidi or zero-width characters raw.
"""
from __future__ import annotations

import json
import logging
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import WriterProcess, cli, read_records, stats, wait_for
from logger_system.ring import unlink

pytestmark = pytest.mark.timeout(120)

WRITE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Leak:
    id: str
    text: str                      # as message text
    secrets: tuple[str, ...]       # none of these may be in the written record
    key: str = "note"              # as a field: key=value (a neutral key holds the text)
    value: object = None

    @property
    def field_value(self):
        return self.text if self.value is None else self.value


B64_SVC = "c3ZjOmh1bnRlcjJodW50ZXIy"  # base64 of svc:hunter2hunter2
PGP_BODY = ("lQOYBGXk3vIBCADK2m7Qx9vR4tL1pZ8wN3sF6yH0jU5cE2bA7kM9nV4qX1rT8oP",
            "yW6gD3fS0hJ2lK5zC8xV1bN4mQ7aE9rT2uY5iO8pA3sD6fG9hJ1kL4zX7cV0bN")
PEM_PGP = ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + "\n".join(PGP_BODY)
           + "\n=Xq7T\n-----END PGP PRIVATE KEY BLOCK-----")
AMZ_SIG = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
AZURE_KEY = "Zm9vYmFyYmF6cXV4" * 5 + "Q2xkS0V5U2VjcmV0VmFs=="

LEAKS = [
    # field names matched exactly: camelCase, prefixes, other separators
    Leak("accessToken", '{"accessToken": "Q7mZ2xK9pL4vN8rT3wY6"}', ("Q7mZ2xK9pL4vN8rT3wY6",),
         "accessToken", "Q7mZ2xK9pL4vN8rT3wY6"),
    Leak("db_password", "db_password=Hq4Wt8Zr2Lm6Xv0N", ("Hq4Wt8Zr2Lm6Xv0N",), "db_password", "Hq4Wt8Zr2Lm6Xv0N"),
    Leak("clientSecret", "clientSecret=cs8Hf3Kq9Wz2Rt7Yp5Lm", ("cs8Hf3Kq9Wz2Rt7Yp5Lm",),
         "clientSecret", "cs8Hf3Kq9Wz2Rt7Yp5Lm"),
    Leak("refreshToken", "refreshToken: rt4Gh8Jk2Lz6Xc0Vb3Nm", ("rt4Gh8Jk2Lz6Xc0Vb3Nm",),
         "refreshToken", "rt4Gh8Jk2Lz6Xc0Vb3Nm"),
    Leak("new_password", "new_password=Np7Qw3Er9Ty1Ui5Op", ("Np7Qw3Er9Ty1Ui5Op",), "new_password", "Np7Qw3Er9Ty1Ui5Op"),
    Leak("aws_secret_access_key", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
         ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", "bPxRfiCYzEXAMPLEKEY"),
         "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"),
    Leak("dbPassword", "dbPassword: Db9Pw3Xk7Lq2Zm5R", ("Db9Pw3Xk7Lq2Zm5R",), "dbPassword", "Db9Pw3Xk7Lq2Zm5R"),
    Leak("x-api-key", "x-api-key: xk2Mn8Bv4Cx6Zl0Kj3Hg", ("xk2Mn8Bv4Cx6Zl0Kj3Hg",), "x-api-key", "xk2Mn8Bv4Cx6Zl0Kj3Hg"),
    Leak("db.password", "db.password=Dp5Rt9Yu3Io7Pa1S", ("Dp5Rt9Yu3Io7Pa1S",), "db.password", "Dp5Rt9Yu3Io7Pa1S"),
    Leak("DB_PASSWORD", "DB_PASSWORD=Ev4Nv8Pw2Sd6Fg0H", ("Ev4Nv8Pw2Sd6Fg0H",), "DB_PASSWORD", "Ev4Nv8Pw2Sd6Fg0H"),
    # token formats without a rule
    Leak("stripe_sk_live", "charge with sk_live_51Hq8Zt2Lm4Xv9Kp3Wr7Ny6B",
         ("sk_live_51Hq8Zt2Lm4Xv9Kp3Wr7Ny6B", "51Hq8Zt2Lm4Xv9Kp3Wr7Ny6B")),
    Leak("stripe_rk_live", "restricted rk_live_51Jw3Ex7Rt9Yu2Io4Pa6Sd8F",
         ("rk_live_51Jw3Ex7Rt9Yu2Io4Pa6Sd8F", "51Jw3Ex7Rt9Yu2Io4Pa6Sd8F")),
    Leak("google_aiza", "maps key AIzaSyD4k9Xq2Lm7Wv3Nr8Tz1Bp6Hc0Jf5Gy2Ek",
         ("AIzaSyD4k9Xq2Lm7Wv3Nr8Tz1Bp6Hc0Jf5Gy2Ek", "SyD4k9Xq2Lm7Wv3Nr8Tz1Bp6Hc0Jf5Gy2Ek")),
    Leak("openai_sk", "openai sk-Xq7Lm2Wv9Nr4Tz8Bp1HT3BlbkFJc6Jf0Gy5Ek3Da7Su2Ri9",
         ("sk-Xq7Lm2Wv9Nr4Tz8Bp1HT3BlbkFJc6Jf0Gy5Ek3Da7Su2Ri9", "Xq7Lm2Wv9Nr4Tz8Bp1HT3BlbkFJc6Jf0Gy5Ek3Da7Su2Ri9")),
    Leak("openai_sk_proj", "openai sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Ef3Hi5Kl7No9Qr1Tu3Wx5Za7Cd9Fg1Ij3",
         ("sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Ef3Hi5Kl7No9Qr1Tu3Wx5Za7Cd9Fg1Ij3", "Qr1Tu3Wx5Za7Cd9Fg1Ij3")),
    Leak("anthropic", "anthropic sk-ant-api03-Zx8Cv6Bn4Mq2Wf0Er8Ty6Ui4Op2As0Dg8Hj6Kl4Zx2Cv0Bn8Mq6Wf4Er2Ty0Ui8Op6AsAA",
         ("sk-ant-api03-Zx8Cv6Bn4Mq2Wf0Er8Ty6Ui4Op2As0Dg8Hj6Kl4Zx2Cv0Bn8Mq6Wf4Er2Ty0Ui8Op6AsAA",
          "Zx2Cv0Bn8Mq6Wf4Er2Ty0Ui8Op6AsAA")),
    Leak("slack_webhook", "posting to https://hooks.slack.com/services/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",
         ("T04ABCD12/B05EFGH34/q8Lm2Wv9Nr4Tz7Bp1Hc6Jf0G", "q8Lm2Wv9Nr4Tz7Bp1Hc6Jf0G")),
    Leak("gitlab_glpat", "gitlab glpat-Xk9Lm2Wv7Nr4Tz8Bp1Hc", ("glpat-Xk9Lm2Wv7Nr4Tz8Bp1Hc", "Xk9Lm2Wv7Nr4Tz8Bp1Hc")),
    Leak("sendgrid", "mail via SG.Qw3Er5Ty7Ui9Op1As3Df5G.Hj7Kl9Zx1Cv3Bn5Mq7Wf9Er1Ty3Ui5Op7As9Df1Gh3Jk",
         ("SG.Qw3Er5Ty7Ui9Op1As3Df5G.Hj7Kl9Zx1Cv3Bn5Mq7Wf9Er1Ty3Ui5Op7As9Df1Gh3Jk",
          "Hj7Kl9Zx1Cv3Bn5Mq7Wf9Er1Ty3Ui5Op7As9Df1Gh3Jk")),
    Leak("azure_account_key", f"storage DefaultEndpointsProtocol=https;AccountName=acct7;AccountKey={AZURE_KEY};"
         "EndpointSuffix=core.windows.net", (AZURE_KEY, AZURE_KEY[40:])),
    Leak("azure_sas_sig", "download https://acct.blob.core.windows.net/c/f.txt?sv=2022-11-02&sp=r&se=2027-01-01"
         "&sig=Kx9Lm2Wv7Nr4Tz8Bp1Hc6Jf0Gy5Ek3Da%2BSu2Ri9%3D",
         ("Kx9Lm2Wv7Nr4Tz8Bp1Hc6Jf0Gy5Ek3Da%2BSu2Ri9%3D", "Ek3Da%2BSu2Ri9%3D")),
    Leak("x_amz_signature", "download https://bucket.s3.amazonaws.com/r.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
         f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={AMZ_SIG}", (AMZ_SIG, AMZ_SIG[32:])),
    Leak("url_key_param", "GET https://api.example.net/v1/geo?key=Tk4Lm9Wv2Nr7Tz3Bp8Hc1Jf6Gy0Ek5Da&q=paris",
         ("Tk4Lm9Wv2Nr7Tz3Bp8Hc1Jf6Gy0Ek5Da", "Gy0Ek5Da")),
    Leak("basic_bare", f"sent Basic {B64_SVC} upstream", (B64_SVC,)),
    Leak("pgp_private_key", PEM_PGP, PGP_BODY),
    # values cut short
    Leak("password_punct", "password=Xy7;Qz9&Lm2", ("Xy7;Qz9&Lm2", ";Qz9&Lm2", "Qz9&Lm2", "&Lm2"),
         "password", "Xy7;Qz9&Lm2"),
    Leak("password_spaces", "password: correct horse battery staple",
         ("correct horse battery staple", "horse battery staple", "battery staple", "staple"),
         "password", "correct horse battery staple"),
    Leak("password_escaped_quote", 'password="ab1\\"Zq8Wv5Rt2"', ("Zq8Wv5Rt2",), "password", 'ab1"Zq8Wv5Rt2'),
    # structured secrets
    Leak("header_pairs", json.dumps([["Authorization", f"Basic {B64_SVC}"], ["Accept", "*/*"]]), (B64_SVC,),
         "headers", [["Authorization", f"Basic {B64_SVC}"], ["Accept", "*/*"]]),
    Leak("har_name_value", json.dumps({"name": "password", "value": "Pa55-w0rd-HAR-77"}), ("Pa55-w0rd-HAR-77",),
         "params", [{"name": "user", "value": "bob"}, {"name": "password", "value": "Pa55-w0rd-HAR-77"}]),
    # the value before the name: the object is the same
    Leak("har_value_first", json.dumps({"value": "hunter2xyz", "name": "password"}), ("hunter2xyz",),
         "params", [{"value": "bob", "name": "user"}, {"value": "hunter2xyz", "name": "password"}]),
    Leak("har_value_first_auth", json.dumps({"value": "Bearer Hv7Qm2Xk9Lp4Wz8R", "name": "Authorization"}),
         ("Hv7Qm2Xk9Lp4Wz8R",), "headers",
         [{"value": "text/html", "name": "Accept"}, {"value": "Bearer Hv7Qm2Xk9Lp4Wz8R", "name": "Authorization"}]),
    # "session" alone names the session like sessionId does
    Leak("session_eq", "session=abc123def456", ("abc123def456",), "session", "abc123def456"),
    Leak("session_json", '{"session": "s3ss10nV4lue99"}', ("s3ss10nV4lue99",), "session", "s3ss10nV4lue99"),
    # encodings
    Leak("email_non_ascii_local", "contact josé.ramírez@example.com", ("josé.ramírez@example.com", "josé")),
    Leak("email_idn_domain", "contact kim.lee@exämple.de", ("kim.lee@exämple.de", "kim.lee@")),
    Leak("email_percent_40", "GET /unsubscribe?user=mrx.jones%40example.com", ("mrx.jones%40example.com", "mrx.jones")),
    Leak("email_json_u0040", 'body {"contact": "ana.silva\\u0040example.com"}', ("ana.silva\\u0040example.com", "ana.silva")),
    Leak("card_dots", "paid 4111.1111.1111.1111", ("4111.1111.1111.1111", "4111.1111.1111", "1111.1111.1111")),
    Leak("card_underscores", "paid 5500_0000_0000_0004", ("5500_0000_0000_0004", "5500_0000_0000", "0000_0000_0004")),
    Leak("card_slashes", "paid 4012/8888/8888/1881", ("4012/8888/8888/1881", "4012/8888/8888", "8888/8888/1881")),
    Leak("card_double_spaces", "paid 6011  1111  1111  1117", ("6011  1111  1111  1117", "6011  1111  1111")),
    Leak("card_bare_keyword", "card number 4242424242424242", ("4242424242424242", "424242424242")),
]


@dataclass(frozen=True)
class Negative:
    id: str
    text: str
    key: str = "note"
    value: object = None

    @property
    def field_value(self):
        return self.text if self.value is None else self.value


NEGATIVES = [
    Negative("numeric_ids_luhn_passing", "ids 790000000003 8000000000000009 9000000000000000007"),
    Negative("numeric_id_field", "order_id=8000000000000009", "order_id", 8000000000000009),
    Negative("snowflake_id", "message 1234567890123456789 edited"),
    Negative("pwd_path", "pwd=/srv/app", "pwd", "/srv/app"),
    Negative("secret_false", "secret: false", "secret", False),
    Negative("token_512", "token: 512", "token", 512),
    Negative("max_tokens", "max_tokens=100", "max_tokens", 100),
    Negative("token_count", "token_count=5", "token_count", 5),
    Negative("uuid", "request 3f1c2a7e-0d6b-4c1e-9a8e-2b7f3c1d9e0a done"),
    Negative("git_sha", "deployed 9fceb02d0ae598e95dc970b74767f19372d61af8"),
    Negative("version", "upgraded 1.2.3 to v10.0.1"),
    Negative("timestamp", "at 2026-03-04T05:06:07.123456Z took 350ms"),
    Negative("words", "passport check passed; bypass=true; compass heading 270"),
    Negative("har_value_first_plain", json.dumps({"value": "bob", "name": "user"}), "params",
             [{"value": "bob", "name": "user"}, {"value": "text/html", "name": "Accept"}]),
    Negative("session_prose", "session started for bob; sessions=3; session: true"),
]


# ---------------------------------------------------------------------------
# one writer per way to log


class Written:
    """A writer on a fresh ring; records() waits until `n` are written, stops it, reads them by case."""

    def __init__(self, base: Path, *extra: str) -> None:
        self.ring = f"lsleak-{uuid.uuid4().hex[:10]}"
        self.dir = base / "logs"
        base.mkdir(parents=True, exist_ok=True)
        self.writer = WriterProcess(self.ring, self.dir, *extra).start()

    def records(self, n: int) -> dict[str, dict]:
        def done():
            s = stats(self.ring)
            return s["written"] + s["sanitize_dropped"] >= n and s["used_bytes"] == 0

        try:
            wait_for(done, timeout=WRITE_TIMEOUT, what=f"{n} records written")
        finally:
            rc = self.writer.stop(timeout=WRITE_TIMEOUT)
        assert rc == 0, self.writer.stderr()
        s = stats(self.ring)
        assert s["dropped"] == 0, s
        out = {}
        for rec in read_records(self.dir):
            out[rec.get("fields", {}).get("case", "")] = rec
        return out

    def close(self) -> None:
        if self.writer.proc and self.writer.proc.poll() is None:
            self.writer.kill()
        unlink(self.ring)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("leaks")


ROWS = [*((r, False) for r in LEAKS), *((r, True) for r in NEGATIVES)]


_POSITION_NO = {p: n for n, p in enumerate(
    ("text", "args", "field", "field_deep", "json_text", "msg", "extra", "exc_info", "exception"))}


def _case(api: str, position: str, i: int) -> str:
    return f"c{api[0]}{_POSITION_NO[position]}x{i}"  # a plain id no rule could take for a secret


def _deep(row) -> dict:
    return {"ctx": {"events": [{"seq": 1}, {row.key: row.field_value}]}}


def _json_text(row) -> str:
    return json.dumps({row.key: row.field_value}, ensure_ascii=False)


class Boom(Exception):
    pass


PRODUCER_POSITIONS = ("text", "args", "field", "field_deep", "json_text")
HANDLER_POSITIONS = ("msg", "args", "extra", "exc_info")
ADAPTER_POSITIONS = ("text", "field", "exception")


@pytest.fixture(scope="module")
def producer_out(base):
    import logger_system

    w = Written(base / "producer")
    try:
        log = logger_system.connect(w.ring, name="leaks")
        n = 0
        for i, (row, _) in enumerate(ROWS):
            for pos in PRODUCER_POSITIONS:
                case = _case("producer", pos, i)
                if pos == "text":
                    ok = log.info(f"login failed: {row.text} (attempt 2)", case=case)
                elif pos == "args":
                    ok = log.info("login failed: %s (attempt 2)", row.text, case=case)
                elif pos == "field":
                    ok = log.info("login failed", case=case, **{row.key: row.field_value})
                elif pos == "field_deep":
                    ok = log.info("login failed", case=case, **_deep(row))
                else:
                    ok = log.info(f"payload {_json_text(row)}", case=case)
                assert ok
                n += 1
        yield w.records(n)
    finally:
        w.close()


@pytest.fixture(scope="module")
def handler_out(base):
    import logger_system

    w = Written(base / "handler")
    lg = logging.getLogger(f"leaks.handler.{w.ring}")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    lg.handlers[:] = [logger_system.Handler(w.ring)]
    try:
        n = 0
        for i, (row, _) in enumerate(ROWS):
            for pos in HANDLER_POSITIONS:
                extra = {"case": _case("handler", pos, i)}
                if pos == "msg":
                    lg.info(f"login failed: {row.text} (attempt 2)", extra=extra)
                elif pos == "args":
                    lg.info("login failed: %s (attempt 2)", row.text, extra=extra)
                elif pos == "extra":
                    lg.info("login failed", extra={**extra, row.key: row.field_value})
                else:
                    try:
                        raise Boom(f"rejected: {row.text}")
                    except Boom:
                        lg.exception("request failed", extra=extra)
                n += 1
        yield w.records(n)
    finally:
        lg.handlers[:] = []
        w.close()


@pytest.fixture(scope="module")
def structlog_out(base):
    structlog = pytest.importorskip("structlog")
    import logger_system.structlog as ring_structlog

    w = Written(base / "structlog")
    factory = ring_structlog.configure(w.ring)
    try:
        log = structlog.get_logger("leaks.structlog")
        n = 0
        for i, (row, _) in enumerate(ROWS):
            for pos in ADAPTER_POSITIONS:
                case = _case("structlog", pos, i)
                if pos == "text":
                    log.info(f"login failed: {row.text} (attempt 2)", case=case)
                elif pos == "field":
                    log.info("login failed", case=case, **{row.key: row.field_value})
                else:
                    try:
                        raise Boom(f"rejected: {row.text}")
                    except Boom:
                        log.exception("request failed", case=case)
                n += 1
        yield w.records(n)
    finally:
        structlog.reset_defaults()
        factory.close()
        w.close()


@pytest.fixture(scope="module")
def loguru_out(base):
    loguru = pytest.importorskip("loguru")
    import logger_system.loguru as ring_loguru

    logger = loguru.logger
    w = Written(base / "loguru")
    sink_id = logger.add(ring_loguru.sink(w.ring), format="{message}", level=0)
    try:
        n = 0
        for i, (row, _) in enumerate(ROWS):
            for pos in ADAPTER_POSITIONS:
                bound = logger.bind(case=_case("loguru", pos, i))
                if pos == "text":
                    # no arguments: loguru leaves the text as it is (braces and all)
                    bound.info(f"login failed: {row.text} (attempt 2)")
                elif pos == "field":
                    bound.bind(**{row.key: row.field_value}).info("login failed")
                else:
                    try:
                        raise Boom(f"rejected: {row.text}")
                    except Boom:
                        bound.exception("request failed")
                n += 1
        yield w.records(n)
    finally:
        logger.remove(sink_id)
        w.close()


# ---------------------------------------------------------------------------
# the checks


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [json.dumps(value)]


def _record(out: dict, api: str, pos: str, i: int) -> dict:
    case = _case(api, pos, i)
    assert case in out, f"record {case} was not written (dropped or lost)"
    return out[case]


def _check_leak(row: Leak, rec: dict) -> None:
    texts = _strings(rec)
    left = [s for s in row.secrets if any(s in t for t in texts)]
    assert not left, f"{row.id}: {left} reached the file: {json.dumps(rec, ensure_ascii=False)[:600]}"


def _params(positions):
    return [pytest.param(i, pos, id=f"{row.id}-{pos}") for i, (row, neg) in enumerate(ROWS) if not neg
            for pos in positions]


def _neg_params(positions):
    return [pytest.param(i, pos, id=f"{row.id}-{pos}") for i, (row, neg) in enumerate(ROWS) if neg
            for pos in positions]


def _check_negative(row: Negative, rec: dict, pos: str) -> None:
    """The look-alike is in the record exactly as it was logged."""
    fields = rec.get("fields", {})
    shown = json.dumps(rec, ensure_ascii=False)[:400]
    if pos in ("text", "args", "msg"):
        assert rec["msg"] == f"login failed: {row.text} (attempt 2)", f"{row.id} changed: {shown}"
    elif pos in ("field", "extra"):
        assert row.key in fields and fields[row.key] == row.field_value, f"{row.id} changed: {shown}"
        assert type(fields[row.key]) is type(row.field_value), f"{row.id} changed type: {shown}"
    elif pos == "field_deep":
        assert fields.get("ctx") == _deep(row)["ctx"], f"{row.id} changed: {shown}"
    elif pos == "json_text":
        assert rec["msg"] == f"payload {_json_text(row)}", f"{row.id} changed: {shown}"
    else:  # a traceback: the exception's line is intact
        tb = fields.get("exc_info") or fields.get("exception") or ""
        assert f"Boom: rejected: {row.text}" in tb, f"{row.id} changed: {shown}"


class TestProducer:
    @pytest.mark.parametrize(("i", "pos"), _params(PRODUCER_POSITIONS))
    def test_leak_is_redacted(self, producer_out, i, pos):
        _check_leak(ROWS[i][0], _record(producer_out, "producer", pos, i))

    @pytest.mark.parametrize(("i", "pos"), _neg_params(PRODUCER_POSITIONS))
    def test_look_alike_is_unchanged(self, producer_out, i, pos):
        _check_negative(ROWS[i][0], _record(producer_out, "producer", pos, i), pos)


class TestHandler:
    @pytest.mark.parametrize(("i", "pos"), _params(HANDLER_POSITIONS))
    def test_leak_is_redacted(self, handler_out, i, pos):
        _check_leak(ROWS[i][0], _record(handler_out, "handler", pos, i))

    @pytest.mark.parametrize(("i", "pos"), _neg_params(HANDLER_POSITIONS))
    def test_look_alike_is_unchanged(self, handler_out, i, pos):
        _check_negative(ROWS[i][0], _record(handler_out, "handler", pos, i), pos)


class TestStructlog:
    @pytest.mark.parametrize(("i", "pos"), _params(ADAPTER_POSITIONS))
    def test_leak_is_redacted(self, structlog_out, i, pos):
        _check_leak(ROWS[i][0], _record(structlog_out, "structlog", pos, i))

    @pytest.mark.parametrize(("i", "pos"), _neg_params(ADAPTER_POSITIONS))
    def test_look_alike_is_unchanged(self, structlog_out, i, pos):
        _check_negative(ROWS[i][0], _record(structlog_out, "structlog", pos, i), pos)


class TestLoguru:
    @pytest.mark.parametrize(("i", "pos"), _params(ADAPTER_POSITIONS))
    def test_leak_is_redacted(self, loguru_out, i, pos):
        _check_leak(ROWS[i][0], _record(loguru_out, "loguru", pos, i))

    @pytest.mark.parametrize(("i", "pos"), _neg_params(ADAPTER_POSITIONS))
    def test_look_alike_is_unchanged(self, loguru_out, i, pos):
        _check_negative(ROWS[i][0], _record(loguru_out, "loguru", pos, i), pos)


# ---------------------------------------------------------------------------
# custom policy rules in multi-line and quoted field values, every action

POLICY_RULES = [("redact", "TICKET-[0-9]{6}"), ("mask", "MASK-[0-9]{6}"), ("hash", "HASH-[0-9]{6}"),
                ("drop", "DROPME-[0-9]{6}")]
SHAPES = {
    "multi_line": "first line\nsecond {v} line\nthird line",
    "quoted": 'he said "{v}" and left',
    "traceback": 'Traceback (most recent call last):\n  File "/srv/app/x.py", line 3, in f\n'
                 '    raise ValueError("bad {v}")\nValueError: bad "{v}"',
}


# rules whose match holds a quote or a line end: matched against the decoded value, they must
# still apply (or fail closed: the whole value redacted, the record dropped for drop)
SPANNING_RULES = [
    ("redact", 'ticket "[0-9]{6}"', 'he said ticket "424201" twice', "424201"),
    ("mask", "(?s)BEGIN NOTE.*?END NOTE", "BEGIN NOTE\nsecret 424202\nEND NOTE", "424202"),
    ("hash", "serial: [0-9]{6}$", "serial: 424203\nnext line", "424203"),
    ("drop", 'DROPME "[0-9]{6}"', 'x DROPME "424204" y', "424204"),
]


@pytest.fixture(scope="module")
def policy_out(base):
    import os

    import logger_system

    d = base / "policy"
    d.mkdir(parents=True, exist_ok=True)
    key = d / "hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    policy = d / "policy.json"
    rules = [{"name": f"custom_{action}", "pattern": pattern, "action": action} for action, pattern in POLICY_RULES]
    rules += [{"name": f"spanning_{action}", "pattern": pattern, "action": action}
              for action, pattern, _, _ in SPANNING_RULES]
    policy.write_text(json.dumps({"hash_key_file": str(key), "rules": rules}))
    w = Written(d, "--policy", str(policy))
    try:
        log = logger_system.connect(w.ring, name="policy")
        n = 0
        for action, pattern in POLICY_RULES:
            value = pattern.split("-")[0] + "-424242"
            for shape, tpl in SHAPES.items():
                assert log.info("custom rule", case=f"p{action}{shape}", detail=tpl.format(v=value))
                n += 1
        for action, _, value, _ in SPANNING_RULES:
            assert log.info("custom rule", case=f"s{action}", detail=value, deep={"list": [value]})
            n += 1
        yield w.records(n)
    finally:
        w.close()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("action", "pattern"), POLICY_RULES)
def test_custom_rule_holds_in_field_values(policy_out, action, pattern, shape):
    value = pattern.split("-")[0] + "-424242"
    case = f"p{action}{shape}"
    if action == "drop":
        assert case not in policy_out, f"a drop rule matched {shape} field text but the record was written"
        return
    assert case in policy_out, f"record {case} was not written"
    rec = policy_out[case]
    left = [s for s in _strings(rec) if value in s]
    assert not left, f"custom {action} rule: {value} left in a {shape} field value: {left}"


@pytest.mark.parametrize(("action", "pattern", "value", "secret"), SPANNING_RULES,
                         ids=[r[0] for r in SPANNING_RULES])
def test_custom_rule_whose_match_holds_a_quote_or_line_end(policy_out, action, pattern, value, secret):
    case = f"s{action}"
    if action == "drop":
        assert case not in policy_out, f"drop rule {pattern!r} matched a field value but the record was written"
        return
    assert case in policy_out, f"record {case} was not written"
    left = [s for s in _strings(policy_out[case]) if secret in s]
    assert not left, f"custom {action} rule {pattern!r}: {secret} left in {left}"


# ---------------------------------------------------------------------------
# what reaches a reader's screen

BIDI_AND_INVISIBLE = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
                      "\u200e", "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


@pytest.fixture(scope="module")
def display_dir(base):
    import logger_system

    w = Written(base / "display")
    try:
        log = logger_system.connect(w.ring, name="display")
        log.info("user \u202eNIMDA\u202c logged in", user="bob role=admin", case="d1")
        log.info("hidden" + "".join(BIDI_AND_INVISIBLE) + "end", note="x" + "".join(BIDI_AND_INVISIBLE), case="d2")
        w.records(2)
        return w.dir
    finally:
        w.close()


@pytest.mark.parametrize("mode", ["json", "text"])
def test_cat_escapes_bidi_and_zero_width(display_dir, mode):
    args = ["cat", str(display_dir)] + (["--text"] if mode == "text" else [])
    r = subprocess.run(cli(*args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    raw = sorted({f"U+{ord(ch):04X}" for ch in r.stdout if ch in BIDI_AND_INVISIBLE})
    assert not raw, f"cat {'--text ' if mode == 'text' else ''}shows {raw} raw"


def test_cat_text_quotes_a_value_that_could_pose_as_fields(display_dir):
    r = subprocess.run(cli("cat", "--text", str(display_dir)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "user=bob role=admin" not in r.stdout, r.stdout
    assert 'user="bob role=admin"' in r.stdout, r.stdout
