"""The sanitizer policy: which rules run, what they do, which fields are secret.

Loaded from TOML, JSON or YAML (by extension) and checked completely at
start: an unknown key, an invalid pattern or an unknown action is a
ConfigError that names it.  Policy rules use RE2 patterns, which run in time
linear in the input, so no pattern can stall the writer (no backreferences
or lookaround: RE2 refuses them, and the error says so).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

BUILTIN_RULES = (
    "credit_card", "ssn", "email", "ipv4", "ipv6", "jwt", "aws_key", "github_token",
    "slack_token", "private_key", "password", "bearer", "url_credentials",
)
FIELD_RULE = "field"  # the name in replacements of values of redact_fields
ACTIONS = ("redact", "mask", "hash", "drop")
DEFAULT_REDACT_FIELDS = (
    "password", "passwd", "pwd", "pass", "passphrase", "secret", "client_secret", "token",
    "access_token", "refresh_token", "id_token", "auth_token", "api_key", "apikey", "api-key",
    "x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie", "session",
    "sessionid", "session_id", "private_key", "secret_key", "access_key", "credentials",
    "card_number", "credit_card", "cvv", "ssn",
)
_TOP_KEYS = {"enabled", "builtin", "actions", "redact_fields", "rules", "hash_key_file"}
_RULE_KEYS = {"name", "pattern", "action"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_RULES = 48  # with the built-ins, they fit the ring's 64 rule counters


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
        raise ConfigError(f"{where}: the pattern {pattern!r} is not valid UTF-8 text") from None
    try:
        return re2.compile(b"(?m)" + raw if multiline else raw, options)
    except re2.error as exc:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ConfigError(f"{where}: invalid pattern {pattern!r}: {msg} "
                          "(patterns are RE2: no backreferences or lookaround)") from None


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(raw.decode("utf-8"))
        if suffix == ".json":
            return json.loads(raw)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(raw)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"policy file {path} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except Exception as exc:  # each parser has its own error type; all mean "not valid"
        detail = " ".join(str(exc).split())
        raise ConfigError(f"policy file {path} is not valid {suffix[1:].upper()}: {detail}") from None
    raise ConfigError(f"policy file {path}: unknown extension {suffix!r}; use .toml, .json, .yaml or .yml")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _action(value: Any, where: str) -> str:
    if value not in ACTIONS:
        raise ConfigError(f"{where}: unknown action {value!r}; use one of {', '.join(ACTIONS)}")
    return value


def parse(data: Any, where: str = "policy") -> Policy:
    """A Policy from already-parsed data; every key checked."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a table/object")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(known: {', '.join(sorted(_TOP_KEYS))})")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: enabled must be true or false")
    builtin = _str_list(data.get("builtin", list(BUILTIN_RULES)), f"{where}: builtin")
    for name in builtin:
        if name not in BUILTIN_RULES:
            raise ConfigError(f"{where}: builtin: unknown rule {name!r} (built-in rules: {', '.join(BUILTIN_RULES)})")
    actions_in = data.get("actions", {})
    if not isinstance(actions_in, dict):
        raise ConfigError(f"{where}: actions must be a table of rule = action")
    actions = {}
    for rule, act in actions_in.items():
        if rule not in BUILTIN_RULES and rule != FIELD_RULE:
            raise ConfigError(f"{where}: actions: unknown rule {rule!r}")
        actions[rule] = _action(act, f"{where}: actions.{rule}")
    fields = tuple(f.lower() for f in _str_list(data.get("redact_fields", list(DEFAULT_REDACT_FIELDS)),
                                                f"{where}: redact_fields"))
    for f in fields:
        try:
            size = len(f.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError(f"{where}: redact_fields: {f!r} is not valid UTF-8 text") from None
        if not 0 < size < 256:
            raise ConfigError(f"{where}: redact_fields: {f!r} must be 1 to 255 bytes")
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
            raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                              f"(known: name, pattern, action)")
        name, pattern = r.get("name"), r.get("pattern")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{at}: name {name!r} must be 1-40 lowercase letters, digits or _")
        if name in seen:
            raise ConfigError(f"{at}: rule name {name!r} is already used")
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
    return Policy(enabled, builtin, actions, fields, tuple(rules), hash_key)


def read_hash_key(path: Path) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"hash_key_file {path}: {exc.strerror}") from None
    except (ValueError, UnicodeError):  # NUL bytes or unencodable characters in the path
        raise ConfigError(f"hash_key_file {str(path)!r} is not a usable path") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"hash_key_file {path} is readable by group or others; run `chmod 600 {path}`")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"hash_key_file {path} belongs to another user")
    if len(data) < 32:
        raise ConfigError(f"hash_key_file {path} holds {len(data)} bytes; use at least 32 random bytes")
    return data


def load(path: Path | str) -> Policy:
    path = Path(path)
    return parse(_read(path), str(path))
