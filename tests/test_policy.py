"""Sanitizer policy files: TOML, JSON and YAML load to the same Policy; every mistake is a ConfigError
that names what is wrong, never a traceback."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logger_system.errors import ConfigError
from logger_system.pipeline.sanitize import Sanitize
from logger_system.policy import BUILTIN_RULES, DEFAULT_REDACT_FIELDS, MAX_RULES, Policy, Rule, load


def key_file(directory: Path, name: str = "hash.key", size: int = 32, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    path.chmod(mode)
    return path


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_text(directory: Path, ext: str, text: str | bytes) -> Policy:
    return load(write(directory, f"policy{ext}", text))


# ---------------------------------------------------------------------------
# equivalent files, equal policies


def full_policy_data(key: Path) -> dict:
    return {
        "enabled": True,
        "builtin": ["credit_card", "email", "ipv4", "private_key", "password"],
        "actions": {"email": "hash", "credit_card": "mask", "ipv4": "drop", "field": "redact"},
        "redact_fields": ["Password", "X-Token", "session_id"],
        "rules": [
            {"name": "ticket", "pattern": "TICKET-[0-9]{6}", "action": "redact"},
            {"name": "acct", "pattern": "ACCT[0-9]{8}", "action": "hash"},
            {"name": "quoted", "pattern": "say \"[a-z]+\" \\d+"},
        ],
        "hash_key_file": str(key),
    }


FULL_TOML = '''
enabled = true
builtin = ["credit_card", "email", "ipv4", "private_key", "password"]
redact_fields = ["Password", "X-Token", "session_id"]
hash_key_file = "{key}"

[actions]
email = "hash"
credit_card = "mask"
ipv4 = "drop"
field = "redact"

[[rules]]
name = "ticket"
pattern = 'TICKET-[0-9]{{6}}'
action = "redact"

[[rules]]
name = "acct"
pattern = "ACCT[0-9]{{8}}"
action = "hash"

[[rules]]
name = "quoted"
pattern = 'say "[a-z]+" \\d+'
'''

FULL_YAML = '''
enabled: true
builtin: [credit_card, email, ipv4, private_key, password]
actions:
  email: hash
  credit_card: mask
  ipv4: drop
  field: redact
redact_fields:
  - Password
  - X-Token
  - session_id
rules:
  - name: ticket
    pattern: 'TICKET-[0-9]{{6}}'
    action: redact
  - {{name: acct, pattern: "ACCT[0-9]{{8}}", action: hash}}
  - name: quoted
    pattern: 'say "[a-z]+" \\d+'
hash_key_file: {key}
'''


def test_toml_json_yaml_and_yml_give_equal_policies(tmp_path):
    key = key_file(tmp_path)
    data = full_policy_data(key)
    policies = {
        ".toml": load_text(tmp_path, ".toml", FULL_TOML.format(key=key)),
        ".json": load_text(tmp_path, ".json", json.dumps(data, indent=2)),
        ".yaml": load_text(tmp_path, ".yaml", FULL_YAML.format(key=key)),
        ".yml": load_text(tmp_path, ".yml", yaml.safe_dump(data)),
        ".TOML": load_text(tmp_path, ".TOML", FULL_TOML.format(key=key)),
    }
    first = policies[".toml"]
    for ext, p in policies.items():
        assert p == first, ext
        assert p.hash_key == key.read_bytes(), ext
    assert first.builtin == ("credit_card", "email", "ipv4", "private_key", "password")
    assert first.actions == {"email": "hash", "credit_card": "mask", "ipv4": "drop", "field": "redact"}
    assert first.redact_fields == ("password", "x-token", "session_id")  # lowercased
    assert first.rules == (Rule("ticket", "TICKET-[0-9]{6}", "redact"), Rule("acct", "ACCT[0-9]{8}", "hash"),
                           Rule("quoted", 'say "[a-z]+" \\d+', "redact"))
    assert first.action_of("email") == "hash" and first.action_of("ssn") == "redact"
    Sanitize(first)  # a loaded policy is one the writer's stage accepts


@pytest.mark.parametrize("ext,text", [(".toml", ""), (".toml", "# nothing\n"), (".json", "{}"),
                                      (".yaml", ""), (".yml", "{}\n"), (".yaml", "# only a comment\n")])
def test_empty_policy_is_the_default(tmp_path, ext, text):
    p = load_text(tmp_path, ext, text)
    assert p == Policy()
    assert p.enabled and p.builtin == BUILTIN_RULES and p.redact_fields == DEFAULT_REDACT_FIELDS
    assert p.rules == () and p.hash_key is None


def test_partial_policy_keeps_the_other_defaults(tmp_path):
    p = load_text(tmp_path, ".toml", 'redact_fields = []\n[actions]\nssn = "drop"\n')
    assert p.builtin == BUILTIN_RULES and p.redact_fields == () and p.actions == {"ssn": "drop"}


def test_disabled_policy(tmp_path):
    assert load_text(tmp_path, ".json", '{"enabled": false}').enabled is False


# ---------------------------------------------------------------------------
# every mistake: a ConfigError that names it


ERRORS = [
    # id, extension, text, words that the message must hold
    ("unknown-top-key", ".toml", "bogus_key = 1\n", ["bogus_key"]),
    ("unknown-top-key-json", ".json", '{"builtins": ["email"]}', ["builtins"]),
    ("unknown-top-key-yaml", ".yaml", "redact_field: [a]\n", ["redact_field"]),
    ("top-level-list", ".json", "[1, 2]", ["top level"]),
    ("top-level-scalar-yaml", ".yaml", "just a string\n", ["top level"]),
    ("enabled-not-bool", ".json", '{"enabled": "yes"}', ["enabled"]),
    ("builtin-not-list", ".toml", 'builtin = "email"\n', ["builtin"]),
    ("builtin-not-strings", ".json", '{"builtin": [1]}', ["builtin"]),
    ("unknown-builtin", ".toml", 'builtin = ["email", "dna_sequence"]\n', ["dna_sequence"]),
    ("actions-not-table", ".toml", 'actions = ["email"]\n', ["actions"]),
    ("actions-unknown-rule", ".toml", '[actions]\nnot_a_rule = "redact"\n', ["not_a_rule"]),
    ("actions-custom-rule", ".toml", '[actions]\nticket = "redact"\n[[rules]]\nname = "ticket"\npattern = "T"\n',
     ["ticket"]),
    ("unknown-action", ".toml", '[actions]\nemail = "explode"\n', ["explode", "email"]),
    ("unknown-action-yaml", ".yaml", "actions: {ssn: shred}\n", ["shred", "ssn"]),
    ("redact-fields-not-list", ".json", '{"redact_fields": "password"}', ["redact_fields"]),
    ("rules-not-list", ".toml", 'rules = "TICKET"\n', ["rules"]),
    ("rules-table-not-array", ".toml", '[rules]\nname = "x"\npattern = "y"\n', ["rules"]),
    ("rule-not-table", ".json", '{"rules": ["TICKET-[0-9]+"]}', ["rules[1]"]),
    ("rule-missing-name", ".toml", '[[rules]]\npattern = "T-[0-9]+"\n', ["rules[1]", "name"]),
    ("rule-missing-pattern", ".toml", '[[rules]]\nname = "ticket"\n', ["ticket", "pattern"]),
    ("rule-empty-pattern", ".toml", '[[rules]]\nname = "ticket"\npattern = ""\n', ["ticket", "pattern"]),
    ("rule-pattern-not-string", ".json", '{"rules": [{"name": "n", "pattern": 5}]}', ["n", "pattern"]),
    ("rule-bad-name", ".toml", '[[rules]]\nname = "Bad Name"\npattern = "x"\n', ["Bad Name"]),
    ("rule-unknown-key", ".toml", '[[rules]]\nname = "t"\npattern = "x"\nreplace_with = "y"\n', ["replace_with"]),
    ("rule-unknown-action", ".toml", '[[rules]]\nname = "t"\npattern = "x"\naction = "shred"\n', ["shred", "t"]),
    ("duplicate-rule-name", ".toml", '[[rules]]\nname = "ticket"\npattern = "A"\n[[rules]]\nname = "ticket"\n'
     'pattern = "B"\n', ["ticket", "rules[2]"]),
    ("name-clashes-with-builtin", ".toml", '[[rules]]\nname = "email"\npattern = "x@y"\n', ["email"]),
    ("name-clashes-with-field", ".yaml", "rules: [{name: field, pattern: x}]\n", ["field"]),
    ("backreference", ".toml", "[[rules]]\nname = \"backref\"\npattern = '(a)\\1'\n", ["backref", "(a)", "pattern"]),
    ("lookahead", ".toml", "[[rules]]\nname = \"look\"\npattern = 'foo(?=bar)'\n", ["look", "foo(?=bar)"]),
    ("lookbehind", ".json", '{"rules": [{"name": "behind", "pattern": "(?<=a)b"}]}', ["behind", "(?<=a)b"]),
    ("unbalanced", ".yaml", "rules: [{name: paren, pattern: '(abc'}]\n", ["paren", "(abc"]),
    ("huge-repeat", ".json", '{"rules": [{"name": "rep", "pattern": "a{5000}"}]}', ["rep", "a{5000}"]),
    ("hash-without-key", ".toml", '[actions]\nemail = "hash"\n', ["hash_key_file"]),
    ("rule-hash-without-key", ".toml", '[[rules]]\nname = "t"\npattern = "x"\naction = "hash"\n',
     ["hash_key_file"]),
    ("hash-key-file-not-string", ".json", '{"hash_key_file": 5}', ["hash_key_file"]),
    ("hash-key-file-missing", ".toml", 'hash_key_file = "/nonexistent/dir/hash.key"\n', ["/nonexistent/dir/hash.key"]),
    ("malformed-toml", ".toml", "builtin = [\n", ["TOML"]),
    ("malformed-toml-dup", ".toml", "enabled = true\nenabled = false\n", ["TOML"]),
    ("malformed-json", ".json", '{"builtin": ["email",]}', ["JSON"]),
    ("empty-json", ".json", "", ["JSON"]),
    ("malformed-yaml", ".yaml", "builtin: [email\nactions: {\n", ["YAML"]),
    ("yaml-python-tag", ".yaml", "!!python/object/apply:os.system ['true']\n", ["YAML"]),
    ("not-utf8", ".toml", b"builtin = [\"\xff\xfe\"]\n", ["UTF-8"]),
    ("unknown-extension", ".ini", "[policy]\n", [".ini"]),
    ("no-extension", "", "{}", ["extension"]),
]


@pytest.mark.parametrize("ext,text,words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_what_is_wrong(tmp_path, ext, text, words):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, ext, text)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert "\n" not in message.strip()


def test_too_many_rules(tmp_path):
    rules = [{"name": f"r{i}", "pattern": f"R{i}-[0-9]+"} for i in range(MAX_RULES + 1)]
    with pytest.raises(ConfigError, match=str(MAX_RULES)):
        load_text(tmp_path, ".json", json.dumps({"rules": rules}))
    assert len(load_text(tmp_path, ".json", json.dumps({"rules": rules[:MAX_RULES]})).rules) == MAX_RULES


def test_missing_policy_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError):
        load(tmp_path)  # a directory


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_hash_key_file_readable_by_others_is_refused(tmp_path, mode):
    key = key_file(tmp_path, mode=mode)
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, ".toml", f'hash_key_file = "{key}"\n[actions]\nemail = "hash"\n')
    assert "chmod 600" in str(info.value) and str(key) in str(info.value)


@pytest.mark.parametrize("size", [0, 1, 16, 31])
def test_hash_key_too_short(tmp_path, size):
    key = key_file(tmp_path, size=size)
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, ".json", json.dumps({"hash_key_file": str(key), "actions": {"email": "hash"}}))
    assert "32" in str(info.value) and str(key) in str(info.value)


def test_hash_key_of_32_bytes_mode_600_is_taken(tmp_path):
    key = key_file(tmp_path, size=32)
    p = load_text(tmp_path, ".toml", f'hash_key_file = "{key}"\n[actions]\nemail = "hash"\n')
    assert p.hash_key == key.read_bytes() and p.action_of("email") == "hash"
    assert "hash_key" not in repr(p).replace("hash_key_file", ""), "the key never shows in a repr"


def test_hash_key_file_is_a_directory(tmp_path):
    d = tmp_path / "keydir"
    d.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="keydir"):
        load_text(tmp_path, ".toml", f'hash_key_file = "{d}"\n')


# text a parser accepts but that is no valid path or pattern: still a ConfigError, not a crash


@pytest.mark.parametrize("ext,text,word", [
    (".json", '{"hash_key_file": "a\\u0000b"}', "hash_key_file"),
    (".toml", 'hash_key_file = "a\\u0000b"\n', "hash_key_file"),
    (".json", '{"hash_key_file": "\\ud800"}', "hash_key_file"),
    (".json", '{"rules": [{"name": "sur", "pattern": "\\ud800"}]}', "sur"),
    (".yaml", 'rules: [{name: sur, pattern: "\\ud800"}]\n', "sur"),
], ids=["nul-in-key-path-json", "nul-in-key-path-toml", "surrogate-in-key-path", "surrogate-in-pattern-json",
        "surrogate-in-pattern-yaml"])
def test_unusable_strings_are_config_errors(tmp_path, ext, text, word):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, ext, text)
    assert word in str(info.value)


@pytest.mark.parametrize("ext,text", [
    (".json", '{"redact_fields": ["\\ud800"]}'),
    (".yaml", 'redact_fields: ["ok", "\\udcff"]\n'),
    (".json", '{"redact_fields": ["' + "x" * 300 + '"]}'),
    (".json", '{"redact_fields": [""]}'),
])
def test_a_loaded_policy_is_accepted_by_the_sanitize_stage(tmp_path, ext, text):
    # load() either refuses the file or returns a policy the writer can run: no crash at start
    try:
        p = load_text(tmp_path, ext, text)
    except ConfigError:
        return
    Sanitize(p)


def test_toml_multiline_pattern_strings_and_escapes(tmp_path):
    p = load_text(tmp_path, ".toml", "[[rules]]\nname = \"lit\"\npattern = '''\\bID-\\d{4}\\b'''\n"
                                     "[[rules]]\nname = \"esc\"\npattern = \"\\\\bKEY\\\\d+\"\n")
    assert [r.pattern for r in p.rules] == ["\\bID-\\d{4}\\b", "\\bKEY\\d+"]


# ---------------------------------------------------------------------------
# fuzz: whatever the file holds, load() returns a Policy or raises ConfigError


def _load_or_config_error(ext: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"policy{ext}"
        path.write_bytes(data)
        try:
            p = load(path)
        except ConfigError:
            return
        assert isinstance(p, Policy)


EXTS = st.sampled_from([".toml", ".json", ".yaml", ".yml"])
SNIPPETS = st.sampled_from([
    b"builtin", b"actions", b"rules", b"[[rules]]", b"name", b"pattern", b"action", b"redact_fields",
    b"hash_key_file", b"enabled", b"=", b":", b'"', b"'", b"[", b"]", b"{", b"}", b",", b"\n", b" ", b"-",
    b"email", b"hash", b"drop", b"mask", b"true", b"null", b"!!", b"&a", b"*a", b"\\", b"\\u0000", b"(a+)+$",
    b"\xff", b"\x00", b"1e999", b"- ", b"? ",
])


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(ext=EXTS, data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(ext, data):
    _load_or_config_error(ext, data)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(ext=EXTS, parts=st.lists(SNIPPETS, max_size=40))
def test_fuzz_policy_like_bytes(ext, parts):
    _load_or_config_error(ext, b"".join(parts))


KEYS = st.sampled_from(["enabled", "builtin", "actions", "redact_fields", "rules", "hash_key_file", "name",
                        "pattern", "action", "field", "email", "ssn", "other"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=False),
                    st.sampled_from(["email", "hash", "redact", "mask", "drop", "ticket", "T-[0-9]+", "(a)\\1",
                                     "/dev/null", "", "field"]),
                    st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(KEYS, VALUES, max_size=5), ext=st.sampled_from([".json", ".yaml"]))
def test_fuzz_structured_policies(data, ext):
    text = json.dumps(data) if ext == ".json" else yaml.safe_dump(data)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"policy{ext}"
        path.write_text(text, encoding="utf-8")
        try:
            p = load(path)
        except ConfigError:
            return
        assert isinstance(p, Policy)
        Sanitize(p)
