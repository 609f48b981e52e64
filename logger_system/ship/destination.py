"""Where the writer ships records, as configured: `--ship URL` with the TLS options, or a
`[[ship]]` table.  Every destination is TLS: there is no plaintext transport to choose.
The URL's rules are target.py's, the TLS files' tls.py's: this module only gathers them."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, describe
from ..rotation import parse_size
from .target import parse_target
from .tls import TlsOptions

DEFAULT_SPOOL_SIZE = 1 << 30
DEFAULT_RELP_WINDOW = 128  # librelp's own default
MAX_RELP_WINDOW = 65536


@dataclass(frozen=True)
class Destination:
    url: str
    scheme: str
    host: str
    port: int
    tls: TlsOptions
    spool_size: int = DEFAULT_SPOOL_SIZE
    relp_window: int = DEFAULT_RELP_WINDOW  # relp:// only: messages in flight unanswered

    @property
    def server_name(self) -> str:
        return self.tls.server_name_for(self.host)


_KEYS = ("url", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "spool_size", "relp_window")


def build(table: dict, where: str) -> Destination:
    """A destination from a `[[ship]]` table or from the flags (same keys).  The TLS files
    are loaded once here, so that a wrong one stops the writer at start, naming it."""
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(_KEYS)})")
    if "url" not in table:
        raise ConfigError(f"{where}: url is missing")
    target = parse_target(table["url"])
    if table.get("tls_ca") is None:
        raise ConfigError(f"{where}: {target.url} needs tls_ca (--tls-ca FILE): the CA bundle the "
                          "receiver's certificate must chain to; there is no plaintext transport")
    cert, key = table.get("tls_cert"), table.get("tls_key")
    if (cert is None) != (key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key go together (the client certificate and its key)")
    name = table.get("tls_server_name")
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= 253):
        raise ConfigError(f"{where}: tls_server_name={describe(name)} is not a host name")
    tls = TlsOptions(ca=table["tls_ca"], cert=cert, key=key, server_name=name)
    try:
        tls.context()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        spool = parse_size(table["spool_size"]) if "spool_size" in table else DEFAULT_SPOOL_SIZE
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: spool_size={describe(table['spool_size'])}: {exc}") from None
    if spool < 1 << 20:
        raise ConfigError(f"{where}: spool_size must be at least 1MiB")
    window = table.get("relp_window", DEFAULT_RELP_WINDOW)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_RELP_WINDOW:
        raise ConfigError(f"{where}: relp_window={describe(window)}: use a whole number 1..{MAX_RELP_WINDOW} "
                          f"(messages sent and not yet answered; librelp's default is {DEFAULT_RELP_WINDOW})")
    if "relp_window" in table and target.scheme != "relp":
        raise ConfigError(f"{where}: relp_window is for relp:// destinations, not {target.scheme}://")
    return Destination(url=target.url, scheme=target.scheme, host=target.host, port=target.port, tls=tls,
                       spool_size=spool, relp_window=window)
