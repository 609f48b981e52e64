"""A labeled corpus of log lines for the sanitizer: secrets and near-misses.

`secret_lines()` gives lines that each hide one secret of a built-in kind,
in varied formats and positions, with the exact secret text; `clean_lines()`
gives lines full of things that look like secrets and are not (UUIDs, hex
digests, timestamps, versions, durations, Luhn-invalid 16-digit order
numbers, ...).  `realistic()` and `dense()` build the perf corpora.

`labeled()` is the labeled corpus the peer comparison (perf/secrets_peer.py)
and the leak tests use: a sample of every secret class a secret scanner
covers (cards with every separator, e-mails in every encoding, provider
tokens, key-named values in every spelling, header lists, ...), each placed
in every position of a record (message text, %-args, a field, a field at
depth, JSON in the text, a traceback field), with the exact substrings that
must not survive; and hard negatives (look-alikes) that must come out byte
for byte.  Deterministic for a given seed.
"""
from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass, field

from perf.tokens import GENERATORS as TOKEN_GENERATORS

_B32 = string.ascii_uppercase + "234567"
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Secret:
    rule: str
    line: str
    secret: str  # must not appear in the sanitized line


def luhn_complete(body: str) -> str:
    """body with the check digit that makes it pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return body + str((10 - total % 10) % 10)


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    return luhn_complete(prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1)))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        v = int(ch)
        if i % 2:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16),
                                 ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3530", 16),
                                 ("62", 18), ("36", 14)])
    digits = _luhn_complete(prefix, length, rng)
    sep = rng.choice(["", " ", "-"])
    if not sep:
        return digits
    if length == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i:i + 4] for i in range(0, length, 4)]
    return sep.join(groups)


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def email(rng: random.Random) -> str:
    local = rng.choice(["alice", "bob.smith", "carol+logs", "d.o-e_99", "x"]) + str(rng.randint(0, 999))
    domain = rng.choice(["example.com", "mail.example.org", "corp.example.co.uk", "ex-ample.net"])
    return f"{local}@{domain}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.choice([rng.randint(0, 255), rng.randint(1, 9), 10, 192, 255])) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    form = rng.randint(0, 3)
    if form == 0:
        return ":".join(groups)
    if form == 1:
        return ":".join(f"{int(g, 16):04x}" for g in groups)
    if form == 2:
        return "fe80::" + ":".join(groups[:rng.randint(1, 4)])
    return "2001:db8::" + groups[0]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(10**9, 2 * 10**9)}).encode())
    sig = _b64url(rng.randbytes(32))
    return f"{head}.{body}.{sig}"


def aws_key(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(_B32) for _ in range(16))


def github_token(rng: random.Random) -> str:
    return rng.choice(["ghp_", "gho_", "ghs_"]) + "".join(rng.choice(_ALNUM) for _ in range(36))


def slack_token(rng: random.Random) -> str:
    return f"xox{rng.choice('bpa')}-{rng.randint(10**11, 10**12)}-" + "".join(
        rng.choice(_ALNUM) for _ in range(24))


def private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = "\n".join(_b64url(rng.randbytes(48)) for _ in range(rng.randint(2, 5)))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def password(rng: random.Random) -> str:
    return "".join(rng.choice(_ALNUM + "!#$%*") for _ in range(rng.randint(6, 20)))


def token(rng: random.Random) -> str:
    return "".join(rng.choice(_ALNUM + "-_.") for _ in range(rng.randint(16, 40)))


_TEMPLATES = [
    "{s}",
    "value {s} seen",
    "({s})",
    "'{s}',",
    "[{s}]",
    "user said: {s}.",
    "prefix text and then {s}",
]


def secret_lines(seed: int = 7, per_kind: int = 40) -> list[Secret]:
    """Lines that each hold one secret of a built-in kind, with the secret."""
    rng = random.Random(seed)
    out: list[Secret] = []

    def add(rule: str, secret: str, shown: str | None = None) -> None:
        tpl = rng.choice(_TEMPLATES)
        out.append(Secret(rule, tpl.format(s=shown if shown is not None else secret), secret))

    for _ in range(per_kind):
        add("credit_card", card(rng))
        add("ssn", ssn(rng))
        add("email", email(rng))
        add("ipv4", ipv4(rng))
        add("ipv6", ipv6(rng))
        add("jwt", jwt(rng))
        add("aws_key", aws_key(rng))
        add("github_token", github_token(rng))
        add("slack_token", slack_token(rng))
        pk = private_key(rng)
        add("private_key", pk.split("\n")[1], pk)  # the key body never shows
        pw = password(rng).replace("'", "").replace(",", "")
        key = rng.choice(["password", "passwd", "db_password", "secret", "api_key", "client_secret",
                          "access_token", "X-API-Key"])
        form = rng.choice(["{k}={v}", "{k}: {v}", '"{k}": "{v}"', "{k} = '{v}'", '{{"{k}":"{v}"}}'])
        add("password", pw, form.format(k=key, v=pw))
        tok = token(rng)
        add("bearer", tok, rng.choice(["Authorization: Bearer {t}", "authorization: Basic {t}",
                                       "sent Bearer {t} upstream"]).format(t=tok))
        user, pw2 = rng.choice(["svc", "admin", "app"]), password(rng).replace("@", "").replace("/", "")
        pw2 = "".join(ch for ch in pw2 if ch.isalnum()) or "pw123456"
        add("url_credentials", pw2, f"https://{user}:{pw2}@db.internal:5432/app")
        for rule, makers in TOKEN_GENERATORS.items():  # provider tokens (native/tokens.c)
            if rule != "slack_token":
                add(rule, rng.choice(makers)(rng))
    return out


def clean_lines(seed: int = 11, n: int = 400) -> list[str]:
    """Lines with look-alikes that are not secrets: each must come out unchanged."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        order = _luhn_complete("4", 16, rng)
        bad = order[:-1] + str((int(order[-1]) + rng.randint(1, 9)) % 10)  # Luhn-invalid
        assert not luhn_ok(bad)
        choices = [
            f"request {uuid.UUID(int=rng.getrandbits(128))} done",
            f"sha256 {rng.randbytes(32).hex()} verified",
            f"md5={rng.randbytes(16).hex()} etag",
            f"at 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z",
            f"epoch {rng.randint(1_600_000_000, 1_900_000_000)} ms {rng.randint(1_600_000_000_000, 1_900_000_000_000)}",
            f"version {rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)} deployed",
            f"took {rng.randint(1, 999)}ms (p99 {rng.uniform(0, 5):.3f}s)",
            f"order number {bad} shipped",
            f"order {bad[:4]} {bad[4:8]} {bad[8:12]} {bad[12:]} queued",
            f"port {rng.randint(1, 65535)} pid {rng.randint(1, 99999)} fd {rng.randint(0, 1023)}",
            f"ratio {rng.uniform(0, 100):.2f}% of {rng.randint(1, 10**6)} requests",
            "password reset requested for account",
            "token expired, refreshing",
            "the secret sauce is patience",
            f"GET /api/v1/items/{rng.randint(1, 10**6)}?page={rng.randint(1, 50)} 200",
            f"path /var/lib/app/{rng.randint(1, 99)}/data.db size {rng.randint(1, 10**9)}",
            f"call std::vector<int>::push_back {rng.randint(1, 100)} times",
            f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} local",
            f"build 1.2.3.4.5 and 999.{rng.randint(0, 9)}.1.1",
            f"phone +1 415 555 {rng.randint(1000, 9999)}",
            f"commit {rng.randbytes(20).hex()[:12]} by dev",
            f"https://example.com/docs/{rng.randint(1, 99)}?q=logging",
        ]
        out.append(rng.choice(choices))
    return out


