"""Provider tokens shaped as each provider issues them: random bodies from the caller's
random.Random, valid checksums where the format has one.  The corpus (perf/corpus.py) and
the token tests (tests/test_sanitize_tokens.py) both draw from GENERATORS: rule name ->
generators, each a function of an rng."""
from __future__ import annotations

import base64
import random
import string
import zlib

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
LHEX = "0123456789abcdef"
UPALNUM = string.ascii_uppercase + string.digits
LALNUM = string.ascii_lowercase + string.digits
AZURE = ALNUM + "_~.-"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def rnd(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(k))


def ends_alnum(rng: random.Random, alphabet: str, k: int) -> str:
    """k characters whose last is a letter or digit (bodies whose trailing '-' or '.' would
    read as punctuation after the token)."""
    return rnd(rng, alphabet, k - 1) + rng.choice(ALNUM)


def base62(v: int, width: int = 6) -> str:
    out = ""
    while v:
        v, r = divmod(v, 62)
        out = B62[r] + out
    return out.rjust(width, "0")


def npm_token(rng: random.Random) -> str:
    body = rnd(rng, B62, 30)
    return "npm_" + body + base62(zlib.crc32(body.encode()))


def bech32_polymod(values: list[int]) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for g in range(5):
            if top >> g & 1:
                chk ^= gen[g]
    return chk


def age_key(rng: random.Random) -> str:
    hrp = "age-secret-key"
    raw = rng.randbytes(32)
    bits = int.from_bytes(raw, "big") << 4  # 256 bits to 52 groups of 5 (260 bits)
    data = [(bits >> (5 * (51 - k))) & 31 for k in range(52)]
    expand = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = bech32_polymod(expand + data + [0] * 6) ^ 1
    chk = [(pm >> 5 * (5 - k)) & 31 for k in range(6)]
    return ("AGE-SECRET-KEY-1" + "".join(BECH32[v] for v in data + chk)).upper()


def discord_token(rng: random.Random, digits: int = 19) -> str:
    bot_id = str(rng.randint(10 ** (digits - 1), 10 ** digits - 1))
    first = base64.b64encode(bot_id.encode()).decode().rstrip("=")
    return f"{first}.{rnd(rng, B64URL, 6)}.{rnd(rng, B64URL, rng.choice([27, 38]))}"


def azure_secret(rng: random.Random) -> str:
    return rnd(rng, ALNUM, 3) + rng.choice(string.digits) + "Q~" + ends_alnum(rng, AZURE, 34)


def whsec_b64(rng: random.Random) -> str:
    return "whsec_" + base64.b64encode(rng.randbytes(24)).decode()


