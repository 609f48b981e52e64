"""Provider token formats (native/tokens.c): lsr_tok_match at every word start of a text.

Tokens are generated the way each provider shapes them (random bodies from a fixed seed, valid
checksums where the format has one) and must be found whole, with the right rule, wherever they
stand in a line; their near-misses (too short, too long, wrong alphabet, bad checksum, embedded in
a longer word) and the ids logs are full of (UUIDs, SHAs, hex ids) must not be.  The last group
runs the Sanitize stage on a real ring: it applies once the scanner calls lsr_tok_match.
"""
from __future__ import annotations

import base64
import json
import random
import string
import uuid
import zlib

import numpy as np
import pytest

from logger_system import connect
from logger_system._native import ffi, lib
from logger_system.pipeline import Batch, run
from logger_system.pipeline.sanitize import Sanitize
from logger_system.pipeline.stages import FormatJsonl
from logger_system.pipeline.sanitize import counter_names
from logger_system.policy import BUILTIN_RULES, MAX_RULES, Policy, Rule
from logger_system.record import META_DTYPE
from logger_system.ring import unlink
from perf.tokens import (ALNUM, AZURE, B64URL, B62, BECH32, GENERATORS, LALNUM, LHEX, UPALNUM,
                         age_key, base62, discord_token, ends_alnum, npm_token, rnd)

TOKEN_RULES = BUILTIN_RULES[lib.LSR_R_STRIPE_KEY:]
ALL = (1 << len(BUILTIN_RULES)) - 1
WORD = frozenset((string.ascii_letters + string.digits + "_").encode())

# ---------------------------------------------------------------------------
# lsr_tok_match over a text, as the scanner calls it


def find(text: str | bytes, enabled: int = ALL) -> list[tuple[int, int, str]]:
    """(start, end, rule) of every token: lsr_tok_match at each word start, resuming after a
    match (and after the rest of a word a match ended in), else after the word."""
    data = text.encode() if isinstance(text, str) else text
    n = len(data)
    buf = ffi.from_buffer("uint8_t[]", data)
    rule = ffi.new("int *")
    out, i = [], 0
    while i < n:
        if data[i] not in WORD:
            i += 1
            continue
        m = lib.lsr_tok_match(buf, n, i, enabled, rule)
        if m:
            assert 0 < m <= n - i
            assert 0 <= rule[0] < len(BUILTIN_RULES) and enabled >> rule[0] & 1
            out.append((i, i + m, BUILTIN_RULES[rule[0]]))
            i += m
        while i < n and data[i] in WORD:
            i += 1
    return out


def only(text: str, token: str) -> list[tuple[int, int, str]]:
    """What find() must return for a text holding `token` once: that token, nothing else."""
    start = text.encode().index(token.encode())
    return [(start, start + len(token.encode()))]


# ---------------------------------------------------------------------------
# generators: one random token in each form a provider issues



SURROUNDINGS = [
    "{t}",
    "key={t}",
    "token: {t}",
    'sent "{t}" upstream',
    "'{t}'",
    '{{"api_key": "{t}", "n": 1}}',
    "GET https://api.example.com/v1/items?key={t}&page=2",
    "({t})",
    "end of text {t}",
    "{t}\nnext line",
    "a,{t},b",
    "{t}.",
    "é{t}é",
]

CASES = [(rule, k) for rule, gens in GENERATORS.items() for k in range(len(gens))]


def tokens(rule: str, k: int, count: int = 8) -> list[str]:
    rng = random.Random(f"{rule}/{k}")
    return [GENERATORS[rule][k](rng) for _ in range(count)]


def test_rule_ids_are_stable_and_fit_the_counters():
    assert BUILTIN_RULES[:13] == ("credit_card", "ssn", "email", "ipv4", "ipv6", "jwt", "aws_key",
                                  "github_token", "slack_token", "private_key", "password", "bearer",
                                  "url_credentials")
    for rid, name in enumerate(BUILTIN_RULES):
        assert getattr(lib, f"LSR_R_{name.upper()}") == rid
    assert lib.LSR_R_NBUILTIN == len(BUILTIN_RULES) < lib.LSR_R_FIELD == 63
    assert len(BUILTIN_RULES) + 2 + MAX_RULES == 64  # built-ins, field, policy rules, whole values
    assert set(GENERATORS) == set(TOKEN_RULES) | {"slack_token"}


