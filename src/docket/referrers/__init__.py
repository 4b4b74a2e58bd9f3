"""Referrers of cached images: discovery at the upstream, sync into the cache, serving and policy."""