GENERATORS = {
    "stripe_key": [
        lambda g: "sk_live_" + rnd(g, ALNUM, 99),
        lambda g: "sk_live_" + rnd(g, ALNUM, 24),
        lambda g: "rk_live_" + rnd(g, ALNUM, 99),
        lambda g: "sk_test_" + rnd(g, ALNUM, 24),
        lambda g: "rk_test_" + rnd(g, ALNUM, 99),
        lambda g: "whsec_" + rnd(g, ALNUM, 32),
        whsec_b64,
    ],
    "google_api_key": [lambda g: "AIza" + rnd(g, B64URL, 35)],
    "google_oauth": [
        lambda g: "GOCSPX-" + rnd(g, B64URL, 28),
        lambda g: "ya29.a0" + rnd(g, B64URL, 160),
        lambda g: "1//0" + rnd(g, B64URL, 99),
    ],
    "openai_key": [
        lambda g: "sk-proj-" + rnd(g, B64URL, 74) + "T3BlbkFJ" + rnd(g, B64URL, 74),
        lambda g: "sk-svcacct-" + rnd(g, B64URL, 156),
        lambda g: "sk-admin-" + rnd(g, B64URL, 140),
        lambda g: "sk-None-" + rnd(g, B64URL, 48),
        lambda g: "sk-" + rnd(g, ALNUM, 20) + "T3BlbkFJ" + rnd(g, ALNUM, 20),
        lambda g: "sk-" + rnd(g, ALNUM, 48),
        lambda g: "sk-" + rnd(g, LHEX, 32),
    ],
    "anthropic_key": [
        lambda g: "sk-ant-api03-" + rnd(g, B64URL, 93) + "AA",
        lambda g: "sk-ant-admin01-" + rnd(g, B64URL, 93) + "AA",
        lambda g: "sk-ant-oat01-" + rnd(g, B64URL, 93) + "AA",
    ],
    "slack_webhook": [
        lambda g: (f"https://hooks.slack.com/services/T{rnd(g, UPALNUM, 10)}/B{rnd(g, UPALNUM, 10)}/"
                   + rnd(g, ALNUM, 24)),
        lambda g: f"https://hooks.slack.com/services/T{rnd(g, UPALNUM, 8)}/B{rnd(g, UPALNUM, 8)}/"
                  + rnd(g, ALNUM, 24),
        lambda g: (f"https://hooks.slack.com/workflows/T{rnd(g, UPALNUM, 10)}/A{rnd(g, UPALNUM, 10)}/"
                   f"{rnd(g, string.digits, 18)}/{rnd(g, ALNUM, 24)}"),
    ],
    "slack_token": [
        lambda g: f"xapp-1-A{rnd(g, UPALNUM, 10)}-{rnd(g, string.digits, 13)}-{rnd(g, LHEX, 64)}",
        lambda g: f"xoxe.xoxp-1-{rnd(g, ALNUM, 150)}",
        lambda g: f"xoxe-1-{rnd(g, UPALNUM, 140)}",
    ],
    "gitlab_token": [
        lambda g: "glpat-" + ends_alnum(g, B64URL, 20),
        lambda g: "glpat-" + rnd(g, B64URL, 27) + ".01." + rnd(g, LALNUM, 9),
        lambda g: "gldt-" + ends_alnum(g, B64URL, 20),
        lambda g: "glrt-" + ends_alnum(g, B64URL, 20),
        lambda g: "glptt-" + rnd(g, LHEX, 40),
        lambda g: "glcbt-64_" + ends_alnum(g, B64URL, 20),
        lambda g: "gloas-" + rnd(g, LHEX, 64),
        lambda g: "GR1348941" + rnd(g, B64URL, 20),
    ],
    "sendgrid_key": [lambda g: f"SG.{rnd(g, B64URL, 22)}.{rnd(g, B64URL, 43)}"],
    "npm_token": [npm_token],
    "pypi_token": [
        lambda g: "pypi-AgEIcHlwaS5vcmc" + rnd(g, B64URL, 160),
        lambda g: "pypi-AgENdGVzdC5weXBpLm9yZw" + rnd(g, B64URL, 160),
    ],
    "huggingface_token": [
        lambda g: "hf_" + rnd(g, string.ascii_letters, 34),
        lambda g: "api_org_" + rnd(g, string.ascii_letters, 34),
    ],
    "digitalocean_token": [lambda g, p=p: p + rnd(g, LHEX, 64) for p in ("dop_v1_", "doo_v1_", "dor_v1_")],
    "shopify_token": [lambda g, p=p: p + rnd(g, LHEX, 32) for p in ("shpat_", "shpss_", "shpca_", "shppa_")],
    "twilio_key": [lambda g: "SK" + rnd(g, LHEX, 32)],
    "mailgun_key": [lambda g: "key-" + rnd(g, LALNUM, 32)],
    "square_token": [
        lambda g: "sq0atp-" + rnd(g, B64URL, 22),
        lambda g: "sq0csp-" + rnd(g, B64URL, 43),
        lambda g: "EAAA" + rnd(g, B64URL, 60),
    ],
    "databricks_token": [
        lambda g: "dapi" + rnd(g, LHEX, 32),
        lambda g: "dapi" + rnd(g, LHEX, 32) + "-2",
    ],
    "atlassian_token": [lambda g: "ATATT3" + rnd(g, B64URL, 177) + "=" + rnd(g, "0123456789ABCDEF", 8)],
    "postman_key": [lambda g: f"PMAK-{rnd(g, LHEX, 24)}-{rnd(g, LHEX, 34)}"],
    "doppler_token": [
        lambda g: "dp.pt." + rnd(g, ALNUM, 43),
        lambda g: "dp.st." + rnd(g, ALNUM, 43),
        lambda g: "dp.st.prd." + rnd(g, ALNUM, 40),
        lambda g: "dp.sa." + rnd(g, ALNUM, 43),
    ],
    "telegram_bot_token": [
        lambda g: f"{g.randint(10 ** 7, 10 ** 10 - 1)}:AA{rnd(g, B64URL, 33)}",
    ],
    "discord_token": [discord_token, lambda g: discord_token(g, 18), lambda g: discord_token(g, 20)],
    "azure_client_secret": [azure_secret],
    "heroku_key": [lambda g: "HRKU-AA" + rnd(g, B64URL, 58)],
    "age_secret_key": [age_key],
    "hashicorp_token": [
        lambda g: "hvs." + rnd(g, B64URL, 90),
        lambda g: "hvb." + rnd(g, B64URL, 138),
        lambda g: "hvr." + rnd(g, B64URL, 24),
        lambda g: rnd(g, ALNUM, 14) + ".atlasv1." + rnd(g, B64URL, 67),
    ],
}
