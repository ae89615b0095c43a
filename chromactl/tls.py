"""Certificates: a private CA per project, the server certificate it issues, and the
checks an operator's own files must pass. Pure: PEM text in, PEM text out.

ECDSA P-256 keys (a CA and a leaf in ~10 ms; RSA 3072 takes 0.4-0.9 s) that every current
TLS client accepts."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chromactl.errors import ChromactlError

CA_DAYS = 3650
LEAF_DAYS = 397  # what browsers accept for a server certificate; `chromactl tls renew` issues a new one
WARN_DAYS = 30

# Names every server certificate covers: clients on the machine itself.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Issued:
    key: str  # PEM, private
    cert: str  # PEM


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def new_ca(project_name: str, names: tuple[str, ...] = ()) -> Issued:
    """A CA for one project. With `names`, it is name-constrained to them (RFC 5280, critical):
    a client that trusts it trusts it for these names only, so a copy of its key cannot mint
    a certificate for any other host."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"chromactl CA for {project_name}")])
    now = _now()
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=CA_DAYS)))
    if names:
        builder = builder.add_extension(x509.NameConstraints(permitted_subtrees=[_subtree(n) for n in names],
                                                             excluded_subtrees=None), critical=True)
    cert = (builder
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def _subtree(name: str) -> x509.GeneralName:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return x509.DNSName(name)
    return x509.IPAddress(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))


def permitted_names(ca_pem: str) -> tuple[str, ...] | None:
    """The names a CA may sign for (None: no constraint, as CAs of earlier versions)."""
    cert = x509.load_pem_x509_certificate(ca_pem.encode())
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    found = []
    for subtree in constraints.permitted_subtrees or []:
        value = subtree.value
        found.append(str(value.network_address) if isinstance(value, ipaddress._BaseNetwork) else str(value))
    return tuple(found)


def permits(permitted: tuple[str, ...] | None, name: str) -> bool:
    """Whether a CA constrained to `permitted` may sign for `name` (a DNS name also covers
    the names below it, as RFC 5280 says)."""
    if permitted is None:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return any(name == p or name.endswith("." + p) for p in permitted if not _is_address(p))
    return any(_is_address(p) and ipaddress.ip_address(p) == address for p in permitted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


WILDCARDS = ("0.0.0.0", "::", "")


def server_names(host: str, extra: tuple[str, ...] = (), machine: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The names a server certificate must cover: the loopback names, the published address,
    or, published on a wildcard address, the `machine`'s own names and addresses (what remote
    clients use, as Elasticsearch's auto-configuration does); and the --tls-san names."""
    names = list(LOCAL_NAMES)
    if host in WILDCARDS:
        names.extend(machine)
    else:
        names.append(host)
    names.extend(extra)
    return tuple(dict.fromkeys(names))


def issue_server(ca: Issued, names: tuple[str, ...], days: int = LEAF_DAYS) -> Issued:
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


# --- reading and checking ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    names: tuple[str, ...]
    not_after: datetime.datetime
    fingerprint: str  # SHA-256 of the DER, colon-separated hex

    @property
    def days_left(self) -> int:
        return (self.not_after - _now()).days


def fingerprint(cert_pem: str) -> str:
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _first_cert(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(pem.encode())[0]
    except (ValueError, IndexError):
        raise ChromactlError(f"{what}: not a PEM certificate") from None


def cert_info(cert_pem: str, what: str = "certificate") -> CertInfo:
    cert = _first_cert(cert_pem, what)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(v) for v in san.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(names, cert.not_valid_after_utc, fingerprint(cert.public_bytes(serialization.Encoding.PEM).decode()))


def check_server_files(cert_pem: str, key_pem: str, ca_pem: str, host: str, *, where: str) -> CertInfo:
    """An operator's certificate, key and CA: the key matches, the CA signed it, the names
    cover the address it is published on, and it has not expired. One clear error otherwise."""
    cert = _first_cert(cert_pem, f"{where}: the certificate")
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ChromactlError(f"{where}: the key is not an unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.PEM, public)
            != cert.public_key().public_bytes(serialization.Encoding.PEM, public)):
        raise ChromactlError(f"{where}: the key does not match the certificate",
                             hint="give the key the certificate was issued for")
    ca = _first_cert(ca_pem, f"{where}: the CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ChromactlError(f"{where}: the certificate was not issued by the CA given",
                             hint="give the CA (or intermediate) that signed it") from None
    info = cert_info(cert_pem)
    if info.not_after <= _now():
        raise ChromactlError(f"{where}: the certificate expired on {info.not_after:%Y-%m-%d}")
    wanted = [n for n in server_names(host) if n not in LOCAL_NAMES]
    missing = [n for n in wanted if n not in info.names]
    if missing:
        raise ChromactlError(f"{where}: the certificate does not cover {missing[0]} (it names "
                             f"{', '.join(info.names) or 'nothing'})", hint="issue one whose names include it")
    return info
