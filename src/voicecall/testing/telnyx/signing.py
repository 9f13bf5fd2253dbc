"""Signing webhooks the way Telnyx does: Ed25519 over `"{timestamp}|{raw body}"`, base64, sent
in `telnyx-signature-ed25519` with the Unix time in `telnyx-timestamp`. The simulator holds a
test key pair; its public half is what the gateway is configured with."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


@dataclass(frozen=True)
class TestKey:
    """An Ed25519 key pair standing in for a Telnyx account's webhook signing key."""

    __test__ = False  # not a pytest test class

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> TestKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> TestKey:
        """The key pair of a 32-byte seed (deterministic, for fixed test vectors)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key_base64(self) -> str:
        """The public key as the Telnyx portal shows it: base64 of the raw 32 bytes."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    @property
    def public_key_pem(self) -> str:
        return self.private.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign(self, timestamp: str, body: bytes) -> str:
        """The `telnyx-signature-ed25519` value for `body` sent at `timestamp`."""
        return base64.b64encode(self.private.sign(timestamp.encode() + b"|" + body)).decode("ascii")

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Both signature headers for `body`, signed now (or at `timestamp`)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {SIGNATURE_HEADER: self.sign(ts, body), TIMESTAMP_HEADER: ts}


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "TestKey"]