def realistic(seed: int = 3, n: int = 20000) -> list[tuple[str, dict]]:
    """(message, fields) records as a web service logs them: 1 in 20 holds a secret."""
    rng = random.Random(seed)
    secrets = secret_lines(seed, per_kind=max(1, n // 200))
    clean = clean_lines(seed, n=200)
    out = []
    for i in range(n):
        fields = {"request_id": uuid.UUID(int=rng.getrandbits(128)).hex, "status": rng.choice([200, 201, 404]),
                  "duration_ms": round(rng.uniform(1, 90), 2)}
        if i % 20 == 0:
            out.append((f"handled {rng.choice(secrets).line}", fields))
        else:
            out.append((f"GET /api/v1/orders/{rng.randint(1, 10**6)} {rng.choice(clean)}", fields))
    return out


def dense(seed: int = 5, n: int = 20000) -> list[tuple[str, dict]]:
    """Every record holds secrets, in the message and in a field."""
    rng = random.Random(seed)
    secrets = secret_lines(seed, per_kind=max(1, n // 100))
    out = []
    for _ in range(n):
        a, b = rng.choice(secrets), rng.choice(secrets)
        out.append((f"user {email(rng)} paid with {a.line}", {"note": b.line, "password": password(rng)}))
    return out


# ---------------------------------------------------------------------------
# The labeled corpus: every secret class in every position, and hard negatives
#
# A Sample is one secret (or one look-alike) in its context: the text a
# service would log, the exact substrings that must not survive (the value
# and, where a scanner could stop early, the tail it would leave), and for
# key-named values the (key, value) pair a keyword-argument API would log.
# labeled() puts each Sample in every position of a record.

POSITIONS = ("text", "args", "field", "field_deep", "json_text", "traceback")


@dataclass(frozen=True)
class Sample:
    cls: str        # the secret class ("stripe", ...), or "neg:<kind>" for a look-alike
    variant: str    # which form of the class (the separator, the key spelling, ...)
    text: str       # as it appears in message text
    secrets: tuple[str, ...] = ()  # must not survive anywhere in the record; () for a look-alike
    key: str | None = None          # key-named values: logged as the field key=value
    value: object = None


@dataclass(frozen=True, eq=False)
class Case:
    """One labeled record: log it as log.info(msg, *args, **fields)."""

    cls: str
    variant: str
    position: str
    msg: str
    args: tuple = ()
    fields: dict = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    @property
    def negative(self) -> bool:
        return not self.secrets

    @property
    def text(self) -> str:
        """The message as the producer writes it (msg % args)."""
        return self.msg % self.args if self.args else self.msg

    def line(self) -> str:
        """The record as one log line (message, then its fields as JSON): what a line scanner reads."""
        return self.text + (" " + json.dumps(self.fields, ensure_ascii=False) if self.fields else "")

    def name(self) -> str:
        return f"{self.cls}/{self.variant}/{self.position}"


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


_URLSAFE = _ALNUM + "-_"
_B64 = _ALNUM + "+/"
_HEX = "0123456789abcdef"
_WORDS = ("correct", "horse", "battery", "staple", "orbit", "velvet", "quartz", "lantern", "meadow",
          "copper", "falcon", "glacier", "harbor", "ember", "thistle", "walnut")
_FIRST = ("josé", "zoë", "björn", "renée", "łukasz", "jürgen", "inès", "søren")


def _grouped(digits: str, sep: str) -> str:
    if len(digits) == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return sep.join(groups)


def _cards(rng):
    out = []
    for sep, name in ((" ", "space"), ("-", "dash"), (".", "dot"), ("_", "underscore"), ("/", "slash"),
                      ("  ", "double_space")):
        prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("6011", 16),
                                     ("34", 15), ("37", 15), ("3530", 16)])
        digits = _luhn_complete(prefix, length, rng)
        shown = _grouped(digits, sep)
        parts = shown.split(sep)
        out.append(Sample("credit_card", name, shown, (shown, sep.join(parts[:-1]), sep.join(parts[1:]))))
    digits = _luhn_complete(rng.choice(["4", "51", "6011"]), 16, rng)
    kw = rng.choice(["card", "credit card", "card no.", "cc", "visa", "pan"])
    out.append(Sample("credit_card", "bare_keyword", f"{kw} {digits}", (digits, digits[:12], digits[4:])))
    digits = _luhn_complete("4", 16, rng)
    out.append(Sample("credit_card", "key_cardNumber", f"cardNumber={digits}", (digits, digits[4:]),
                      "cardNumber", digits))
    return out


def _ssns(rng):
    s1, s2 = ssn(rng), ssn(rng)
    return [Sample("ssn", "bare", f"SSN {s1}", (s1,)), Sample("ssn", "key", f"ssn={s2}", (s2,), "ssn", s2)]


def _emails(rng):
    n = rng.randint(10, 99)
    first = rng.choice(_FIRST)
    ascii_ = f"{rng.choice(['alice.smith', 'bob+logs', 'd.o-e_'])}{n}@{rng.choice(['example.com', 'mail.example.org'])}"
    local_na = f"{first}.müller{n}"
    na = f"{local_na}@example.com"
    idn_local = f"kim.lee{n}"
    idn = f"{idn_local}@exämple.de"
    pct_local = f"mrx.jones{n}"
    pct = f"{pct_local}%40example.com"
    esc_local = f"ana.silva{n}"
    esc = f"{esc_local}\\u0040example.com"
    return [
        Sample("email", "ascii", f"contact {ascii_}", (ascii_,)),
        Sample("email", "non_ascii_local", f"contact {na}", (na, first, local_na)),
        Sample("email", "non_ascii_domain", f"contact {idn}", (idn, idn_local + "@")),
        Sample("email", "percent_40", f"GET /unsubscribe?user={pct}", (pct, pct_local + "%40")),
        Sample("email", "json_u0040", f'body {{"contact": "{esc}"}}', (esc, esc_local + "\\u0040")),
    ]


def _ips(rng):
    v4 = f"{rng.choice([10, 172, 192, 83, 203])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    v6 = rng.choice([":".join(f"{rng.randint(1, 0xFFFF):x}" for _ in range(8)),
                     f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}",
                     f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}"])
    return [Sample("ipv4", "plain", f"client {v4} connected", (v4,)),
            Sample("ipv6", "plain", f"client {v6} connected", (v6,))]


