"""Config and policy loaders: every bad input is a short ConfigError, quickly.

What tests/test_hostile.py pins for single cases, held here for their
siblings: values whose repr() raises (an integer of thousands of digits: TOML
takes hex integers of any size), digits int() refuses ('²'), numbers beyond a
float, paths that cannot be paths, files that never end or never open, and
patterns that would take quadratic time.  Each loader either returns or raises
a ConfigError whose message names the problem and stays small.
"""
from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_system import access, config, health, metrics, policy, rotation
from logger_system.errors import ConfigError, describe

REPO = Path(__file__).resolve().parents[1]
HUGE_HEX = "0x" + "f" * 5000  # a TOML integer of 20000 bits: str() of it raises ValueError
SMALL = 4096  # the most a message here may take


CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from logger_system import config, policy
from logger_system.errors import ConfigError
load = {"config": config.build, "policy": policy.load, "hash_key": policy.read_hash_key}[sys.argv[1]]
try:
    load(Path(sys.argv[2]))
    print("loaded")
except ConfigError as exc:
    print("ConfigError:", exc)
except BaseException as exc:
    print(type(exc).__name__)
"""


def load_in_child(kind: str, path: Path) -> str:
    """A config, policy or hash key loaded in a child with 1 GiB of address space and a time limit
    (a loader that reads without end or blocks must not take the test run with it)."""
    r = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def config_error(call) -> str:
    """call() raises a ConfigError with a short message, quickly; returns the message."""
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    assert text.strip() and len(text) < SMALL, (len(text), text[:300])
    assert time.monotonic() - t0 < 5
    return text


def build_text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "writer.toml"
    path.write_text("[writer]\nplaintext = true\n" + text, encoding="utf-8")
    return config_error(lambda: config.build(path))


def load_policy_text(tmp_path: Path, ext: str, text: str) -> str:
    path = tmp_path / f"policy{ext}"
    path.write_text(text, encoding="utf-8")
    return config_error(lambda: policy.load(path))


# ---------------------------------------------------------------------------
# describe: how a message shows a value


@pytest.mark.parametrize("value, shown", [
    ("email", "'email'"), (5, "5"), (-1, "-1"), (1.5, "1.5"), (math.nan, "nan"), (True, "True"), (None, "None"),
    ([1, 2], "a list of 2 item(s)"), ({"a": 1}, "a table of 1 key(s)"), (b"k", "a value of type bytes"),
])
def test_describe_shows_short_scalars_and_the_kind_of_anything_else(value, shown):
    assert describe(value) == shown


def test_describe_cuts_a_long_string_and_never_spells_out_a_huge_integer():
    assert describe("x" * 100_000) == "'" + "x" * 79 + "... (100000 characters)"
    assert describe("\x00" * 81) == "'" + "\\x00" * 19 + "\\x0... (81 characters)"
    assert describe(int(HUGE_HEX, 16)) == "an integer of 20000 bits"


values = st.recursive(st.integers() | st.integers(min_value=2**64).map(lambda n: n**200) | st.floats()
                      | st.text() | st.binary() | st.none(),
                      lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(value=values)
def test_describe_is_short_for_any_value(value):
    assert len(describe(value)) <= 120


# ---------------------------------------------------------------------------
# writer config (TOML)


@pytest.mark.parametrize("text, needle", [
    (f"batch_records = {HUGE_HEX}\n", "batch_records"),
    (f"min_level = {HUGE_HEX}\n", "unknown log level"),
    (f"rotate_size = [{HUGE_HEX}]\n", "rotate_size"),
    (f"stall_grace = [{HUGE_HEX}]\n", "stall_grace"),
    (f"ring = [{HUGE_HEX}]\n", "ring"),
    (f"[access]\ndefault = {HUGE_HEX}\n", "default"),
    (f'[[access.rule]]\naction = {HUGE_HEX}\nlogger = "x"\n', "action"),
    (f'[[access.rule]]\naction = "allow"\nlogger = "x"\nname = [{HUGE_HEX}]\n', "name"),
    (f'[[access.rule]]\naction = "allow"\nmin_level = {HUGE_HEX}\n', "min_level"),
    (f'[[access.rule]]\naction = "allow"\nos_user = [{HUGE_HEX}]\n', "os_user"),
    (f"[thresholds]\nwindow = {HUGE_HEX}\n", "window"),
    (f"[thresholds]\nwriter_errors = {HUGE_HEX}\n", "writer_errors"),
    (f"[sanitize.actions]\nemail = {HUGE_HEX}\n", "email"),
    (f'[sanitize]\nrules = [{{name = {HUGE_HEX}, pattern = "x"}}]\n', "name"),
], ids=["batch_records", "min_level", "rotate_size", "stall_grace", "ring", "access_default", "rule_action",
        "rule_name", "rule_min_level", "os_user", "window", "writer_errors", "sanitize_action", "sanitize_rule_name"])
def test_an_integer_too_long_to_print_is_a_config_error_naming_the_key(tmp_path, text, needle):
    assert needle in build_text(tmp_path, text)


def test_a_decimal_integer_beyond_pythons_digit_limit_is_not_valid_toml(tmp_path):
    assert "not valid TOML" in build_text(tmp_path, "keep = " + "9" * 5000 + "\n")


@pytest.mark.parametrize("text, needle", [
    ('keep = "²"\n', "whole number"),
    ('keep = "99999999999999999999"\n', "too large"),
    (f'keep = "{"9" * 5000}"\n', "too large"),
    ('min_level = "²"\n', "unknown log level"),
    (f'min_level = "{"1" * 5000}"\n', "unknown log level"),
    ('[[access.rule]]\naction = "allow"\nmin_level = 300\n', "unknown log level"),
], ids=["keep_superscript", "keep_20_digits", "keep_5000_digits", "min_level_superscript", "min_level_5000_digits",
        "rule_level_300"])
def test_digit_strings_int_cannot_take_are_config_errors(tmp_path, text, needle):
    assert needle in build_text(tmp_path, text)


@pytest.mark.parametrize("os_user, needle", [
    ('"ro\\u0000ot"', "not a valid user name"),
    ('"١٢"', "no OS user named"),  # Arabic-Indic digits: decimal, but not ASCII
    ("-1", "outside 0..4294967294"),
    ("4294967295", "outside 0..4294967294"),
    ('"4294967296"', "outside 0..4294967294"),
    (f'"{"9" * 5000}"', "outside 0..4294967294"),
], ids=["nul", "arabic_indic_digits", "negative", "no_user_uid", "beyond_uid_t", "5000_digits"])
def test_os_users_that_are_no_uid_or_name_are_config_errors(tmp_path, os_user, needle):
    assert needle in build_text(tmp_path, f'[[access.rule]]\naction = "allow"\nos_user = {os_user}\n')


def test_os_user_that_cannot_be_encoded_is_a_config_error():
    # from a YAML or JSON source (TOML refuses the escape itself)
    assert "not a valid user name" in config_error(
        lambda: access.parse({"rule": [{"action": "allow", "os_user": "\ud800"}]}))


def test_os_user_uids_in_range_are_taken_as_given():
    rules = access.parse({"rule": [{"action": "allow", "os_user": [0, "65534", 4294967294]}]}).rules
    assert rules[0].os_uids == {0, 65534, 4294967294}


def test_access_rule_name_must_be_a_string(tmp_path):
    assert "name" in build_text(tmp_path, '[[access.rule]]\naction = "allow"\nlogger = "x"\nname = [1]\n')


@pytest.mark.parametrize("listen", ["99999", "65536", "1" * 5000, "①", "127.0.0.1:٣", "[::1]:" + "0" * 6],
                         ids=["99999", "65536", "5000_digits", "circled", "arabic_indic", "six_digits"])
def test_metrics_ports_that_are_not_0_to_65535_in_ascii_are_config_errors(listen):
    assert "port 0..65535" in config_error(lambda: metrics.parse_listen(listen))


def test_metrics_ports_in_range_are_taken():
    assert metrics.parse_listen("0") == ("127.0.0.1", 0)
    assert metrics.parse_listen("[::1]:65535") == ("::1", 65535)


@pytest.mark.parametrize("key", ["drop_rate", "writer_errors", "error_rate", "sanitizer_hits"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1" + "0" * 400], ids=["nan", "inf", "-inf", "10**400"])
def test_thresholds_must_be_finite(tmp_path, key, value):
    assert key in build_text(tmp_path, f"[thresholds]\n{key} = {value}\n")


def test_thresholds_take_whole_and_fractional_numbers():
    t = health.parse({"drop_rate": 0, "writer_errors": 3, "error_rate": 2.5, "sanitizer_hits": 10**20})
    assert (t.drop_rate, t.writer_errors, t.error_rate, t.sanitizer_hits) == (0.0, 3, 2.5, 1e20)


# ---------------------------------------------------------------------------
# sizes and durations


@pytest.mark.parametrize("text", [10**400, 2**63, "10000000 TiB", "1" * 65, "1" + " " * 100_000 + "x",
                                  " " * 100_000 + "1", [10**400], [int(HUGE_HEX, 16)]],
                         ids=["10**400", "2**63", "10M_TiB", "65_digits", "spaces_then_x", "spaces_then_digit",
                              "list", "list_of_huge_hex"])
def test_sizes_beyond_a_file_offset_or_too_long_to_be_sizes_are_config_errors(text):
    config_error(lambda: rotation.parse_size(text))


def test_the_largest_size_is_taken():
    assert rotation.parse_size(2**63 - 1) == 2**63 - 1
    assert rotation.parse_size("1000000 TiB") == 1000000 * 1024**4


@pytest.mark.parametrize("text", [10**400, -(10**400), int(HUGE_HEX, 16), "1" * 100_000 + "x",
                                  "1s" * 50_000, "1" + " " * 100_000 + "s", [1], {"s": 1}],
                         ids=["10**400", "-10**400", "huge_hex", "digits_then_x", "1s_50000_times",
                              "spaces_then_s", "list", "table"])
def test_durations_beyond_a_float_or_too_long_to_be_durations_are_config_errors(text):
    config_error(lambda: rotation.parse_duration(text))


def test_a_long_run_of_digits_is_refused_in_linear_time():
    # _DURATION.findall backtracks over each start: 20000 digits took half a minute
    t0 = time.monotonic()
    for n in (10_000, 100_000, 1_000_000):
        with pytest.raises(ConfigError):
            rotation.parse_duration("1" * n + "x")
        with pytest.raises(ConfigError):
            rotation.parse_size("1" + " " * n + "x")
    assert time.monotonic() - t0 < 2


# ---------------------------------------------------------------------------
# files: config, policy and hash key


@pytest.mark.parametrize("loader", ["config", "policy"])
@pytest.mark.parametrize("path, needle", [("p\x00.toml", "not a usable path"), ("\ud800.toml", "not a usable path"),
                                          ("/dev/zero.toml", "does not exist")])
def test_paths_that_cannot_be_opened_are_config_errors(loader, path, needle):
    call = (lambda: config.build(Path(path))) if loader == "config" else (lambda: policy.load(path))
    assert needle in config_error(call)


def test_a_policy_path_with_a_nul_in_the_writer_config_is_a_config_error(tmp_path):
    path = tmp_path / "writer.toml"
    path.write_text('[writer]\nplaintext = true\npolicy = "p\\u0000.toml"\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "logger_system", "check-config", str(path)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "not a usable path" in r.stderr


@pytest.mark.parametrize("what", ["config", "policy"])
def test_a_file_larger_than_a_mib_is_refused_without_reading_it_all(tmp_path, what):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * policy.MAX_FILE_BYTES + b"\n")
    call = (lambda: config.build(big)) if what == "config" else (lambda: policy.load(big))
    assert "larger than 1 MiB" in config_error(call)


@pytest.mark.parametrize("kind", ["config", "policy"])
def test_a_file_that_never_ends_is_refused(tmp_path, kind):
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    out = load_in_child(kind, link)
    assert out.startswith("ConfigError:") and "larger than 1 MiB" in out, out


def test_a_longer_path_than_any_is_cut_in_the_message(tmp_path):
    text = load_policy_text(tmp_path, ".json", json.dumps({"hash_key_file": "/k" * 100_000}))
    assert "(200000 characters)" in text


def test_check_config_on_an_integer_beyond_the_digit_limit_exits_2(tmp_path):
    path = tmp_path / "writer.toml"
    path.write_text("[writer]\nplaintext = true\nkeep = " + "9" * 5000 + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "logger_system", "check-config", str(path)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith("logger-system check-config: ") and "not valid TOML" in r.stderr


def write_key(path: Path, size: int = 32, mode: int = 0o600) -> Path:
    path.write_bytes(os.urandom(size))
    os.chmod(path, mode)
    return path


def test_hash_key_through_a_symlink_is_read_from_its_target(tmp_path):
    key = write_key(tmp_path / "hash.key")
    link = tmp_path / "link.key"
    link.symlink_to(key)
    assert policy.read_hash_key(link) == key.read_bytes()


@pytest.mark.parametrize("size, ok", [(32, True), (64 * 1024, True), (64 * 1024 + 1, False)])
def test_hash_key_size_is_bounded(tmp_path, size, ok):
    key = write_key(tmp_path / "hash.key", size)
    if ok:
        assert len(policy.read_hash_key(key)) == size
    else:
        assert "65537 bytes" in config_error(lambda: policy.read_hash_key(key))


def test_hash_key_that_is_a_device_is_refused_as_not_a_regular_file():
    assert "not a regular file" in config_error(lambda: policy.read_hash_key(Path("/dev/null")))


def test_hash_key_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "hash.key"
    os.mkfifo(fifo, 0o600)
    out = load_in_child("hash_key", fifo)  # a blocking open would hang the child until the timeout
    assert out.startswith("ConfigError:") and "not a regular file" in out and str(fifo) in out, out


def test_hash_key_that_never_ends_is_refused_before_reading(tmp_path):
    out = load_in_child("hash_key", Path("/dev/zero"))
    assert out.startswith("ConfigError:") and "not a regular file" in out, out


def test_hash_key_mode_is_checked_before_size(tmp_path):
    key = write_key(tmp_path / "hash.key", 1 << 20, 0o644)
    assert "readable by group or others" in config_error(lambda: policy.read_hash_key(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------
# policy files (YAML, JSON)


@pytest.mark.parametrize("text, needle", [
    (f"actions: {{email: {HUGE_HEX}}}\n", "email"),
    (f"rules: [{{name: {HUGE_HEX}, pattern: x}}]\n", "rules[1]"),
    (f"rules: [{{name: r, pattern: x, action: {HUGE_HEX}}}]\n", "rules[1]"),
    (f"builtin: [{HUGE_HEX}]\n", "builtin"),
    (f"? {HUGE_HEX}\n: 1\n", "unknown key"),
    (f"rules: [{{name: r, pattern: x, ? {HUGE_HEX} : 1}}]\n", "unknown key"),
    (f"actions:\n  ? {HUGE_HEX}\n  : redact\n", "unknown rule"),
    (f"redact_fields: ['{'x' * 300}']\n", "255 bytes"),
], ids=["action", "rule_name", "rule_action", "builtin", "top_key", "rule_key", "actions_key", "long_field"])
def test_yaml_values_too_long_to_print_are_config_errors(tmp_path, text, needle):
    assert needle in load_policy_text(tmp_path, ".yaml", text)


def test_many_unknown_keys_are_listed_in_part(tmp_path):
    text = load_policy_text(tmp_path, ".json", json.dumps({f"k{i}": 1 for i in range(10_000)}))
    assert "and 9995 more" in text


def test_json_integer_beyond_the_digit_limit_is_not_valid_json(tmp_path):
    assert "not valid JSON" in load_policy_text(tmp_path, ".json", '{"enabled": ' + "1" * 5000 + "}")


@pytest.mark.parametrize("ext, data", [(".toml", b'builtin = ["\xff"]\n'), (".json", b'{"a": "\xff"}'),
                                        (".toml", b"a = " + b"[" * 100_000)],
                         ids=["toml_utf8", "json_utf8", "toml_deep"])
def test_policy_that_cannot_be_decoded_names_its_format(tmp_path, ext, data):
    path = tmp_path / f"policy{ext}"
    path.write_bytes(data)
    assert f"not valid {ext[1:].upper()}" in config_error(lambda: policy.load(path))


@pytest.mark.slow
def test_aliases_of_one_long_redact_field_are_refused_before_copying(tmp_path):
    # 2500 aliases of a 400 kB string: lowering each before checking it made 1 GB of copies
    path = tmp_path / "policy.yaml"
    path.write_text(f"redact_fields: [&f '{'X' * 400_000}', " + ", ".join(["*f"] * 2500) + "]\n", encoding="utf-8")
    out = load_in_child("policy", path)
    assert out.startswith("ConfigError:") and "255 bytes" in out, out[:300]


# ---------------------------------------------------------------------------
# the same care outside the loaders: key files, level values, ring names, batch sizes


def test_key_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "writer.key"
    os.mkfifo(path, 0o600)
    code = ("import sys\nfrom logger_system.keys import load_keyring\nfrom logger_system.errors import ConfigError\n"
            "try:\n    load_keyring(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "is not a regular file" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("level", [10 ** 5000, -(10 ** 5000), "9" * 5000, "x" * 100_000],
                         ids=["huge_int", "huge_negative_int", "many_digits", "long_name"])
def test_level_values_of_any_size_give_a_short_message(level):
    from logger_system.record import level_number

    with pytest.raises(ValueError) as info:
        level_number(level)
    assert len(str(info.value)) < 200


def test_a_ring_name_of_any_length_gives_a_short_message():
    from logger_system.ring import ring_name

    with pytest.raises(ConfigError) as info:
        ring_name("r" * 1_000_000)
    assert len(str(info.value)) < 300


def test_batch_bytes_beyond_a_gibibyte_is_a_config_error(tmp_path):
    path = tmp_path / "writer.toml"
    path.write_text('[writer]\nplaintext = true\nbatch_bytes = "64GiB"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="batch_bytes"):
        config.build(path)
