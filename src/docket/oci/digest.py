"""Content digests (`algorithm:encoded`) as defined by the OCI image spec."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from docket.errors import ErrorCode, RegistryError

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")

# Registered algorithms and the exact form of their encoded part.
_ENCODED_RE = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}

SUPPORTED_ALGORITHMS = tuple(_ENCODED_RE)


@dataclass(frozen=True, order=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate a digest string, raising DIGEST_INVALID on any problem."""
        match = _DIGEST_RE.fullmatch(text)
        if match is None:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"invalid digest {text[:200]!r}")
        algorithm, encoded = match.groups()
        pattern = _ENCODED_RE.get(algorithm)
        if pattern is None:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"unsupported digest algorithm {algorithm!r}; supported: " + ", ".join(SUPPORTED_ALGORITHMS),
            )
        if pattern.fullmatch(encoded) is None:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"invalid {algorithm} digest {text[:200]!r}: expected "
                f"{hashlib.new(algorithm).digest_size * 2} lowercase hex characters",
            )
        return cls(algorithm, encoded)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except RegistryError:
            return False
        return True

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """Return a new hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"