def _jwts(rng):
    t = jwt(rng)
    sig = t.rsplit(".", 1)[1]
    return [Sample("jwt", "bare", f"token {t}", (t, sig))]


def _aws(rng):
    kid = aws_key(rng)
    sec = _rand(rng, _B64, 40)
    return [
        Sample("aws_key_id", "bare", f"using key {kid}", (kid,)),
        Sample("aws_secret_key", "assign", f"aws_secret_access_key={sec}", (sec, sec[20:]),
               "aws_secret_access_key", sec),
        Sample("aws_secret_key", "env", f"AWS_SECRET_ACCESS_KEY: {sec[::-1]}", (sec[::-1], sec[::-1][20:]),
               "AWS_SECRET_ACCESS_KEY", sec[::-1]),
    ]


def _github(rng):
    classic = "ghp_" + _rand(rng, _ALNUM, 36)
    fine = "github_pat_" + _rand(rng, _ALNUM, 22) + "_" + _rand(rng, _ALNUM, 59)
    return [Sample("github_token", "ghp", f"clone with {classic}", (classic, classic[4:])),
            Sample("github_token", "github_pat", f"clone with {fine}", (fine, fine[11:], fine[34:]))]


def _slack(rng):
    tok = f"xox{rng.choice('bpae')}-{rng.randint(10**10, 10**12)}-{rng.randint(10**10, 10**12)}-" + _rand(
        rng, _ALNUM, 24)
    path = f"T{_rand(rng, string.ascii_uppercase + string.digits, 9)}/B{_rand(rng, string.ascii_uppercase + string.digits, 9)}/{_rand(rng, _ALNUM, 24)}"
    hook = f"https://hooks.slack.com/services/{path}"
    return [Sample("slack_token", "xox", f"slack {tok}", (tok, tok[5:])),
            Sample("slack_webhook", "url", f"posting to {hook}", (path, path.rsplit("/", 1)[1]))]


