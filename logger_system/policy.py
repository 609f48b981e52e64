"""The sanitizer policy: which rules run, what they do, which fields are secret.

Loaded from TOML, JSON or YAML (by extension) and checked completely at
start: an unknown key, an invalid pattern or an unknown action is a
ConfigError that names it.  Policy rules use RE2 patterns, which run in time
linear in the input, so no pattern can stall the writer (no backreferences
or lookaround: RE2 refuses them, and the error says so).

Files are read bounded and every failure to read or parse one is a
ConfigError.  Messages never show a value whole (see describe): a YAML alias
makes a value of millions of items out of a few bytes.
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, describe, describe_keys, shown_path

BUILTIN_RULES = (
    "credit_card", "ssn", "email", "ipv4", "ipv6", "jwt", "aws_key", "github_token",
    "slack_token", "private_key", "password", "bearer", "url_credentials",
    # provider token formats (native/tokens.c), in the order of their ids in sanitize.h
    "stripe_key", "google_api_key", "google_oauth", "openai_key", "anthropic_key", "slack_webhook",
    "gitlab_token", "sendgrid_key", "npm_token", "pypi_token", "huggingface_token",
    "digitalocean_token", "shopify_token", "twilio_key", "mailgun_key", "square_token",
    "databricks_token", "atlassian_token", "postman_key", "doppler_token", "telegram_bot_token",
    "discord_token", "azure_client_secret", "heroku_key", "age_secret_key", "hashicorp_token",
)
FIELD_RULE = "field"  # the name in replacements of values of redact_fields
ACTIONS = ("redact", "mask", "hash", "drop")
# Field names whose values are replaced whole, whatever they hold (rule "field").
# Secret names (password, token, api_key, clientSecret, Authorization, ...) need
# no entry: the password rule judges every field name at any depth like a key in
# text, and leaves booleans, numbers and paths alone (see native/sanitize.c).
# These are names whose values are personal data of any shape.
DEFAULT_REDACT_FIELDS = (
    "session", "card_number", "credit_card", "cvv", "cvc", "ssn",
)
_TOP_KEYS = {"enabled", "builtin", "actions", "redact_fields", "rules", "hash_key_file"}
_RULE_KEYS = {"name", "pattern", "action"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
RULE_COUNTERS = 64  # the ring's hit counters (LSR_RULES)
# policy rules that still get a counter each, beside the built-ins, "field" and "policy:whole_value"
MAX_RULES = RULE_COUNTERS - len(BUILTIN_RULES) - 2
MAX_FILE_BYTES = 1 << 20  # a config or policy file; more is a mistake (or /dev/zero)
HASH_KEY_BYTES = (32, 64 * 1024)  # the least and the most a hash_key_file may hold
_FORMATS = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    action: str = "redact"


@dataclass(frozen=True)
class Policy:
    enabled: bool = True
    builtin: tuple[str, ...] = BUILTIN_RULES
    actions: dict[str, str] = field(default_factory=dict)  # builtin rule (or "field") -> action
    redact_fields: tuple[str, ...] = DEFAULT_REDACT_FIELDS
    rules: tuple[Rule, ...] = ()
    hash_key: bytes | None = field(default=None, repr=False)

    def action_of(self, rule: str) -> str:
        return self.actions.get(rule, "redact")


def field_key(name: str) -> bytes:
    """A redact_fields name as the scanner compares it: UTF-8, ASCII letters in lower case,
    without '-', '_', '.' and spaces ("clientSecret", "client_secret" and "Client-Secret"
    are one name).  The scanner spells each field name the same way before comparing."""
    return bytes(c for c in name.encode("utf-8").lower() if c not in b"-_. ")


def read_file(path: Path, what: str) -> bytes:
    """The bytes of a config or policy file (`what` names it); ConfigError if it cannot be read.

    Reads at most MAX_FILE_BYTES: a device or a runaway file is refused, not read to the end.
    """
    shown = shown_path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {shown} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL or an unencodable character in the path
        raise ConfigError(f"{what} {describe(str(path))} is not a usable path") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} {shown} is larger than {MAX_FILE_BYTES >> 20} MiB; "
                          "is it the right file?")
    return raw


def decode(raw: bytes, suffix: str, what: str) -> Any:
    """TOML, JSON or YAML (by suffix, e.g. ".toml") parsed; ConfigError "<what> is not valid TOML: ..."."""
    kind = _FORMATS[suffix]
    try:
        if kind == "TOML":
            import tomllib

            return tomllib.loads(raw.decode("utf-8"))
        if kind == "JSON":
            return json.loads(raw)
        import yaml

        return yaml.safe_load(raw)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not valid {kind}: it is not UTF-8 text "
                          f"({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{what} is not valid {kind}: it is nested too deeply") from None
    except Exception as exc:  # each parser has its own error type (and int() a digit limit): all mean "not valid"
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{what} is not valid {kind}: {detail}") from None


def compile_pattern(pattern: str, where: str, multiline: bool = False):
    """An RE2 pattern over bytes; ConfigError naming `where` if RE2 refuses it.

    multiline: ^ and $ also match at line starts and ends (the sanitizer runs a
    pattern over many messages at once, one per line).
    """
    import re2

    options = re2.Options()
    options.log_errors = False
    options.posix_syntax = False
    try:
        raw = pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: the pattern {describe(pattern)} is not valid UTF-8 text") from None
    try:
        return re2.compile(b"(?m)" + raw if multiline else raw, options)
    except re2.error as exc:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ConfigError(f"{where}: invalid pattern {describe(pattern)}: {msg} "
                          "(patterns are RE2: no backreferences or lookaround)") from None


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(f"policy file {shown_path(path)}: unknown extension {describe(suffix)}; "
                          "use .toml, .json, .yaml or .yml")
    return decode(read_file(path, "policy file"), suffix, f"policy file {shown_path(path)}")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _action(value: Any, where: str) -> str:
    if value not in ACTIONS:
        raise ConfigError(f"{where}: unknown action {describe(value)}; use one of {', '.join(ACTIONS)}")
    return value


def parse(data: Any, where: str = "policy") -> Policy:
    """A Policy from already-parsed data; every key checked."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a table/object")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {describe_keys(unknown)} "
                          f"(known: {', '.join(sorted(_TOP_KEYS))})")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: enabled must be true or false")
    builtin = _str_list(data.get("builtin", list(BUILTIN_RULES)), f"{where}: builtin")
    for name in builtin:
        if name not in BUILTIN_RULES:
            raise ConfigError(f"{where}: builtin: unknown rule {describe(name)} "
                              f"(built-in rules: {', '.join(BUILTIN_RULES)})")
    actions_in = data.get("actions", {})
    if not isinstance(actions_in, dict):
        raise ConfigError(f"{where}: actions must be a table of rule = action")
    actions = {}
    for rule, act in actions_in.items():
        if rule not in BUILTIN_RULES and rule != FIELD_RULE:
            raise ConfigError(f"{where}: actions: unknown rule {describe(rule)}")
        actions[rule] = _action(act, f"{where}: actions.{rule}")
    fields = []
    # each checked before it is copied: many aliases of one long string must not make many copies
    for f in _str_list(data.get("redact_fields", list(DEFAULT_REDACT_FIELDS)), f"{where}: redact_fields"):
        try:
            size = len(f.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError(f"{where}: redact_fields: {describe(f)} is not valid UTF-8 text") from None
        if not 0 < size < 256:
            raise ConfigError(f"{where}: redact_fields: {describe(f)} must be 1 to 255 bytes")
        fields.append(f.lower())
    rules_in = data.get("rules", [])
    if not isinstance(rules_in, list):
        raise ConfigError(f"{where}: rules must be a list of tables ([[rules]])")
    if len(rules_in) > MAX_RULES:
        raise ConfigError(f"{where}: at most {MAX_RULES} rules")
    rules = []
    seen = set(BUILTIN_RULES) | {FIELD_RULE}
    for i, r in enumerate(rules_in, 1):
        at = f"{where}: rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{at} must be a table with name, pattern and action")
        unknown = set(r) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {describe_keys(unknown)} "
                              f"(known: name, pattern, action)")
        name, pattern = r.get("name"), r.get("pattern")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{at}: name {describe(name)} must be 1-40 lowercase letters, digits or _")
        if name in seen:
            raise ConfigError(f"{at}: rule name {describe(name)} is already used")
        seen.add(name)
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{at} ({name}): pattern must be a non-empty string")
        compile_pattern(pattern, f"{at} ({name})")
        rules.append(Rule(name, pattern, _action(r.get("action", "redact"), f"{at} ({name})")))
    hash_key = None
    key_file = data.get("hash_key_file")
    if key_file is not None:
        if not isinstance(key_file, str):
            raise ConfigError(f"{where}: hash_key_file must be a path")
        hash_key = read_hash_key(Path(key_file))
    uses_hash = any(a == "hash" for a in actions.values()) or any(r.action == "hash" for r in rules)
    if uses_hash and hash_key is None:
        raise ConfigError(f"{where}: the hash action needs hash_key_file (a file of at least 32 random "
                          "bytes, mode 0600; e.g. `head -c 32 /dev/urandom > hash.key && chmod 600 hash.key`)")
    return Policy(enabled, builtin, actions, tuple(fields), tuple(rules), hash_key)


