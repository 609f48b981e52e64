"""Writer settings: one frozen dataclass, from a TOML file and then flags.

The file covers every stage: [writer] (ring, files, rotation, keys, metrics),
[sanitize] (the sanitizer policy, as in a policy file), [access] (access
rules) and [thresholds] (health warnings).  Every key is checked: an unknown
key or a bad value stops the writer at start with a message naming it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import access as access_mod
from . import health
from . import policy as policy_mod
from .errors import ConfigError, describe
from .ring import DEFAULT_CAPACITY, DEFAULT_MAX_RECORD, ring_name
from .rotation import parse_duration, parse_size

FSYNC_POLICIES = ("batch", "interval", "never")


@dataclass(frozen=True)
class WriterConfig:
    ring: str = "logger_system"
    dir: Path = Path("logs")
    plaintext: bool = False
    key: Path | None = None
    recipient: str | None = None
    rotate_size: int | None = 64 * 1024**2
    rotate_interval: float | None = None
    keep: int | None = None
    fsync: str = "interval"
    fsync_interval: float = 1.0
    min_level: int = 0
    capacity: int = DEFAULT_CAPACITY
    max_record: int = DEFAULT_MAX_RECORD
    batch_records: int = 8192
    batch_bytes: int = 4 * 1024**2
    stall_grace: float = 0.05
    shutdown_timeout: float = 5.0
    policy: Path | None = None
    sanitize: bool = True
    compress: bool = False
    keep_age: float | None = None
    keep_size: int | None = None
    # a file the count or size limit would remove while younger than this is warned about
    # (and with keep_young kept, up to the ceiling); None or 0: no minimum
    keep_min_age: float | None = 3600.0
    keep_young: bool = False
    keep_ceiling: int | None = None  # None: see retention_ceiling
    metrics: str | None = None
    # from the file's other tables
    sanitize_policy: policy_mod.Policy | None = None
    access: access_mod.AccessPolicy | None = None
    thresholds: health.Thresholds | None = None
    ship: tuple = ()  # Destination (ship/destination.py): [[ship]] tables, then --ship flags
    config_file: Path | None = None
    # capacity or max_record was set (flag or file): the writer says so if an existing ring differs
    ring_size_given: bool = False

    def __post_init__(self) -> None:
        # every entry point (CLI, TOML, Python) builds one of these, so the rules hold for all
        self.validated()

    def validated(self) -> "WriterConfig":
        ring_name(self.ring)
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"fsync={describe(self.fsync)}: use one of {', '.join(FSYNC_POLICIES)}")
        if self.key is not None and self.recipient:
            raise ConfigError("give either key or recipient, not both")
        if self.keep is not None and self.keep < 1:
            raise ConfigError(f"keep={describe(self.keep)}: keep at least 1 file")
        if not 1 <= self.batch_records <= 1 << 20:
            raise ConfigError(f"batch_records={describe(self.batch_records)}: use 1..1048576")
        if self.batch_bytes < self.max_record:
            raise ConfigError(f"batch_bytes={self.batch_bytes} must be at least max_record ({self.max_record})")
        if self.batch_bytes > 1 << 30:
            raise ConfigError(f"batch_bytes={self.batch_bytes}: use at most 1GiB (the writer allocates it)")
        if self.policy is not None and self.sanitize_policy is not None:
            raise ConfigError("give the sanitizer policy either as a [sanitize] table or as policy=FILE, "
                              "not both")
        if self.keep_min_age is not None and not self.keep_min_age >= 0:
            raise ConfigError(f"keep_min_age={describe(self.keep_min_age)}: use a duration, or 0 for none")
        if self.keep_ceiling is not None and self.keep_size is not None and self.keep_ceiling < self.keep_size:
            raise ConfigError(f"keep_ceiling={self.keep_ceiling} is below keep_size={self.keep_size}: "
                              "the ceiling bounds what keep_young keeps beyond keep_size")
        if (self.keep_young and self.keep_min_age and self.keep is not None
                and self.retention_ceiling is None):
            raise ConfigError("keep_young with keep and neither keep_size nor rotate_size has no bound "
                              "on the disk it may take: give keep_ceiling")
        if self.metrics is not None:
            from .metrics import parse_listen

            parse_listen(self.metrics)
        if self.plaintext and (self.key is not None or self.recipient):
            raise ConfigError("plaintext contradicts key/recipient: choose one")
        if not (self.plaintext or self.key is not None or self.recipient):
            raise ConfigError(
                "refusing to write logs without encryption: set key, recipient or plaintext. Make a key with "
                "`logger-system keygen --out writer.key` and pass --key writer.key "
                "(or `keygen --x25519 --out reader.identity` and pass the printed --recipient), "
                "or pass --plaintext (plaintext = true in [writer]; plaintext=True in Python) "
                "to write unencrypted files")
        return self

    @property
    def retention_ceiling(self) -> int | None:
        """The most bytes of files kept with keep_young: keep_ceiling, else 4 x keep_size, else
        4 x keep full files (keep x rotate_size), else none."""
        if self.keep_ceiling is not None:
            return self.keep_ceiling
        if self.keep_size is not None:
            return 4 * self.keep_size
        if self.keep is not None and self.rotate_size is not None:
            return 4 * self.keep * self.rotate_size
        return None


_ZERO = re.compile(r"\s*0+(\.0*)?\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)


def _min_age(value: Any) -> float | None:
    """A duration, or 0 (any unit): no minimum age."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return None
    if isinstance(value, str) and len(value) <= 64 and _ZERO.fullmatch(value):
        return None
    return parse_duration(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("use true or false")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        text = value.strip() if isinstance(value, str) else ""
        # ASCII digits only: str.isdigit() is also true for '²', which int() refuses
        if text.isascii() and text.isdigit():
            if len(text) > 18:
                raise ValueError("too large")
            return int(text)
        raise ValueError("use a whole number")
    return value


def _recipients(value: Any) -> str:
    """One recipient string, a comma-separated list of them, or a TOML list of them."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value):
            raise ValueError("use a recipient string or a list of recipient strings")
        return ",".join(value)
    if not isinstance(value, str):
        raise ValueError("use a recipient string or a list of recipient strings")
    return value


# how each TOML key is read: key -> converter
_CONVERT: dict[str, Any] = {
    "ring": str,
    "dir": Path,
    "plaintext": _bool,
    "key": Path,
    "recipient": _recipients,
    "rotate_size": parse_size,
    "rotate_interval": parse_duration,
    "keep": _int,
    "fsync": str,
    "fsync_interval": parse_duration,
    "min_level": access_mod.level,
    "capacity": parse_size,
    "max_record": parse_size,
    "batch_records": _int,
    "batch_bytes": parse_size,
    "stall_grace": parse_duration,
    "shutdown_timeout": parse_duration,
    "policy": Path,
    "sanitize": _bool,
    "compress": _bool,
    "keep_age": parse_duration,
    "keep_size": parse_size,
    "keep_min_age": _min_age,
    "keep_young": _bool,
    "keep_ceiling": parse_size,
    "metrics": str,
}
# set from the file's tables, not from [writer] keys or flags
_TABLES = {"sanitize": "sanitize_policy", "access": "access", "thresholds": "thresholds", "ship": "ship"}
assert set(_CONVERT) | set(_TABLES.values()) | {"config_file", "ring_size_given"} == {
    f.name for f in fields(WriterConfig)}


def _convert(key: str, value: Any, where: str) -> Any:
    if key not in _CONVERT:
        known = ", ".join(sorted(_CONVERT))
        raise ConfigError(f"{where}: unknown key {describe(key)} (known keys: {known})")
    try:
        return _CONVERT[key](value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {key}={describe(value)}: {exc}") from None


def load_toml(path: Path) -> dict[str, Any]:
    """A config file's settings, converted and checked: WriterConfig field -> value."""
    data = policy_mod.decode(policy_mod.read_file(path, "config file"), ".toml", f"config file {path}")
    unknown = set(data) - {"writer", *_TABLES}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; the tables are [writer], "
                          "[sanitize], [access], [thresholds] and [[ship]]")
    table = data.get("writer", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [writer] must be a table")
    values = {k: _convert(k, v, f"{path}: [writer]") for k, v in table.items()}
    if "sanitize" in data:
        values["sanitize_policy"] = policy_mod.parse(data["sanitize"], f"{path}: [sanitize]")
    if "access" in data:
        values["access"] = access_mod.parse(data["access"], f"{path}: [access]")
    if "thresholds" in data:
        values["thresholds"] = health.parse(data["thresholds"], f"{path}: [thresholds]")
    if "ship" in data:
        from .ship.destination import build as destination

        ships = data["ship"]
        if not isinstance(ships, list) or not all(isinstance(t, dict) for t in ships):
            raise ConfigError(f"{path}: ship must be an array of tables ([[ship]])")
        values["ship"] = tuple(destination(t, f"{path}: [[ship]] #{i + 1}") for i, t in enumerate(ships))
    values["config_file"] = Path(path)
    return values


def build(file: Path | None = None, *, ship: list[str] | None = None, tls: dict | None = None,
          **overrides: Any) -> WriterConfig:
    """Defaults, then the file, then non-None overrides (flags).  ship: --ship URLs, each with
    the TLS flags in `tls` (tls_ca, tls_cert, tls_key, tls_server_name), added to the file's."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(load_toml(file))
    if ship:
        from .ship.destination import build as destination

        given = {k: v for k, v in (tls or {}).items() if v is not None}
        values["ship"] = tuple(values.get("ship", ())) + tuple(
            destination({"url": url, **given}, f"--ship {url}") for url in ship)
    elif tls and any(v is not None for v in tls.values()):
        raise ConfigError("--tls-ca, --tls-cert, --tls-key and --tls-server-name go with --ship URL")
    for k, v in overrides.items():
        if v is not None:
            values[k] = _convert(k, v, f"--{k.replace('_', '-')}")
    if "ring" not in values:  # as producers do: $LOGGER_SYSTEM_RING, else the default name
        values["ring"] = ring_name(None)
    if "capacity" in values or "max_record" in values:
        values["ring_size_given"] = True
        if "max_record" not in values:  # a small ring gets records that fit it
            values["max_record"] = min(DEFAULT_MAX_RECORD, values["capacity"] // 4)
    return WriterConfig(**values)
