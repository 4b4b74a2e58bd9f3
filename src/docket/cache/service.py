"""The pull-through cache as one object the API layer talks to."""

from __future__ import annotations

from docket.cache.blobs import CachedBlobs
from docket.cache.manifests import CachedManifests
from docket.cache.rules import CacheTarget, RuleSet
from docket.registry import Registry
from docket.upstream.client import UpstreamClient


class PullThroughCache:
    def __init__(self, rules: RuleSet, registry: Registry) -> None:
        self.rules = rules
        self.registry = registry
        self.clients = {rule.prefix: UpstreamClient(rule) for rule in rules.rules}
        self.manifests = CachedManifests(registry.content, registry.metadata, registry.manifests, self.clients)
        self.blobs = CachedBlobs(registry.content, registry.metadata, self.clients)

    def resolve(self, name: str, namespace: str | None = None) -> CacheTarget | None:
        """Return where a repository is cached from, or None if it is hosted."""
        return self.rules.resolve(name, namespace)

    async def close(self) -> None:
        await self.blobs.close()
        for client in self.clients.values():
            await client.close()
