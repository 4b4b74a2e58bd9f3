"""OCI error codes and the domain exception that carries them.

Code below the HTTP layer raises `RegistryError`; the API middleware turns it into
the distribution-spec JSON error body. Each code is registered once with its
default HTTP status.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """Error codes of the OCI distribution spec, each with its default HTTP status."""

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404)
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400)
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404)
    DIGEST_INVALID = ("DIGEST_INVALID", 400)
    MANIFEST_BLOB_UNKNOWN = ("MANIFEST_BLOB_UNKNOWN", 400)
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400)
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404)
    NAME_INVALID = ("NAME_INVALID", 400)
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404)
    SIZE_INVALID = ("SIZE_INVALID", 400)
    UNAUTHORIZED = ("UNAUTHORIZED", 401)
    DENIED = ("DENIED", 403)
    UNSUPPORTED = ("UNSUPPORTED", 405)
    TOOMANYREQUESTS = ("TOOMANYREQUESTS", 429)
    # Not in the spec's table; CNCF distribution uses these codes for unsatisfiable
    # ranges and for an unavailable service, and Docket for upstream failures.
    RANGE_INVALID = ("RANGE_INVALID", 416)
    UNAVAILABLE = ("UNAVAILABLE", 503)

    @property
    def status(self) -> int:
        return self.value[1]


class RegistryError(Exception):
    """A failure that the API reports to the client as an OCI JSON error."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else code.status
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}
