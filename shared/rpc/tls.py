"""TLS on every listener and channel: mutual TLS between the services, certificates picked
up from their files without a restart, and the development CA that ``make certs`` writes.

One set of PEM files a process (``SHOPSENSE_TLS_CERT``, ``SHOPSENSE_TLS_KEY``,
``SHOPSENSE_TLS_CA``; in Kubernetes a Secret mounted at /etc/shopsense/tls/): a service's
certificate is its server certificate and, on the channels it opens, its client
certificate. Servers require a client certificate chaining to the CA.

Rotation. A server's credentials are ``grpc.dynamic_ssl_server_credentials``: gRPC asks
:class:`ReloadingServerCertificate` at every new connection's handshake, and it re-reads
the files when their modification time, size or inode changed (a Kubernetes Secret update
swaps all three files at once through a symlink), so a new connection gets the new
certificate while open connections keep the one they were made with. A new pair whose key
does not match its certificate (files caught mid-update) is ignored and the old one kept
until the pair matches. A channel reads the files when it is created: a long-lived
channel keeps its client certificate for its life, new connections included, so a client
certificate must be renewed before it expires with an overlap (cert-manager renews at
two thirds of the lifetime) and a CA rotated by adding the new CA to the bundle first.

Who is a service. A peer whose verified certificate names ``shopsense-<service>`` (a DNS
subject alternative name or the common name, for a known service) is a service of the
suite; any other certificate from the CA is a storefront or an operator's client, known by
its API key (``shared.rpc.auth``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import structlog

from shared.settings import PORTS

_log = structlog.get_logger("shopsense.rpc")

# The identities a service's certificate carries (and the Kubernetes Service names).
SERVICE_IDENTITIES = frozenset(f"shopsense-{name}" for name in PORTS)
TLS_VARIABLES = ("SHOPSENSE_TLS_CERT", "SHOPSENSE_TLS_KEY", "SHOPSENSE_TLS_CA")
# The file names Kubernetes' TLS Secrets use, and `make certs` too.
CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
CLIENT_CERT_FILE, CLIENT_KEY_FILE, CA_KEY_FILE = "client.crt", "client.key", "ca.key"
# Triton's Kubernetes Services (deploy/base/triton.yaml): the ClusterIP one the services call
# and the headless one whose pods the trainer loads versions on, one by one.
TRITON_NAMES = ("shopsense-triton", "shopsense-triton-pods")
# Hosts a development certificate is valid for: this machine and every Kubernetes Service.
DEV_HOSTS = ("localhost", "127.0.0.1", "::1", *sorted(SERVICE_IDENTITIES), *TRITON_NAMES)
# The development client's name: a storefront or operator, never a service identity.
DEV_CLIENT_NAME = "shopsense-dev-client"


@dataclass(frozen=True)
class TlsFiles:
    """The three PEM files of a process."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_settings(cls, settings: Any) -> TlsFiles | None:
        """The files named by a settings record's ``tls_cert``, ``tls_key``, ``tls_ca``;
        None when none is set. ValueError names the variables of a partial set or a
        missing file."""
        files = (settings.tls_cert, settings.tls_key, settings.tls_ca)
        values = dict(zip(TLS_VARIABLES, files, strict=True))
        if not any(values.values()):
            return None
        missing = [env for env, value in values.items() if not value]
        if missing:
            raise ValueError(
                f"TLS needs all of {', '.join(TLS_VARIABLES)}; not set: {', '.join(missing)}"
            )
        for env, value in values.items():
            if not Path(value).is_file():
                raise ValueError(f"{env}: no such file {value}")
        return cls(*(Path(value) for value in values.values()))

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> TlsFiles | None:
        """``from_settings`` of the SHOPSENSE_TLS_* variables of ``environment`` (a process
        that has no settings record of its own: Triton started by the suite)."""
        cert, key, ca = (environment.get(name, "") for name in TLS_VARIABLES)
        return cls.from_settings(SimpleNamespace(tls_cert=cert, tls_key=key, tls_ca=ca))

    def environment(self) -> dict[str, str]:
        """The SHOPSENSE_TLS_* variables that name these files (a process's environment)."""
        return dict(
            zip(TLS_VARIABLES, (str(p) for p in (self.cert, self.key, self.ca)), strict=True)
        )

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA bundle)."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when any file is replaced: (mtime ns, size, inode) of each."""
        stats = [p.stat() for p in (self.cert, self.key, self.ca)]
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