def _providers(rng):
    stripe = "sk_live_" + _rand(rng, _ALNUM, 24)
    rstripe = "rk_live_" + _rand(rng, _ALNUM, 24)
    google = "AIza" + _rand(rng, _URLSAFE, 35)
    openai = "sk-" + _rand(rng, _ALNUM, 20) + "T3BlbkFJ" + _rand(rng, _ALNUM, 20)
    openai_proj = "sk-proj-" + _rand(rng, _URLSAFE, 100)
    anthropic = "sk-ant-api03-" + _rand(rng, _URLSAFE, 93) + "AA"
    gitlab = "glpat-" + _rand(rng, _URLSAFE, 20)
    sendgrid = "SG." + _rand(rng, _URLSAFE, 22) + "." + _rand(rng, _URLSAFE, 43)
    npm = "npm_" + _rand(rng, _ALNUM, 36)
    pypi = "pypi-AgEIcHlwaS5vcmc" + _rand(rng, _URLSAFE, 70)
    hf = "hf_" + _rand(rng, string.ascii_letters, 34)

    def s(cls, variant, tok, ctx, cut):
        return Sample(cls, variant, ctx.format(tok), (tok, tok[cut:]))

    return [
        s("stripe", "sk_live", stripe, "charge with {}", 8), s("stripe", "rk_live", rstripe, "restricted {}", 8),
        s("google_api_key", "aiza", google, "maps key {}", 4),
        s("openai", "sk_legacy", openai, "openai {}", 3), s("openai", "sk_proj", openai_proj, "openai {}", 8),
        s("anthropic", "api03", anthropic, "anthropic {}", 13),
        s("gitlab", "glpat", gitlab, "gitlab {}", 6), s("sendgrid", "sg", sendgrid, "mail via {}", 3),
        s("npm", "npm", npm, "publish with {}", 4), s("pypi", "pypi", pypi, "upload with {}", 5),
        s("huggingface", "hf", hf, "hub {}", 3),
    ]


