"""A labeled corpus of log lines for the sanitizer: secrets and near-misses.

`secret_lines()` gives lines that each hide one secret of a known kind, in
varied formats and positions, with the exact secret text; `clean_lines()`
gives lines full of things that look like secrets and are not (UUIDs, hex
digests, timestamps, versions, durations, Luhn-invalid 16-digit order
numbers, ...).  `realistic()` and `dense()` build the perf corpora.
Deterministic for a given seed.
"""
from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass

_B32 = string.ascii_uppercase + "234567"
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Secret:
    rule: str
    line: str
    secret: str  # must not appear in the sanitized line


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return body + str((10 - total % 10) % 10)


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
