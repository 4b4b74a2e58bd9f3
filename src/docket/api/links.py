"""`Link` headers (RFC 8288) for paginated lists."""

from __future__ import annotations

import re
from urllib.parse import urlencode

_TOKEN = r"[a-zA-Z0-9!#$&+.^_`|~*-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = rf"\s*;\s*{_TOKEN}(?:\s*=\s*(?:{_QUOTED}|[^\s\",;]*))?"
_LINK_RE = re.compile(rf"<([^>]*)>((?:{_PARAM})*)")
_PARAM_RE = re.compile(rf"\s*;\s*({_TOKEN})(?:\s*=\s*(?:({_QUOTED})|([^\s\",;]*)))?")


def next_link(path: str, params: dict[str, str | int]) -> str:
    """Format the `Link` header value that points a client at the next page."""
    return f'<{path}?{urlencode(params)}>; rel="next"'


def parse_links(header: str) -> dict[str, str]:
    """Map each relation type in a `Link` header to its target URI.

    A link with several relation types (`rel="next last"`) is listed under each.
    Links without `rel` and malformed parts are skipped.
    """
    links: dict[str, str] = {}
    for match in _LINK_RE.finditer(header):
        target, params = match.group(1), match.group(2)
        for param in _PARAM_RE.finditer(params):
            if param.group(1).lower() != "rel":
                continue
            quoted, bare = param.group(2), param.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted[1:-1]) if quoted is not None else bare or ""
            for rel in value.split():
                links.setdefault(rel.lower(), target)
    return links
