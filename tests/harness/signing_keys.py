"""Signing keys made locally for tests: a Secure Boot key pair and a cosign-format sigstore key pair.

Nothing here is a real key of anyone's; every key is generated fresh in the test that uses it.

- Secure Boot: what NVIDIA/gpu-driver-container ``rhel9/precompiled/Dockerfile`` makes when no key is given,
  ``openssl req -x509 -new -nodes -utf8 -sha256 -days 36500 -outform DER -out public_key.der -keyout
  private_key.priv``: a self-signed X.509 certificate in DER and its private key in PEM (PKCS#8).
- Sigstore: the format ``cosign generate-key-pair`` writes and containers/image reads for
  ``--sign-by-sigstore-private-key`` (sigstore/sigstore ``pkg/cryptoutils``
  ``MarshalPrivateKeyToEncryptedDER`` via secure-systems-lab ``encrypted.Encrypt``): an ECDSA P-256
  key, PKCS#8 DER, encrypted with NaCl
  secretbox under a scrypt key (N=32768, r=8, p=1), the JSON envelope PEM-armoured as
  ``ENCRYPTED SIGSTORE PRIVATE KEY``; the public key as PEM ``PUBLIC KEY``. This skopeo has no
  ``generate-sigstore-key`` (1.9.3), hence this copy.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from dataclasses import dataclass

import nacl.secret
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import NameOID

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


@dataclass(frozen=True)
class ModuleKeys:
    """``private_key.priv`` (PEM) and ``public_key.der`` (DER certificate), as the Secret holds them."""

    private_key: bytes
    public_key_der: bytes

    @property
    def fingerprint(self) -> str:
        """sha256 of public_key.der, hex: what the pipeline records."""
        return hashlib.sha256(self.public_key_der).hexdigest()

    def secret_data(self) -> dict[str, bytes]:
        """The Secret's files."""
        return {"private_key.priv": self.private_key, "public_key.der": self.public_key_der}


@dataclass(frozen=True)
class SigstoreKeys:
    """``cosign.key`` (encrypted), ``cosign.password`` and ``cosign.pub``, as ``cosign generate-key-pair
    k8s://ns/name`` stores them in a Secret."""

    private_key: bytes
    password: bytes
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        """sha256 of cosign.pub, hex."""
        return hashlib.sha256(self.public_key).hexdigest()

    def secret_data(self) -> dict[str, bytes]:
        """The Secret's files."""
        return {
            "cosign.key": self.private_key,
            "cosign.password": self.password,
            "cosign.pub": self.public_key,
        }


def module_keys(common_name: str = "precompiled-drivers test Secure Boot key") -> ModuleKeys:
    """A fresh self-signed module signing certificate, as NVIDIA's Dockerfile's openssl line makes one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=36500))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ModuleKeys(private, cert.public_bytes(serialization.Encoding.DER))


def sigstore_keys(password: bytes = b"test-passphrase") -> SigstoreKeys:
    """A fresh cosign-format key pair (see the module doc for the format)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(32)
    secret = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(password)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = "\n".join(
        [
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
            *lines,
            "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----",
            "",
        ]
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigstoreKeys(pem.encode(), password, public)


def decrypt_sigstore_key(keys: SigstoreKeys) -> ec.EllipticCurvePrivateKey:
    """The inverse (containers/image's ``loadPrivateKey``), so a test can check the format round-trips."""
    lines = keys.private_key.decode().strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", lines[0]
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    params = envelope["kdf"]["params"]
    secret = Scrypt(
        salt=base64.b64decode(envelope["kdf"]["salt"]), length=32, n=params["N"], r=params["r"], p=params["p"]
    ).derive(keys.password)
    der = nacl.secret.SecretBox(secret).decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["cipher"]["nonce"])
    )
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key
