"""`--ship URL` values: which transport, which host and port; and the client for one.

  relp://HOST:PORT        RELP over TLS             (client.RelpClient)
  syslog+tls://HOST:PORT  RFC 5425 syslog over TLS  (client.SyslogTlsClient)
  ls://HOST:PORT          logger-system serve       (lsclient.LsClient)

The shipper (shipper.py, SESSIONS) picks the client of each scheme.

HOST is a name, an IPv4 address or a bracketed IPv6 address; PORT is required (RELP and
RFC 5425 receivers listen where their operator says; 6514 is only RFC 5425's suggestion).
No other scheme exists: there is no plaintext transport to fall back to, so `tcp://`,
`udp://` or `syslog://` are configuration errors, not a quieter way to ship.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from logger_system.errors import ConfigError, describe

SCHEMES = ("relp", "syslog+tls", "ls")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^/:\[\]@?#\s]+))"
                  r":(?P<port>[0-9]{1,5})/?", re.ASCII)
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)


@dataclass(frozen=True)
class Target:
    """One destination, from its URL."""

    scheme: str
    host: str  # without brackets
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_target(url: str) -> Target:
    """A `--ship` URL -> Target; ConfigError saying what is wrong and what is accepted."""
    if not isinstance(url, str):
        raise ConfigError(f"--ship: a URL is text, not {describe(url)}")
    m = _URL.fullmatch(url.strip())
    if m is None:
        raise ConfigError(f"--ship {describe(url)}: not SCHEME://HOST:PORT "
                          f"(e.g. relp://logs.example.net:2514, syslog+tls://[2001:db8::5]:6514)")
    scheme = m["scheme"].lower()  # schemes are case-insensitive (RFC 3986 3.1)
    if scheme not in SCHEMES:
        raise ConfigError(f"--ship {describe(url)}: unknown scheme {scheme!r}; use relp://, syslog+tls:// "
                          f"or ls:// (every transport is TLS; there is no plaintext one)")
    if m["v6"] is not None:
        try:
            host = str(ipaddress.IPv6Address(m["v6"]))
        except ValueError:
            raise ConfigError(f"--ship {describe(url)}: [{m['v6']}] is not an IPv6 address") from None
    else:
        host = m["host"]
        if not _HOSTNAME.fullmatch(host):
            raise ConfigError(f"--ship {describe(url)}: {host!r} is not a host name or IPv4 address")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"--ship {describe(url)}: port {port} is outside 1..65535")
    return Target(scheme, host, port)
