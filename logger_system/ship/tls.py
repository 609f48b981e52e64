"""Client TLS for every transport: one way to build the SSLContext a shipper connects with.

What a context from `client_context` always does, whatever the options:
  * TLS 1.2 or newer (no SSLv3, TLS 1.0 or 1.1 can be negotiated);
  * the server's chain is verified against `--tls-ca` only (not the system store: a log
    collector is named by the operator, not by whichever public CA will sign for it);
  * the server's name is checked against `--tls-server-name`, else the URL's host; an IP
    address is matched against the certificate's IP SANs;
  * with `--tls-cert` (and `--tls-key`, unless the key is in the same PEM), the client
    presents that certificate: mutual TLS, which rsyslog's `tls.authmode="name"` and
    `x509/name` and `logger-system serve` require.

Every file is checked before OpenSSL sees it, so that a wrong option is a ConfigError
naming the option and the path, not an OpenSSL error code.  Nothing here connects.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from logger_system.errors import ConfigError, shown_path


@dataclass(frozen=True)
class TlsOptions:
    """The TLS keys of one destination (`--tls-ca`, `--tls-cert`, `--tls-key`, `--tls-server-name`)."""

    ca: Path | str
    cert: Path | str | None = None
    key: Path | str | None = None
    server_name: str | None = None

    def server_name_for(self, host: str) -> str:
        """The name the server's certificate must carry: the option, else the URL's host."""
        return self.server_name or host

    def context(self) -> ssl.SSLContext:
        return client_context(ca=self.ca, cert=self.cert, key=self.key)


def _readable(path: Path | str, option: str) -> Path:
    p = Path(path)
    where = shown_path(p)
    if not p.exists():
        raise ConfigError(f"{option}: {where} does not exist")
    if not p.is_file():
        raise ConfigError(f"{option}: {where} is not a file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{option}: {where} cannot be read by this user (uid {os.getuid()})")
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise ConfigError(f"{option}: {where} cannot be read: {e.strerror}") from None
    if b"-----BEGIN " not in head:
        raise ConfigError(f"{option}: {where} is not a PEM file (no '-----BEGIN' line)")
    return p


def _no_passphrase() -> bytes:
    # OpenSSL would otherwise ask for an encrypted key's passphrase on the terminal
    raise ConfigError("--tls-key: the private key is encrypted; give an unencrypted key "
                      "(openssl pkey -in KEY -out KEY.plain), readable by this user only")


def client_context(*, ca: Path | str, cert: Path | str | None = None,
                   key: Path | str | None = None) -> ssl.SSLContext:
    """A client SSLContext: TLS >= 1.2, chain verified against ca, hostname checked.

    cert/key: the client's certificate for mutual TLS; key may be omitted when cert's PEM
    holds the key too.  ConfigError for a missing, unreadable or unusable file.
    """
    if key is not None and cert is None:
        raise ConfigError("--tls-key was given without --tls-cert: give the client certificate too")
    ca_path = _readable(ca, "--tls-ca")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(ca_path))
    except ssl.SSLError as e:
        raise ConfigError(f"--tls-ca: {shown_path(ca_path)} holds no usable CA certificate ({e.reason or e})") from None
    if not ctx.get_ca_certs():
        raise ConfigError(f"--tls-ca: {shown_path(ca_path)} holds no CA certificate")
    if cert is not None:
        cert_path = _readable(cert, "--tls-cert")
        key_path = _readable(key, "--tls-key") if key is not None else None
        try:
            ctx.load_cert_chain(str(cert_path), str(key_path) if key_path else None, password=_no_passphrase)
        except ssl.SSLError as e:
            what = (f"--tls-cert {shown_path(cert_path)} and --tls-key {shown_path(key_path)} are not a pair"
                    if key_path else f"--tls-cert {shown_path(cert_path)} holds no matching private key: give --tls-key")
            raise ConfigError(f"{what} ({e.reason or e})") from None
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