def test_a_policy_with_the_most_rules_still_gets_a_counter_per_rule():
    """The writer names the ring's counters: every built-in, the field rule, each policy rule
    and the values replaced whole; a policy of MAX_RULES rules fills them exactly."""
    name = f"lstest-tokc-{uuid.uuid4().hex[:12]}"
    log = connect(name, capacity=1 << 16, on_full="drop")
    try:
        policy = Policy(rules=tuple(Rule(f"rule{k}", f"R{k}-[0-9]+", "redact") for k in range(MAX_RULES)))
        names, _ids = counter_names(policy)
        log.ring.name_rules(names)
        assert len(names) == 64 and set(log.ring.stats().rule_hits) == set(names)
        assert lib.lsr_rule_name(log.ring.ptr, len(names), b"one_too_many") == lib.LSR_EARG
    finally:
        log.ring.close()
        unlink(name)


@pytest.mark.parametrize("rule, k", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_token_found_whole_in_any_surrounding(rule, k):
    for token in tokens(rule, k):
        for form in SURROUNDINGS:
            text = form.format(t=token)
            want = [(a, b, rule) for a, b in only(text, token)]
            assert find(text) == want, (form, token)


@pytest.mark.parametrize("rule, k", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_token_of_a_disabled_rule_is_not_found(rule, k):
    rid = BUILTIN_RULES.index(rule)
    for token in tokens(rule, k, 3):
        assert find(token, ALL & ~(1 << rid)) == []
        assert find(token, 1 << rid) == [(0, len(token), rule)]


@pytest.mark.parametrize("rule, k", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_token_inside_a_longer_word_is_not_found(rule, k):
    for token in tokens(rule, k, 3):
        for text in (f"x{token}", f"my_{token}", f"z9{token}"):
            got = [f for f in find(text) if f[0] == 0]
            assert got == [], text


@pytest.mark.parametrize("rule, k", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_the_inline_precheck_passes_every_token(rule, k):
    """lsr_tok_maybe, which a scanner may call first to skip most word starts, never
    turns a token away."""
    for token in tokens(rule, k, 4):
        for form in SURROUNDINGS:
            data = form.format(t=token).encode()
            buf = ffi.from_buffer("uint8_t[]", data)
            for a, _, _ in find(data):
                assert lib.lsr_tok_maybe(buf, len(data), a) == 1, (form, token)


def test_the_inline_precheck_turns_most_words_away():
    text = " ".join(NEAR_MISSES.values()).encode() * 4
    buf = ffi.from_buffer("uint8_t[]", text)
    starts = [i for i in range(len(text)) if text[i] in WORD and (i == 0 or text[i - 1] not in WORD)]
    passed = sum(lib.lsr_tok_maybe(buf, len(text), i) for i in starts)
    assert passed < len(starts) / 2


def test_two_tokens_in_one_line():
    rng = random.Random(5)
    a, b = GENERATORS["stripe_key"][0](rng), npm_token(rng)
    c = GENERATORS["google_api_key"][0](rng)
    text = f"stripe={a} npm={b},google={c}"
    assert [r for _, _, r in find(text)] == ["stripe_key", "npm_token", "google_api_key"]


def test_azure_secret_starting_with_punctuation_is_caught_from_its_first_word():
    rng = random.Random(11)
    for head in ("a.b", "~ab", ".~a", "a-b"):
        secret = head + "8Q~" + ends_alnum(rng, AZURE, 34)
        text = f"secret {secret} end"
        got = find(text)
        assert len(got) == 1 and got[0][2] == "azure_client_secret", secret
        a, b, _ = got[0]
        assert b == text.index(secret) + len(secret)
        assert a - text.index(secret) <= 2  # at most the two punctuation characters stay


# ---------------------------------------------------------------------------
# near-misses and the ids of ordinary logs


def rng_hex(k: int, seed: int = 3) -> str:
    return rnd(random.Random(seed), LHEX, k)


def age_bad_checksum() -> str:
    good = age_key(random.Random(1))
    k = 30
    return good[:k] + ("Q" if good[k] != "Q" else "P") + good[k + 1:]


def discord_non_digits() -> str:
    first = base64.b64encode(b"abcdefghijklmnopqrs").decode().rstrip("=")
    return f"{first}.{rnd(random.Random(2), B64URL, 6)}.{rnd(random.Random(3), B64URL, 27)}"


_R = random.Random(99)
NEAR_MISSES = {
    "stripe too short": "sk_live_" + rnd(_R, ALNUM, 19),
    "stripe identifier": "sk_test_mode_enabled_for_all_users_in_staging",
    "stripe body with underscore": "sk_live_" + rnd(_R, ALNUM, 24) + "_v2",
    "stripe publishable": "pk_live_" + rnd(_R, ALNUM, 99),
    "stripe prod": "sk_prod_" + rnd(_R, ALNUM, 24),
    "whsec short": "whsec_" + rnd(_R, ALNUM, 20),
    "google key short": "AIza" + rnd(_R, B64URL, 34),
    "google key long": "AIza" + rnd(_R, B64URL, 36),
    "google key dot": "AIza" + rnd(_R, ALNUM, 20) + "." + rnd(_R, ALNUM, 14),
    "gocspx short": "GOCSPX-" + rnd(_R, B64URL, 27),
    "ya29 short": "ya29." + rnd(_R, ALNUM, 10),
    "openai short": "sk-" + rnd(_R, ALNUM, 31),
    "openai dash after": "sk-" + rnd(_R, ALNUM, 40) + "-x",
    "openai proj short": "sk-proj-" + rnd(_R, ALNUM, 10),
    "sk-learn": "pip install scikit-learn; sk-learn docs",
    "anthropic no version": "sk-ant-" + rnd(_R, B64URL, 60).replace("-", "x"),
    "anthropic short": "sk-ant-api03-" + rnd(_R, ALNUM, 20),
    "slack webhook other host": "https://hooks.example.com/services/T0123456789/B0123456789/" + rnd(_R, ALNUM, 24),
    "slack webhook short secret": "https://hooks.slack.com/services/T0123456789/B0123456789/abc",
    "slack webhook lowercase team": "https://hooks.slack.com/services/tabcdefgh/B0123456789/" + rnd(_R, ALNUM, 24),
    "slack api url": "https://slack.com/api/chat.postMessage",
    "xapp short": "xapp-1-A123-45",
    "gitlab short": "glpat-" + rnd(_R, ALNUM, 19),
    "gitlab word": "glpatterns-are-fine",
    "gitlab runner short": "GR1348941" + rnd(_R, ALNUM, 10),
    "sendgrid short part": f"SG.{rnd(_R, B64URL, 21)}.{rnd(_R, B64URL, 43)}",
    "npm short": "npm_" + rnd(_R, B62, 35),
    "npm config": "npm_config_registry=https://registry.npmjs.org/",
    "pypi other macaroon": "pypi-" + rnd(_R, B64URL, 160),
    "pypi short": "pypi-AgEIcHlwaS5vcmc" + rnd(_R, B64URL, 30),
    "hf short": "hf_" + rnd(_R, string.ascii_letters, 33),
    "hf long": "hf_" + rnd(_R, string.ascii_letters, 35),
    "hf identifier": "hf_hub_download_cache_dir_for_models",
    "digitalocean uppercase": "dop_v1_" + rnd(_R, LHEX, 64).upper().replace("0", "A"),
    "digitalocean short": "dop_v1_" + rnd(_R, LHEX, 63),
    "shopify not hex": "shpat_" + rnd(_R, "ghijklmnopqrstuvwxyz", 32),
    "twilio account sid": "AC" + rnd(_R, LHEX, 32),
    "twilio short": "SK" + rnd(_R, LHEX, 31),
    "twilio long": "SK" + rnd(_R, LHEX, 33),
    "mailgun key-value": "key-value-store-for-sessions",
    "mailgun short": "key-" + rnd(_R, LALNUM, 31),
    "square short": "sq0atp-" + rnd(_R, B64URL, 21),
    "square EAAA short": "EAAA" + rnd(_R, B64URL, 59),
    "databricks short": "dapi" + rnd(_R, LHEX, 31),
    "databricks not hex": "dapi" + rnd(_R, "ghijklmnopqrstuvwxyz", 32),
    "atlassian short": "ATATT3" + rnd(_R, B64URL, 100),
    "postman missing dash": "PMAK-" + rnd(_R, LHEX, 58),
    "doppler short": "dp.pt." + rnd(_R, ALNUM, 39),
    "telegram short id": f"{12345}:AA{rnd(_R, B64URL, 33)}",
    "telegram no AA": f"123456789:AB{rnd(_R, B64URL, 33)}",
    "telegram short secret": f"123456789:AA{rnd(_R, B64URL, 32)}",
    "time with colon": "12345678:30:00",
    "discord not digits": discord_non_digits(),
    "discord short hmac": discord_token(random.Random(4))[:-20],
    "azure short": rnd(_R, ALNUM, 3) + "8Q~" + rnd(_R, ALNUM, 20),
    "azure no digit": rnd(_R, ALNUM, 3) + "xQ~" + rnd(_R, ALNUM, 34),
    "heroku uuid": str(uuid.UUID(int=_R.getrandbits(128))),
    "heroku short": "HRKU-AA" + rnd(_R, B64URL, 57),
    "age bad checksum": age_bad_checksum(),
    "age lowercase alphabet": "AGE-SECRET-KEY-1" + rnd(_R, string.ascii_lowercase, 58),
    "vault short": "hvs." + rnd(_R, ALNUM, 10),
    "vault legacy": "s." + rnd(_R, ALNUM, 24),
    "terraform short": rnd(_R, ALNUM, 14) + ".atlasv1." + rnd(_R, ALNUM, 30),
    "uuid": str(uuid.UUID(int=_R.getrandbits(128))),
    "uuid hex": uuid.UUID(int=_R.getrandbits(128)).hex,
    "sha1": rng_hex(40, 1),
    "sha256": rng_hex(64, 2),
    "git short sha": "commit " + rng_hex(7, 4),
    "hex id prefixed": "SKU-" + rng_hex(32, 5),
    "request id": "req_" + rnd(_R, ALNUM, 24),
    "base64 blob": base64.b64encode(bytes(range(60))).decode(),
    "version": "v1.2.3-rc.1+build.5",
    "timestamp": "2024-05-01T12:30:45.123456Z",
    "path": "/var/lib/app/sk_live_cache/session.db",
    "sentence": "The API key rotation finished in 12345678 ms without errors.",
    "module path": "github.com/example/skeleton/pkg/tokens",
    "python name": "self.sk_live_mode = ya29_enabled and hf_token_path",
}


@pytest.mark.parametrize("label", sorted(NEAR_MISSES))
def test_near_miss_is_not_a_token(label):
    text = NEAR_MISSES[label]
    for form in ("{t}", "key={t}", '{{"v": "{t}"}}', "{t}."):
        assert find(form.format(t=text)) == [], (label, form)


def test_checksum_validation_is_what_decides():
    """An age key that differs from a valid one in one character is rejected (bech32); an npm
    token is caught whatever its last six characters say (fail closed: its checksum is unproven)."""
    rng = random.Random(21)
    for _ in range(50):
        tok = npm_token(rng)
        assert find(tok) == [(0, 40, "npm_token")]
        body = tok[4:34]
        wrong = base62((zlib.crc32(body.encode()) + 1) & 0xFFFFFFFF)
        assert find("npm_" + body + wrong) == [(0, 40, "npm_token")]
    for _ in range(20):
        key = age_key(rng)
        assert find(key) == [(0, 74, "age_secret_key")]
        pos = rng.randrange(16, 74)
        alt = rng.choice([c for c in BECH32.upper() if c != key[pos]])
        assert find(key[:pos] + alt + key[pos + 1:]) == []  # bech32 catches every 1-char change


# ---------------------------------------------------------------------------
# bounded work


ADVERSARIAL = [
    "sk-", "sk-proj-", "sk-ant-api03-", "sk_live_", "whsec_", "SG.", "AIza", "GOCSPX-", "ya29.", "1//0",
    "xapp-1-", "xoxe.xoxp-1-", "glpat-", "GR1348941", "npm_", "pypi-AgEIcHlwaS5vcmc", "hf_", "dop_v1_",
    "shpat_", "SK", "key-", "sq0csp-", "EAAA", "dapi", "ATATT3", "PMAK-", "dp.pt.", "123456789:AA",
    "MTIzNDU2Nzg5MDEyMzQ1Njc4", "abc8Q~", "HRKU-AA", "AGE-SECRET-KEY-1", "hvs.", "abcdefghijklmn.atlasv1.",
    "https://hooks.slack.com/services/T", "https://hooks.slack.com/services/TABCDEFGH/B",
]
FILLERS = ["", "a", "-", ".", "a-", "~", "Q~", "0:", "=", "/"]
HORIZON = 1200  # a word start that is not a token is decided within this many bytes


def adversarial(prefix: str, filler: str, size: int) -> bytes:
    unit = (prefix + filler).encode()
    return unit * (size // len(unit) + 1)


@pytest.mark.parametrize("prefix", ADVERSARIAL)
def test_a_non_token_is_decided_within_a_bounded_window(prefix):
    """Where lsr_tok_match finds nothing, it finds nothing either when the text is cut
    HORIZON bytes after the word start: no failing call depends on (so reads) more."""
    for filler in FILLERS:
        data = adversarial(prefix, filler, 8192)
        n = len(data)
        buf = ffi.from_buffer("uint8_t[]", data)
        rule = ffi.new("int *")
        starts = [i for i in range(n) if data[i] in WORD and (i == 0 or data[i - 1] not in WORD)]
        for i in starts[:400]:
            if lib.lsr_tok_match(buf, n, i, ALL, rule) == 0:
                assert lib.lsr_tok_match(buf, min(n, i + HORIZON), i, ALL, rule) == 0, (prefix, filler, i)


@pytest.mark.timeout(60)
def test_megabyte_of_repeated_prefixes_runs_through():
    """1 MB of each prefix repeated (with fillers that make the longest failing candidates)
    scans in one linear pass; a quadratic scan would not finish within the timeout."""
    hits = ffi.new("uint64_t[64]")
    for prefix in ADVERSARIAL:
        for filler in FILLERS:
            data = adversarial(prefix, filler, 1 << 20)
            matched = lib.lsr_tok_scan(ffi.from_buffer("uint8_t[]", data), len(data), ALL, hits)
            assert matched <= len(data)


def test_scan_helper_agrees_with_word_start_loop():
    rng = random.Random(8)
    parts = []
    for rule, gens in GENERATORS.items():
        for gen in gens:
            parts.append(f"{rule}={gen(rng)}")
    parts += list(NEAR_MISSES.values())
    rng.shuffle(parts)
    text = " | ".join(parts).encode()
    hits = ffi.new("uint64_t[64]")
    matched = lib.lsr_tok_scan(ffi.from_buffer("uint8_t[]", text), len(text), ALL, hits)
    found = find(text)
    assert matched == sum(b - a for a, b, _ in found)
    for rid, name in enumerate(BUILTIN_RULES):
        assert hits[rid] == sum(1 for _, _, r in found if r == name)
    assert len(found) == sum(len(g) for g in GENERATORS.values())


# ---------------------------------------------------------------------------
# through the Sanitize stage on a real ring (once the scanner calls lsr_tok_match)


def sanitize(records: list[tuple[str, dict]], policy: Policy | None = None) -> list[dict]:
    """Log the records into a fresh ring, drain them as the writer does, run Sanitize and
    FormatJsonl; the written records, parsed."""
    name = f"lstest-tok-{uuid.uuid4().hex[:12]}"
    log = connect(name, capacity=1 << 22, max_record=1 << 18, on_full="drop")
    ring = log.ring
    try:
        for msg, fields in records:
            assert log.log(20, msg, **fields)
        stages = [Sanitize(policy or Policy()), FormatJsonl()]
        meta_c = ffi.new("lsr_meta[]", 4096)
        buf_c = ffi.new("uint8_t[]", ring.capacity)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = meta_c, buf_c, 4096, ring.capacity
        cursor, lines = lib.lsr_head(ring.ptr), []
        for _ in range(1000):
            assert lib.lsr_drain(ring.ptr, cursor, b) == 0
            if b.end == cursor:
                break
            meta = np.frombuffer(ffi.buffer(meta_c, b.n * META_DTYPE.itemsize), META_DTYPE).copy()
            batch = run(stages, Batch(meta=meta, buf=ffi.buffer(buf_c, b.buf_len)[:], end=b.end))
            lines += bytes(batch.out or b"").split(b"\n")[:-1]
            d = ffi.new("lsr_totals *")
            d.written, d.filtered = batch.kept, batch.delta.filtered
            d.sanitized, d.sanitize_dropped = batch.delta.sanitized, batch.delta.sanitize_dropped
            assert lib.lsr_release(ring.ptr, b.end, d) == 0
            cursor = b.end
        return [json.loads(line) for line in lines]
    finally:
        ring.close()
        unlink(name)


def _scanner_calls_tokens() -> bool:
    key = "sk_live_" + rnd(random.Random(0), ALNUM, 40)
    (rec,) = sanitize([(f"charge with {key}", {})])
    return key not in rec["msg"]


SCANNER = pytest.mark.skipif(not _scanner_calls_tokens(),
                             reason="the scanner (native/sanitize.c) does not call lsr_tok_match yet")


@SCANNER
@pytest.mark.parametrize("rule", sorted(GENERATORS))
def test_stage_replaces_tokens_in_message_and_fields(rule):
    """Where no key names the value, the replacement names the token's rule; after a secret
    key (api_key=...) the password rule may take the value first: either way it is gone."""
    records, secrets = [], []
    for k in range(len(GENERATORS[rule])):
        for token in tokens(rule, k, 3):
            for form in ("{t}", "call failed: {t}.", "GET /v1/hook?u={t}&n=2", "key={t}",
                         '{{"api_key": "{t}"}}'):
                text = form.format(t=token)
                records.append((text, {"v": text, "deep": {"list": [text]}}))
                secrets.append((token, text, "key" not in form))
    out = sanitize(records)
    assert len(out) == len(records)
    for (token, text, named), rec in zip(secrets, out):
        blob = json.dumps(rec)
        assert token not in blob, (rule, text, rec)
        if named:
            assert rec["msg"] == text.replace(token, f"[REDACTED:{rule}]"), (rule, text, rec["msg"])
            assert rec["fields"]["deep"]["list"] == [rec["msg"]]


@SCANNER
def test_stage_leaves_near_misses_alone():
    texts = [t for label, t in sorted(NEAR_MISSES.items()) if "uuid" not in label]
    out = sanitize([(f"id {t} ok", {}) for t in texts], Policy(builtin=TOKEN_RULES))
    assert [r["msg"] for r in out] == [f"id {t} ok" for t in texts]


@SCANNER
def test_stage_honours_a_policy_without_the_rule():
    key = GENERATORS["stripe_key"][0](random.Random(3))
    builtin = tuple(r for r in BUILTIN_RULES if r != "stripe_key")
    (kept,) = sanitize([(f"charge {key} done", {})], Policy(builtin=builtin))
    (gone,) = sanitize([(f"charge {key} done", {})], Policy(actions={"stripe_key": "mask"}))
    assert key in kept["msg"]
    assert gone["msg"] == f"charge [MASKED:stripe_key:****{key[-4:]}] done"