def _check_pair(cert: bytes, key: bytes) -> None:
    """ValueError unless ``key`` is the private key of ``cert``'s first certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(cert).public_key()
    private = serialization.load_pem_private_key(key, password=None)
    encoding, form = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(encoding, form) != private.public_key().public_bytes(encoding, form):
        raise ValueError("the private key does not match the certificate")


def _server_config(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    cert, key, ca = files.read()
    _check_pair(cert, key)
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


class ReloadingServerCertificate:
    """The certificate fetcher of a server: called by gRPC at each new handshake, it
    answers a new configuration when the files changed, else None (keep the current)."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self.initial = _server_config(files)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        # A stat of three files: about 10 µs a handshake.
        with self._lock:
            try:
                stamp = self._files.stamp()
                if stamp == self._stamp:
                    return None
                config = _server_config(self._files)
            except (OSError, ValueError) as exc:
                # Mid-update or unreadable: keep serving the certificate in use.
                _log.warning("tls_reload_failed", error=str(exc))
                return None
            self._stamp = stamp
            _log.info("tls_reloaded", cert=str(self._files.cert))
            return config


def server_credentials(
    files: TlsFiles,
) -> tuple[grpc.ServerCredentials, ReloadingServerCertificate]:
    """Credentials requiring a client certificate from the CA, reloaded on change."""
    fetcher = ReloadingServerCertificate(files)
    credentials = grpc.dynamic_ssl_server_credentials(
        fetcher.initial, fetcher, require_client_authentication=True
    )
    return credentials, fetcher


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """A channel's credentials: the CA to check the server by, our certificate to show."""
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def peer_service(context: grpc.ServicerContext) -> str:
    """The suite service identity (``shopsense-<service>``) of the caller's verified
    certificate, or "" (no TLS, or a certificate of a storefront or operator)."""
    auth = context.auth_context()
    names = [*auth.get("x509_subject_alternative_name", ()), *auth.get("x509_common_name", ())]
    for raw in names:
        name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if name in SERVICE_IDENTITIES:
            return name
    return ""


# Development certificates -------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, PEM."""

    cert: bytes
    key: bytes


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shopsense development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(common_name: str = "shopsense development CA", days: float = 3650) -> Issued:
    """A self-signed CA (EC P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue(
    ca: Issued,
    common_name: str,
    hosts: tuple[str, ...] = (),
    *,
    server: bool = True,
    days: float = 365,
    valid_from: datetime.datetime | None = None,
) -> Issued:
    """A certificate signed by ``ca`` for ``hosts`` (DNS names or IP addresses), usable by
    a client, and by a server when ``server``; valid from ``valid_from`` (default: now)
    for ``days`` (a negative lifetime is allowed: tests make expired certificates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH, *([ExtendedKeyUsageOID.SERVER_AUTH] * server)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(start, start + datetime.timedelta(days=days)))
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def write_dev_certs(out: Path, days: float = 365) -> dict[str, Path]:
    """``make certs``: under ``out``, a development CA (ca.crt, ca.key, kept when present so
    certificates issued before stay valid), the services' certificate (tls.crt, tls.key:
    server and client, for DEV_HOSTS) and a client's (client.crt, client.key: a storefront
    or operator, not a service identity). Answers the paths by file name."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / CA_FILE).is_file() and (out / CA_KEY_FILE).is_file():
        ca = Issued((out / CA_FILE).read_bytes(), (out / CA_KEY_FILE).read_bytes())
    else:
        ca = new_ca()
        _write(out / CA_FILE, ca.cert)
        _write(out / CA_KEY_FILE, ca.key, private=True)
    service = issue(ca, "shopsense-services", DEV_HOSTS, days=days)
    client = issue(ca, DEV_CLIENT_NAME, (DEV_CLIENT_NAME,), server=False, days=days)
    # Key first: a server re-reading mid-write sees a mismatched pair and keeps the old.
    _write(out / KEY_FILE, service.key, private=True)
    _write(out / CERT_FILE, service.cert)
    _write(out / CLIENT_KEY_FILE, client.key, private=True)
    _write(out / CLIENT_CERT_FILE, client.cert)
    names = (CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE)
    return {name: out / name for name in names}


def dev_service_files(folder: Path) -> TlsFiles:
    """The services' files in a folder that :func:`write_dev_certs` wrote."""
    return TlsFiles(folder / CERT_FILE, folder / KEY_FILE, folder / CA_FILE)


def dev_client_files(folder: Path) -> TlsFiles:
    """The client's (a storefront or operator) files in a folder :func:`write_dev_certs` wrote."""
    return TlsFiles(folder / CLIENT_CERT_FILE, folder / CLIENT_KEY_FILE, folder / CA_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write a development CA and certificates")
    parser.add_argument("out", type=Path, help="folder (make certs: var/certs)")
    parser.add_argument("--days", type=float, default=365, help="lifetime of the certificates")
    args = parser.parse_args(argv)
    paths = write_dev_certs(args.out, args.days)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    out = args.out.resolve()
    print(
        "services: "
        f"SHOPSENSE_TLS_CERT={out / CERT_FILE} SHOPSENSE_TLS_KEY={out / KEY_FILE} "
        f"SHOPSENSE_TLS_CA={out / CA_FILE}\n"
        "clients:  "
        f"SHOPSENSE_TLS_CERT={out / CLIENT_CERT_FILE} SHOPSENSE_TLS_KEY={out / CLIENT_KEY_FILE} "
        f"SHOPSENSE_TLS_CA={out / CA_FILE}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