def _azure_aws_urls(rng):
    acct_key = _rand(rng, _B64, 86) + "=="
    conn = (f"DefaultEndpointsProtocol=https;AccountName=acct{rng.randint(1, 99)};AccountKey={acct_key};"
            "EndpointSuffix=core.windows.net")
    sig = _rand(rng, _ALNUM, 30) + "%2B" + _rand(rng, _ALNUM, 10) + "%3D"
    sas = (f"https://acct.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&srt=o&sp=r"
           f"&se=2027-01-01T00:00:00Z&spr=https&sig={sig}")
    kid = aws_key(rng)
    amz = _rand(rng, _HEX, 64)
    presigned = (f"https://bucket.s3.amazonaws.com/report.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 f"&X-Amz-Credential={kid}%2F20270101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20270101T000000Z"
                 f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={amz}")
    qkey = _rand(rng, _ALNUM, 32)
    return [
        Sample("azure_account_key", "conn_string", f"storage {conn}", (acct_key, acct_key[40:])),
        Sample("azure_sas", "sig", f"download {sas}", (sig, sig[15:])),
        Sample("aws_presigned", "x_amz_signature", f"download {presigned}", (amz, amz[32:], kid)),
        Sample("url_key_param", "query", f"GET https://api.example.net/v1/geo?key={qkey}&q=paris", (qkey, qkey[16:])),
    ]


def _auth_headers(rng):
    user, pw = rng.choice(["svc", "admin", "deploy"]), _rand(rng, _ALNUM, 14)
    basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
    bearer = _rand(rng, _ALNUM + "-._", 36)
    bearer2 = _rand(rng, _ALNUM + "-._", 36)
    return [
        Sample("basic_auth", "bare", f"sent Basic {basic} upstream", (basic,)),
        Sample("basic_auth", "header", f"Authorization: Basic {basic[::-1]}", (basic[::-1],)),
        Sample("bearer", "header", f"Authorization: Bearer {bearer}", (bearer, bearer[18:])),
        Sample("bearer", "bare", f"retry with Bearer {bearer2}", (bearer2, bearer2[18:])),
    ]


def _keys(rng):
    out = []
    for kind in ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"):
        body = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(2, 4))]
        pem = f"-----BEGIN {kind}-----\n" + "\n".join(body) + f"\n-----END {kind}-----"
        out.append(Sample("private_key", kind.split()[0].lower(), pem, (body[0], body[-1])))
    body = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(3)]
    pgp = ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + "\n".join(body) + "\n=" + _rand(rng, _B64, 4)
           + "\n-----END PGP PRIVATE KEY BLOCK-----")
    out.append(Sample("pgp_private_key", "armored", pgp, (body[0], body[-1])))
    return out


def _passwords(rng):
    a, b, c = _rand(rng, _ALNUM, 4), _rand(rng, _ALNUM, 6), _rand(rng, _ALNUM, 6)
    punct = f"{a};{b}&{c}"
    words = rng.sample(_WORDS, 4)
    phrase = " ".join(words)
    head, tail = _rand(rng, _ALNUM, 4), _rand(rng, _ALNUM, 10)
    quoted = f'{head}"{tail}'
    plain = _rand(rng, _ALNUM + "!#$%*", 14)
    return [
        Sample("password", "punct", f"password={punct}", (punct, f";{b}&{c}", f"&{c}", c), "password", punct),
        Sample("password", "spaces", f"password: {phrase}", (phrase, " ".join(words[1:]), words[-1]),
               "password", phrase),
        Sample("password", "escaped_quote", f'password="{head}\\"{tail}"', (tail,), "password", quoted),
        Sample("password", "plain", f"passwd={plain}", (plain,), "passwd", plain),
        Sample("password", "json", f'{{"password": "{plain[::-1]}"}}', (plain[::-1],), "password", plain[::-1]),
    ]


