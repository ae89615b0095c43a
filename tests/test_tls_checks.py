"""The project CA, the server certificates it issues, and the checks an operator's own files
must pass, without Docker: one broken property at a time."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chromactl import tls
from chromactl.errors import ChromactlError


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def ca():
    return tls.new_ca("proj")


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def leaf(ca):
    return tls.issue_server(ca, tls.server_names("10.1.2.3", ("db.example", "*.example.org")))


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_the_ca_is_a_ca_for_ten_years(ca):
    cert = load(ca.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "chromactl CA for proj"
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value == x509.KeyUsage(  # signs certificates and CRLs, nothing else
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False)
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).critical is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == tls.CA_DAYS  # plus the 5 minutes back
    assert_five_minutes_back(cert)
    key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert ca.key.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    cert.verify_directly_issued_by(cert)


def assert_five_minutes_back(cert: x509.Certificate) -> None:
    """Valid from 5 minutes before it was made (clocks differ), to the second."""
    back = tls._now() - cert.not_valid_before_utc
    assert datetime.timedelta(minutes=5) <= back < datetime.timedelta(minutes=5, seconds=30), back


CONSTRAINED_TO = ("localhost", "example.org", "127.0.0.1", "::1")


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def constrained_ca():
    return tls.new_ca("proj", CONSTRAINED_TO)


def verifies(ca: tls.Issued, name: str) -> bool:
    """Whether a real verifier (cryptography's, by RFC 5280) accepts a certificate for `name`
    signed with `ca`'s key, as a client that trusts `ca` and asked for `name` would."""
    try:
        wanted = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        wanted = x509.DNSName(name)
    verifier = verification.PolicyBuilder().store(verification.Store([load(ca.cert)])).build_server_verifier(wanted)
    try:
        verifier.verify(load(tls.issue_server(ca, (name,)).cert), [])
        return True
    except verification.VerificationError:
        return False


def test_the_name_constraints_are_critical_and_typed(constrained_ca):
    """Critical: a client that cannot apply them must refuse the CA, not ignore them. Typed:
    a kind of name (DNS, IP) with no permitted subtree is not constrained at all."""
    constraints = load(constrained_ca.cert).extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [
        x509.DNSName("localhost"), x509.DNSName("example.org"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")), x509.IPAddress(ipaddress.ip_network("::1/128"))]
    assert constraints.value.excluded_subtrees is None
    assert tls.permitted_names(constrained_ca.cert) == CONSTRAINED_TO


@pytest.mark.parametrize("name, signable", [
    ("localhost", True), ("example.org", True), ("db.example.org", True), ("a.b.example.org", True),
    ("127.0.0.1", True), ("::1", True),
    ("badexample.org", False),  # a suffix, not a name below
    ("example.org.evil.com", False), ("other.org", False), ("org", False), ("xlocalhost", False),
    ("10.0.0.1", False), ("127.0.0.2", False), ("::2", False),
    ("a.127.0.0.1", False),  # an address covers no DNS name, even one ending with it
])
def test_a_constrained_ca_signs_for_its_names_and_below_only(constrained_ca, name, signable):
    assert tls.permits(tls.permitted_names(constrained_ca.cert), name) is signable
    assert verifies(constrained_ca, name) is signable  # a client decides the same


@pytest.mark.parametrize("name", ["bank.example.com", "10.0.0.1", "localhost"])
def test_a_ca_of_earlier_versions_without_constraints_signs_for_any_name(ca, name):
    assert tls.permitted_names(ca.cert) is None
    assert tls.permits(None, name) is True and verifies(ca, name)


def test_the_server_certificate(ca, leaf):
    cert = load(leaf.cert)
    cert.verify_directly_issued_by(load(ca.cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "db.example", "*.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = load(ca.cert).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == tls.LEAF_DAYS
    assert_five_minutes_back(cert)
    for extension in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.AuthorityKeyIdentifier):
        assert cert.extensions.get_extension_for_class(extension).critical is False, extension
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    short = load(tls.issue_server(ca, ("a.example",), days=2).cert)
    assert (short.not_valid_after_utc - short.not_valid_before_utc).days == 2
    assert short.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a.example"


@pytest.mark.parametrize("host, extra, names", [
    ("0.0.0.0", (), ("localhost", "127.0.0.1", "::1")),
    ("::", (), ("localhost", "127.0.0.1", "::1")),
    ("", (), ("localhost", "127.0.0.1", "::1")),
    ("127.0.0.1", (), ("localhost", "127.0.0.1", "::1")),  # once
    ("10.0.0.5", (), ("localhost", "127.0.0.1", "::1", "10.0.0.5")),
    ("0.0.0.0", ("db.example", "localhost", "db.example"), ("localhost", "127.0.0.1", "::1", "db.example")),
])
def test_server_names(host, extra, names):
    assert tls.server_names(host, extra) == names


def test_cert_info_and_fingerprint(ca, leaf):
    info = tls.cert_info(leaf.cert)
    assert info.names == ("localhost", "db.example", "*.example.org", "127.0.0.1", "::1", "10.1.2.3")
    assert info.not_after == load(leaf.cert).not_valid_after_utc
    assert info.days_left in (tls.LEAF_DAYS - 1, tls.LEAF_DAYS)
    digest = load(leaf.cert).fingerprint(hashes.SHA256()).hex().upper()
    assert info.fingerprint == ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    assert tls.fingerprint(leaf.cert) == info.fingerprint and len(info.fingerprint) == 95
    assert tls.cert_info(ca.cert).names == ()  # no SAN at all
    assert tls.cert_info(leaf.cert + ca.cert).names == info.names  # the first of a chain
    with pytest.raises(ChromactlError, match="^the server's: not a PEM certificate$"):
        tls.cert_info("garbage", "the server's")
    with pytest.raises(ChromactlError, match="^certificate: not a PEM certificate$"):
        tls.cert_info("")


def test_days_left(leaf, monkeypatch):
    info = tls.cert_info(leaf.cert)
    monkeypatch.setattr(tls, "_now", lambda: info.not_after - datetime.timedelta(days=3, hours=1))
    assert info.days_left == 3
    monkeypatch.setattr(tls, "_now", lambda: info.not_after + datetime.timedelta(hours=1))
    assert info.days_left == -1


def test_an_operators_files_that_are_whole_pass(ca, leaf):
    info = tls.check_server_files(leaf.cert + ca.cert, leaf.key, ca.cert, "10.1.2.3", where="--tls-cert")
    assert info == tls.cert_info(leaf.cert)
    for host in ("0.0.0.0", "127.0.0.1", "::1", "::"):  # loopback and wildcards need no name of their own
        tls.check_server_files(leaf.cert, leaf.key, ca.cert, host, where="w")


def test_each_broken_property_is_named(ca, leaf):
    other_ca = tls.new_ca("other")
    other = tls.issue_server(ca, ("localhost",))
    cases = [
        (("garbage", leaf.key, ca.cert, "10.1.2.3"), "^w: the certificate: not a PEM certificate$", None),
        ((leaf.cert, "garbage", ca.cert, "10.1.2.3"), "^w: the key is not an unencrypted PEM private key$", None),
        ((leaf.cert, other.key, ca.cert, "10.1.2.3"), "^w: the key does not match the certificate",
         "give the key the certificate was issued for"),
        ((leaf.cert, leaf.key, "garbage", "10.1.2.3"), "^w: the CA certificate: not a PEM certificate$", None),
        ((leaf.cert, leaf.key, other_ca.cert, "10.1.2.3"), "^w: the certificate was not issued by the CA given",
         "give the CA (or intermediate) that signed it"),
        ((leaf.cert, leaf.key, ca.cert, "10.9.9.9"), r"^w: the certificate does not cover 10.9.9.9 \(it names localhost, ",
         "issue one whose names include it"),
    ]
    for (cert, key, ca_pem, host), message, hint in cases:
        with pytest.raises(ChromactlError, match=message) as caught:
            tls.check_server_files(cert, key, ca_pem, host, where="w")
        assert caught.value.hint == hint, message
        assert leaf.key not in str(caught.value)


def test_an_encrypted_key_is_refused(leaf):
    key = serialization.load_pem_private_key(leaf.key.encode(), password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret")).decode()
    with pytest.raises(ChromactlError, match="not an unencrypted PEM private key"):
        tls.check_server_files(leaf.cert, encrypted, leaf.cert, "10.1.2.3", where="w")


def test_a_certificate_without_names_covers_nothing(ca):
    bare = _signed_by(ca, san=None)
    with pytest.raises(ChromactlError, match=r"does not cover 10.1.2.3 \(it names nothing\)"):
        tls.check_server_files(bare.cert, bare.key, ca.cert, "10.1.2.3", where="w")


def _signed_by(ca, san=("localhost",), not_after=None) -> tls.Issued:
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = tls._now()
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .issuer_name(load(ca.cert).subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=10)).not_valid_after(not_after or now + datetime.timedelta(days=1)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return tls.Issued(tls._key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def test_expiry_at_the_very_second(ca, monkeypatch):
    leaf = tls.issue_server(ca, ("localhost",))
    not_after = tls.cert_info(leaf.cert).not_after
    monkeypatch.setattr(tls, "_now", lambda: not_after - datetime.timedelta(seconds=1))
    tls.check_server_files(leaf.cert, leaf.key, ca.cert, "127.0.0.1", where="w")
    monkeypatch.setattr(tls, "_now", lambda: not_after)
    with pytest.raises(ChromactlError, match=f"^w: the certificate expired on {not_after:%Y-%m-%d}$"):
        tls.check_server_files(leaf.cert, leaf.key, ca.cert, "127.0.0.1", where="w")
    monkeypatch.undo()
    expired = _signed_by(ca, not_after=tls._now() - datetime.timedelta(days=1))
    with pytest.raises(ChromactlError, match="expired"):
        tls.check_server_files(expired.cert, expired.key, ca.cert, "127.0.0.1", where="w")


def test_now_is_aware_utc():
    now = tls._now()
    assert now.tzinfo is not None and now.utcoffset() == datetime.timedelta(0)
    assert abs((now - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 5
