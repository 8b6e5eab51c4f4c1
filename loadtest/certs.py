"""A throw-away certificate authority for trying encryption in transit: made with the openssl command line,
a CA and a certificate for 127.0.0.1 and localhost signed by it, valid two days. The TLS tests and
``make demo`` use it; real deployments bring their own certificates."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    """The files of the test CA: its certificate, and a server certificate and key signed by it."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_authority(directory: Path) -> Authority:
    """Make a CA and a certificate for 127.0.0.1/localhost signed by it, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found (Debian package openssl)"

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=whatsup test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    # Kafka's PEM keystore: the private key (PKCS#8, as openssl writes it) followed by the chain.
    (directory / "broker.pem").write_text(
        (directory / "server.key").read_text() + (directory / "server.pem").read_text()
    )
    return Authority(directory / "ca.pem", directory / "server.pem", directory / "server.key")