_SECRET_KEYS = ("accessToken", "clientSecret", "x-api-key", "db.password", "DB_PASSWORD", "refreshToken",
                "new_password", "dbPassword", "apiKey", "authToken", "sessionToken", "privateKey")


def _secret_keys(rng):
    out = []
    for key in _SECRET_KEYS:
        v = _rand(rng, _ALNUM, rng.randint(20, 32))
        form = rng.choice(["{k}={v}", "{k}: {v}", '"{k}": "{v}"'])
        out.append(Sample("secret_key_name", key, form.format(k=key, v=v), (v, v[10:]), key, v))
    return out


def _structured(rng):
    pw = _rand(rng, _ALNUM, 12)
    basic = base64.b64encode(f"svc:{pw}".encode()).decode()
    apikey = _rand(rng, _ALNUM, 28)
    pairs = [["Authorization", f"Basic {basic}"], ["Accept", "*/*"]]
    pairs2 = [["Accept", "application/json"], ["X-Api-Key", apikey]]
    har_v = _rand(rng, _ALNUM, 16)
    har = [{"name": "user", "value": "bob"}, {"name": rng.choice(["password", "client_secret", "token"]),
                                              "value": har_v}]
    user = rng.choice(["svc", "admin", "app"])
    upw = _rand(rng, _ALNUM, 14)
    url = rng.choice([f"postgres://{user}:{upw}@db.internal:5432/app", f"https://{user}:{upw}@git.example.net/r.git",
                      f"redis://:{upw}@cache.internal:6379/0"])
    return [
        Sample("header_pairs", "authorization", json.dumps(pairs), (basic,), "headers", pairs),
        Sample("header_pairs", "x_api_key", json.dumps(pairs2), (apikey, apikey[14:]), "headers", pairs2),
        Sample("har_pair", "name_value", json.dumps(har), (har_v, har_v[8:]), "params", har),
        Sample("url_credentials", "userinfo", f"connect {url}", (upw,)),
    ]


SECRET_GENERATORS = (_cards, _ssns, _emails, _ips, _jwts, _aws, _github, _slack, _providers, _azure_aws_urls,
                     _auth_headers, _keys, _passwords, _secret_keys, _structured)


def _negatives(rng):
    """Look-alikes that must come out byte for byte as they went in."""
    def luhn_id(length: int, passes: bool) -> str:
        # 7, 8 and 9 start no card issuer's range: a run of them is an id, whatever its checksum
        body = _luhn_complete(rng.choice("789"), length, rng)
        if passes:
            return body
        return body[:-1] + str((int(body[-1]) + rng.randint(1, 9)) % 10)

    order = _luhn_complete("4", 16, rng)
    bad = order[:-1] + str((int(order[-1]) + rng.randint(1, 9)) % 10)
    ids_pass = [luhn_id(n, True) for n in (12, 14, 16, 19)]
    ids_fail = [luhn_id(n, False) for n in (13, 16, 18)]
    b64 = base64.b64encode(rng.choice([b"hello world, this is a thumbnail caption",
                                       b"the quick brown fox jumps over the lazy dog"])).decode()
    sha = rng.randbytes(20).hex()
    N = Sample
    out = [
        N("neg:uuid", "v4", f"request {uuid.UUID(int=rng.getrandbits(128), version=4)} done"),
        N("neg:git_sha", "full", f"deployed commit {sha}"),
        N("neg:git_sha", "short", f"at {sha[:12]} by dev"),
        N("neg:sha256", "hex", f"sha256 {rng.randbytes(32).hex()} verified"),
        N("neg:version", "semver", f"version {rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)} deployed"),
        N("neg:version", "v_prefix", f"upgraded to v{rng.randint(10, 19)}.0.{rng.randint(1, 9)}"),
        N("neg:timestamp", "iso", f"at 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                                  f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
                                  f"{rng.randint(0, 999999):06d}Z"),
        N("neg:timestamp", "offset", f"since 2026-03-0{rng.randint(1, 9)} 12:00:00+02:00"),
        N("neg:duration", "units", f"took {rng.randint(1, 999)}ms (p99 {rng.uniform(0, 5):.3f}s, 1h30m timeout)"),
        N("neg:numeric_id", "luhn_passing", "ids " + " ".join(ids_pass)),
        N("neg:numeric_id", "luhn_failing", "ids " + " ".join(ids_fail)),
        N("neg:numeric_id", "epoch_ms_ns", f"ts {rng.randint(1_600_000_000_000, 1_900_000_000_000)} "
                                           f"ns {rng.randint(1_600_000_000_000_000_000, 1_900_000_000_000_000_000)}"),
        N("neg:numeric_id", "key_id", f"order_id={ids_pass[2]}", (), "order_id", ids_pass[2]),
        N("neg:order_number", "luhn_invalid_16", f"order number {bad} shipped"),
        N("neg:order_number", "prefixed", f"order ORD-2026-{rng.randint(0, 999999):06d} shipped"),
        N("neg:path", "unix", f"open /var/lib/app/{rng.randint(1, 99)}/data.db failed"),
        N("neg:path", "pwd", "pwd=/srv/app", (), "pwd", "/srv/app"),
        N("neg:benign_value", "secret_false", "secret: false", (), "secret", False),
        N("neg:benign_value", "token_512", "token: 512", (), "token", 512),
        N("neg:benign_value", "max_tokens", "max_tokens=100", (), "max_tokens", 100),
        N("neg:benign_value", "token_count", "token_count=5", (), "token_count", 5),
        N("neg:word", "passport", "passport check passed", (), "passport_country", "FR"),
        N("neg:word", "bypass", "bypass=true", (), "bypass", "true"),
        N("neg:word", "compass", "compass heading 270", (), "compass", "NNE"),
        N("neg:word", "prose", "password reset requested; token expired, refreshing; the secret sauce is patience"),
        N("neg:base64", "caption", f"thumbnail={b64}", (), "thumbnail", b64),
        N("neg:http", "request", f"GET /api/v1/items/{rng.randint(1, 10**6)}?page={rng.randint(1, 50)} 200"),
        N("neg:hostname", "pod", f"pod web-{_rand(rng, '0123456789abcdef', 9)}-{_rand(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)} ready"),
    ]
    return out


