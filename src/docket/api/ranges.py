"""Byte ranges: the `Range` request header (RFC 9110, section 14) and upload `Content-Range`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_SPEC_RE = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
_UPLOAD_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")
# int() refuses strings over 4300 digits; no offset that long can fit any blob,
# so such a number stands for "beyond the end".
_MAX_DIGITS = 4000
_HUGE = 10**_MAX_DIGITS


def _to_int(text: str) -> int:
    return _HUGE if len(text) > _MAX_DIGITS else int(text)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range within a representation of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range is satisfiable for {size} bytes")
        self.size = size

    def content_range(self) -> str:
        return f"bytes */{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Resolve a `Range` header against a representation of `size` bytes.

    Returns None when the whole representation should be sent: no header, a unit
    other than bytes, a syntax error, or several ranges. RFC 9110 lets a server
    ignore the header, and no registry client requests a multipart body. Raises
    RangeNotSatisfiable when the single range lies
    outside the content or ends before it starts (RFC 9110 allows rejecting an
    invalid range, and the OCI conformance suite expects 416 for `bytes=500-0`).
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    match = _RANGE_SPEC_RE.fullmatch(spec)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = _to_int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(size)
        if size == 0:
            return None  # RFC 9110: a non-zero suffix of an empty representation is all of it
        return ByteRange(max(size - suffix, 0), size - 1, size)
    first = _to_int(first_text)
    last = _to_int(last_text) if last_text else None
    if first >= size or (last is not None and last < first):
        raise RangeNotSatisfiable(size)
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end, size)


def parse_upload_range(header: str) -> tuple[int, int] | None:
    """Parse a chunk's `Content-Range` (`<start>-<end>`, inclusive) as sent by upload clients.

    The distribution spec's form has no unit; the RFC form `bytes <start>-<end>/<size>`
    is accepted as well. Returns None when the header is malformed.
    """
    match = _UPLOAD_RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    if max(len(match.group(1)), len(match.group(2))) > _MAX_DIGITS:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        return None
    return start, end
