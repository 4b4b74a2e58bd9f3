"""`Accept` negotiation for manifests."""

from __future__ import annotations

from docket.oci import mediatypes

_WILDCARDS = frozenset({"*/*", "application/*"})


def accepted_types(accept_values: list[str]) -> set[str]:
    """Collect the media types of all `Accept` headers, without parameters such as q."""
    types = set()
    for value in accept_values:
        for item in value.split(","):
            media_type = item.split(";", 1)[0].strip().lower()
            if media_type:
                types.add(media_type)
    return types


def is_acceptable(accept_values: list[str], media_type: str) -> bool:
    """Tell whether a stored manifest of `media_type` may be sent to this client.

    Clients that send no Accept header, a wildcard, or no manifest media type at all
    get what is stored. A client that lists manifest types but not the stored one
    does not: Docker clients rely on that to fall back or report a useful error.
    """
    types = accepted_types(accept_values)
    if not types or types & _WILDCARDS or media_type.lower() in types:
        return True
    return not (types & {t.lower() for t in mediatypes.MANIFEST_TYPES})
