"""The object store's own locks: mutual TLS between SeaweedFS's servers, and signed tokens on top.

SeaweedFS's master, volume and filer answer anyone who reaches their ports: the filer lists, writes and
deletes any object without a key. Only the S3 gateway checks keys. So every other port is bound to
loopback and takes only clients holding the stack's certificate (HTTP and gRPC alike), which lives in
the stack's folder with mode 600; their writes and reads are also signed with JWT keys of the same
folder. A local user without the owner's files gets a refused TLS handshake on every internal port.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path

from .config import Config, write_private

NAME = "latentlab-stack"


def folder(cfg: Config) -> Path:
    return cfg.dir / "tls"


def files(cfg: Config) -> dict[str, Path]:
    base = folder(cfg)
    return {"ca": base / "ca.crt", "cert": base / "node.crt", "key": base / "node.key"}


def ensure(cfg: Config) -> None:
    """A CA and one certificate for every server and client of the store, made once and kept."""
    paths = files(cfg)
    if all(p.is_file() for p in paths.values()):
        return
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem(cert) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    now = datetime.datetime.now(datetime.UTC)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{NAME} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    node = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(ca_name).public_key(node_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(paths["ca"], pem(ca))
    write_private(paths["cert"], pem(node))
    write_private(paths["key"], node_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()).decode())


def security_toml(cfg: Config) -> str:
    """SeaweedFS's security.toml (`weed scaffold -config=security`): mutual TLS everywhere but S3, and JWT."""
    p = {k: str(v) for k, v in files(cfg).items()}
    pair = f'cert = "{p["cert"]}"\nkey = "{p["key"]}"\n'
    lines = [f'[grpc]\nca = "{p["ca"]}"\n']
    for component in ("master", "volume", "filer", "s3", "client"):
        lines.append(f"[grpc.{component}]\n{pair}" + (f'allowed_commonNames = "{NAME}"\n' if component != "client" else ""))
    lines.append(f'[https.client]\nenabled = true\n{pair}ca = "{p["ca"]}"\n')
    for component in ("master", "volume", "filer"):
        lines.append(f'[https.{component}]\n{pair}ca = "{p["ca"]}"\n')
    keys = _jwt_keys(cfg)
    for section, key in keys.items():
        lines.append(f'[{section}]\nkey = "{key}"\nexpires_after_seconds = 60\n')
    return "\n".join(lines)


def _jwt_keys(cfg: Config) -> dict[str, str]:
    """The four signing keys, made once (a restart with new ones would still work, but keep them stable)."""
    path = folder(cfg) / "jwt.keys"
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    if path.is_file():
        saved = dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
        if all(s in saved for s in sections):
            return {s: saved[s] for s in sections}
    keys = {s: secrets.token_urlsafe(32) for s in sections}
    write_private(path, "".join(f"{s} {k}\n" for s, k in keys.items()))
    return keys


def write_config(cfg: Config) -> None:
    """Where `weed` reads it: the folder it runs in (the stack's)."""
    ensure(cfg)
    write_private(cfg.dir / "security.toml", security_toml(cfg))


def ssl_context(cfg: Config):
    """An SSL context that presents the stack's certificate, for this machine's own checks of the store."""
    import ssl

    p = files(cfg)
    ctx = ssl.create_default_context(cafile=str(p["ca"]))
    ctx.load_cert_chain(str(p["cert"]), str(p["key"]))
    return ctx
