"""A test CA and a server certificate for 127.0.0.1 and localhost, written where clients can trust it."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"


def load_or_create_ca(cert_dir: Path) -> trustme.CA:
    """Reuse the CA already in cert_dir so a restarted simulator stays trusted by running clients."""
    cert, key = cert_dir / CA_FILE, cert_dir / CA_KEY_FILE
    if cert.is_file() and key.is_file():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = trustme.CA(organization_name="responders simulator test CA")
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(cert))
    key.touch(mode=0o600)
    ca.private_key_pem.write_to_path(str(key))
    return ca


def server_context(ca: trustme.CA, hosts: tuple[str, ...]) -> ssl.SSLContext:
    """TLS 1.2+ server context offering only HTTP/1.1, so httpx (http2=True) falls back cleanly."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    ca.issue_cert(*hosts).configure_cert(context)
    return context
