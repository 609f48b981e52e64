"""Where the writer ships records, as configured: `--ship URL` with the TLS options, or a
`[[ship]]` table.  Every destination is TLS: there is no plaintext transport to choose."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, describe
from ..rotation import parse_size

SCHEMES = ("relp", "syslog+tls", "ls")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
DEFAULT_SPOOL_SIZE = 1 << 30


@dataclass(frozen=True)
class Destination:
    url: str
    scheme: str
    host: str
    port: int
    tls_ca: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str | None = None
    spool_size: int = DEFAULT_SPOOL_SIZE

    @property
    def server_name(self) -> str:
        return self.tls_server_name or self.host


def parse_url(url: Any) -> tuple[str, str, int]:
    """'relp://HOST:PORT' (or syslog+tls://, ls://) -> (scheme, host, port)."""
    if not isinstance(url, str):
        raise ConfigError(f"ship={describe(url)}: use a URL such as ls://logs.example.com:6514")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError(f"ship={describe(url)}: the scheme must be one of "
                          f"{', '.join(s + '://' for s in SCHEMES)} (every one is over TLS)")
    host, colon, port = rest.rpartition(":")
    if rest.endswith("/"):
        raise ConfigError(f"ship={describe(url)}: no path after HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        raise ConfigError(f"ship={describe(url)}: give HOST:PORT with a port 1..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.fullmatch(host):
            raise ConfigError(f"ship={describe(url)}: {describe(host)} is not a host name or IP address") from None
    return scheme, host, int(port)


def _readable(path: Any, what: str) -> Path:
    p = Path(path)
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {describe(str(p))}: cannot read it ({exc.strerror})") from None
    return p


_KEYS = ("url", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "spool_size")


def build(table: dict, where: str) -> Destination:
    """A destination from a `[[ship]]` table or from the flags (same keys)."""
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(_KEYS)})")
    if "url" not in table:
        raise ConfigError(f"{where}: url is missing")
    scheme, host, port = parse_url(table["url"])
    if table.get("tls_ca") is None:
        raise ConfigError(f"{where}: {table['url']} needs tls_ca (--tls-ca FILE): the CA bundle the "
                          "receiver's certificate must chain to; there is no plaintext transport")
    cert, key = table.get("tls_cert"), table.get("tls_key")
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key go together (the client certificate and its key)")
    name = table.get("tls_server_name")
    if name is not None and not (isinstance(name, str) and _HOST.fullmatch(name)):
        raise ConfigError(f"{where}: tls_server_name={describe(name)} is not a host name")
    try:
        spool = parse_size(table["spool_size"]) if "spool_size" in table else DEFAULT_SPOOL_SIZE
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: spool_size={describe(table['spool_size'])}: {exc}") from None
    if spool < 1 << 20:
        raise ConfigError(f"{where}: spool_size must be at least 1MiB")
    return Destination(url=table["url"], scheme=scheme, host=host, port=port,
                       tls_ca=_readable(table["tls_ca"], f"{where}: tls_ca"),
                       tls_cert=None if cert is None else _readable(cert, f"{where}: tls_cert"),
                       tls_key=None if key is None else _readable(key, f"{where}: tls_key"),
                       tls_server_name=name, spool_size=spool)