_PRE = ("login failed:", "upstream said", "handled", "config loaded,", "retrying after")
_POST = ("(attempt 2)", "for tenant acme", "ok", "- see runbook", "in eu-west-1")


def _traceback(text: str, rng: random.Random) -> str:
    n = rng.randint(10, 400)
    return ("Traceback (most recent call last):\n"
            f'  File "/srv/app/handlers.py", line {n}, in handle\n'
            "    client.call(payload)\n"
            f'  File "/srv/app/client.py", line {n + 17}, in call\n'
            "    raise UpstreamError(f\"rejected: {payload}\")\n"
            f"app.errors.UpstreamError: rejected: {text}")


def place(sample: Sample, position: str, rng: random.Random) -> Case:
    """`sample` in one position of a record."""
    pre, post = rng.choice(_PRE), rng.choice(_POST)
    keyed = sample.key is not None
    one = {sample.key: sample.value} if keyed else {"note": sample.text}
    c = dict(cls=sample.cls, variant=sample.variant, position=position, secrets=sample.secrets)
    if position == "text":
        return Case(msg=f"{pre} {sample.text} {post}", **c)
    if position == "args":
        return Case(msg=f"{pre} %s {post}", args=(sample.text,), **c)
    if position == "field":
        return Case(msg=f"{pre} {post}", fields={"status": 200, **one}, **c)
    if position == "field_deep":
        return Case(msg=f"{pre} {post}", fields={"ctx": {"events": [{"seq": 1}, one]}}, **c)
    if position == "json_text":
        return Case(msg=f"{pre} {json.dumps(one, ensure_ascii=False)}", **c)
    if position == "traceback":
        return Case(msg="request failed", fields={"exc_info": _traceback(sample.text, rng)}, **c)
    raise ValueError(position)


def samples(seed: int = 13, rounds: int = 2) -> list[Sample]:
    """`rounds` fresh samples of every variant of every class, secrets first, then the look-alikes."""
    rng = random.Random(seed)
    out = [s for _ in range(rounds) for gen in SECRET_GENERATORS for s in gen(rng)]
    out += [s for _ in range(rounds) for s in _negatives(rng)]
    return out


def labeled(seed: int = 13, rounds: int = 2) -> list[Case]:
    """The labeled corpus: every sample in every position.  Deterministic for a seed."""
    rng = random.Random(seed + 1)
    return [place(s, pos, rng) for s in samples(seed, rounds) for pos in POSITIONS]


def class_counts(cases: list[Case]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.cls] = counts.get(c.cls, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (kv[0].startswith("neg:"), kv[0])))
