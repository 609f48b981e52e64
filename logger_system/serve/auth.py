"""Who a client is: its certificate's names against the allowlist, sans-IO.

TLS has already proved that the client holds the key of a certificate that chains to
--tls-ca.  What is decided here is whether that certificate may ship, and under which
name:

  names      its DNS subjectAltNames, in the certificate's order; only when it has none,
             its subject's commonName(s).  Names compare in lower case (DNS is
             case-insensitive), so `Web1.Example` and `web1.example` are one client.
  allowed    the first of those names that matches one of the allow globs (fnmatch:
             `*` also matches dots, so `*.prod.example` admits `a.b.prod.example`).
  its name   that name is the client's name: its counters' key, its records' `host`,
             and its directory under --dir.  It must be one safe path component
             (letters, digits, `.`, `_`, `-`; not starting with a dot; at most 128
             characters); a matching name that is not one is refused, not rewritten,
             so that no two certificates can end up in one directory.

Anything refused says why, in words an operator can act on; the caller counts it.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, describe

SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def is_safe_name(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name


def cert_names(cert: dict) -> list[str]:
    """The names a peer certificate (ssl.getpeercert()) vouches for: DNS SANs, else CNs."""
    sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS" and isinstance(v, str)]
    if sans:
        return [s.lower() for s in sans]
    return [v.lower() for rdn in cert.get("subject", ()) for k, v in rdn
            if k == "commonName" and isinstance(v, str)]


@dataclass(frozen=True)
class Decision:
    name: str | None  # the client's name, when allowed
    reason: str = ""  # why not, when refused
    kind: str = ""    # the counter of a refusal: no_name, not_allowed, unsafe_name


@dataclass(frozen=True)
class Allowlist:
    globs: tuple[str, ...]

    @classmethod
    def of(cls, globs) -> "Allowlist":
        cleaned = []
        for g in globs:
            if not isinstance(g, str) or not g.strip() or len(g) > 255:
                raise ConfigError(f"--allow {describe(g)}: give a certificate name or a glob of them")
            cleaned.append(g.strip().lower())
        if not cleaned:
            raise ConfigError("give at least one --allow NAME (a certificate name, globs allowed): "
                              "without one no client may ship")
        return cls(tuple(dict.fromkeys(cleaned)))

    def decide(self, names: list[str]) -> Decision:
        if not names:
            return Decision(None, "the certificate has no DNS name and no common name", "no_name")
        for name in names:
            if any(fnmatch.fnmatchcase(name, g) for g in self.globs):
                if not is_safe_name(name):
                    return Decision(None, f"certificate name {describe(name)} is allowed but is not a "
                                          "safe directory name", "unsafe_name")
                return Decision(name)
        shown = ", ".join(describe(n) for n in names[:5])
        return Decision(None, f"certificate name(s) {shown} not allowed", "not_allowed")


def read_allow_file(path: Path) -> list[str]:
    """One glob per line; blank lines and `#` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--allow-file {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
