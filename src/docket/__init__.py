"""Docket: an OCI registry that caches upstream images together with their referrers."""

__version__ = "0.1.0"
