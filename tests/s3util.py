"""A real S3 protocol server for tests: moto_server on 127.0.0.1, over HTTP or HTTPS.

HTTPS uses a self-signed certificate made here for the IP 127.0.0.1, and the store trusts
exactly that certificate (`ca_file`), as production trusts a private CA for MinIO. Object
Lock uploads need HTTPS with the minio SDK (it sends Content-MD5 only there).

The fixtures are session-scoped; a test module outside tests/storage imports them by name.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from storage import S3ObjectStore

ACCESS_KEY = "testing-access"
SECRET_KEY = "testing-secret"


@dataclass(frozen=True)
class S3Server:
    """Where a moto server listens; `ca_file` is set when it speaks HTTPS."""

    endpoint: str
    ca_file: str | None = None

    @property
    def host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> None:
    """Wait for moto's "Running on" line; its stderr keeps being drained afterwards (a full
    pipe would block the server)."""
    serving = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Running on" in line:
                serving.set()

    threading.Thread(target=drain, daemon=True).start()
    if not serving.wait(timeout_s):
        raise RuntimeError(f"moto_server did not start within {timeout_s} s ({proc.poll()=})")


def make_self_signed_cert(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed server certificate for `ip` (IP SAN) and its key, as PEM files.

    It is its own CA (basicConstraints CA:TRUE, keyCertSign) so that OpenSSL accepts it as
    the trust anchor given in `ca_file`, and a server certificate (serverAuth, the IP SAN).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"moto test server {ip}")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "s3-cert.pem", directory / "s3-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _moto_command() -> str:
    exe = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "moto_server"
    cmd = str(exe) if exe.exists() else shutil.which("moto_server")
    assert cmd is not None, "moto_server is installed by ./dev.sh test (the test extras)"
    return cmd


def run_moto(tls_dir: Path | None = None) -> Iterator[S3Server]:
    """Run one moto server until the generator is closed; HTTPS when `tls_dir` is given
    (the certificate and key are written there)."""
    port = free_port()
    cmd = [_moto_command(), "-H", "127.0.0.1", "-p", str(port)]
    ca_file = None
    if tls_dir is not None:
        cert, key = make_self_signed_cert(tls_dir)
        cmd += ["-c", str(cert), "-k", str(key)]
        ca_file = str(cert)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(proc)
        yield S3Server(f"127.0.0.1:{port}", ca_file)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 protocol server (moto) over plain HTTP on 127.0.0.1, for the whole session."""
    for server in run_moto():
        yield server.endpoint


@pytest.fixture(scope="session")
def moto_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto over HTTPS with a self-signed certificate for 127.0.0.1 (`ca_file`)."""
    yield from run_moto(tmp_path_factory.mktemp("moto-tls"))


def make_s3_store(
    endpoint: str,
    *,
    object_lock: bool = True,
    ca_file: str | None = None,
    bucket: str | None = None,
    timeout_s: float = 10,
    retries: int = 0,
) -> S3ObjectStore:
    """A store on a fresh bucket (or `bucket`); HTTPS, trusting `ca_file`, when it is given."""
    return S3ObjectStore(
        endpoint,
        ACCESS_KEY,
        SECRET_KEY,
        bucket or f"test-{uuid.uuid4().hex[:16]}",
        region="us-east-1",
        secure=ca_file is not None,
        ca_file=ca_file,
        object_lock=object_lock,
        timeout_s=timeout_s,
        retries=retries,
    )
