"""Client TLS contexts: what they always enforce, and the errors a wrong option gives."""
from __future__ import annotations

import os
import ssl

import pytest

from logger_system.errors import ConfigError
from logger_system.ship.tls import TlsOptions, client_context

from rsyslog_env import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs.make(tmp_path_factory.mktemp("certs"))


def test_a_context_verifies_the_chain_and_the_name_and_speaks_tls_12_or_newer(certs):
    ctx = client_context(ca=certs.ca)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(ctx.get_ca_certs()) == 1  # the given CA only, not the system's store


def test_a_client_certificate_makes_it_mutual(certs):
    client_context(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)
    both = certs.client.cert.parent / "both.pem"
    both.write_bytes(certs.client.cert.read_bytes() + certs.client.key.read_bytes())
    client_context(ca=certs.ca, cert=both)  # the key in the same PEM


def test_the_server_name_is_the_option_else_the_host():
    assert TlsOptions(ca="ca.pem").server_name_for("10.0.0.5") == "10.0.0.5"
    assert TlsOptions(ca="ca.pem", server_name="logs.internal").server_name_for("10.0.0.5") == "logs.internal"


def test_a_missing_ca_names_the_option_and_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"--tls-ca: .*nope.pem does not exist"):
        client_context(ca=tmp_path / "nope.pem")


def test_a_directory_or_a_non_pem_file_is_refused(tmp_path, certs):
    with pytest.raises(ConfigError, match="is not a file"):
        client_context(ca=tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM file"):
        client_context(ca=junk)
    with pytest.raises(ConfigError, match="--tls-cert"):
        client_context(ca=certs.ca, cert=junk, key=certs.client.key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_is_refused(tmp_path, certs):
    key = tmp_path / "k.pem"
    key.write_bytes(certs.client.key.read_bytes())
    key.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read"):
        client_context(ca=certs.ca, cert=certs.client.cert, key=key)


def test_a_certificate_and_a_key_that_are_no_pair_are_refused(certs):
    with pytest.raises(ConfigError, match="not a pair"):
        client_context(ca=certs.ca, cert=certs.client.cert, key=certs.refused.key)
    with pytest.raises(ConfigError, match="no matching private key"):
        client_context(ca=certs.ca, cert=certs.client.cert)


def test_a_key_without_its_certificate_is_refused(certs):
    with pytest.raises(ConfigError, match="without --tls-cert"):
        client_context(ca=certs.ca, key=certs.client.key)


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(tmp_path, certs):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(certs.client.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ConfigError, match="encrypted"):
        client_context(ca=certs.ca, cert=certs.client.cert, key=locked)