def read_hash_key(path: Path) -> bytes:
    """The hash action's key: a regular file of this user, mode 0600, of 32 bytes to 64 KiB.

    Kind, mode, owner and size are checked on the open descriptor before a
    byte is read (/dev/zero, mode 0666, never ends), and then at most the
    largest key is read.  O_NONBLOCK keeps a FIFO from blocking the open; it
    is then refused as not a regular file.  A symlink is followed: the file
    it leads to is what is checked.
    """
    least, most = HASH_KEY_BYTES
    shown = shown_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"hash_key_file {shown}: {exc.strerror or exc}") from None
    except ValueError:  # NUL bytes or unencodable characters in the path
        raise ConfigError(f"hash_key_file {describe(str(path))} is not a usable path") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"hash_key_file {shown} is not a regular file; use a file of at least "
                              f"{least} random bytes, mode 0600")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"hash_key_file {shown} is readable by group or others; run `chmod 600 {shown}`")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"hash_key_file {shown} belongs to another user")
        if st.st_size > most:
            raise ConfigError(f"hash_key_file {shown} holds {st.st_size} bytes; a hash key is "
                              f"{least} to {most} random bytes")
        chunks: list[bytes] = []
        left = most + 1  # one more than allowed: a file that grew since fstat is seen as too long
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ConfigError(f"hash_key_file {shown}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not least <= len(data) <= most:
        raise ConfigError(f"hash_key_file {shown} holds {len(data)} bytes; use {least} to {most} random bytes")
    return data


def load(path: Path | str) -> Policy:
    path = Path(path)
    return parse(_read(path), shown_path(path))
