"""The pull-through cache as one object the API layer talks to."""

from __future__ import annotations

from docket.cache.blobs import CachedBlobs
from docket.cache.manifests import CachedManifests
from docket.cache.rules import CacheTarget, RuleSet
from docket.oci.digest import Digest
from docket.oci.manifest import ParsedManifest
from docket.referrers.sync import ReferrerSync
from docket.registry import Registry
from docket.registry.manifests import StoredManifest
from docket.upstream.client import UpstreamClient


class PullThroughCache:
    def __init__(self, rules: RuleSet, registry: Registry) -> None:
        self.rules = rules
        self.registry = registry
        self.clients = {rule.prefix: UpstreamClient(rule) for rule in rules.rules}
        self.manifests = CachedManifests(registry.content, registry.metadata, registry.manifests, self.clients)
        self.blobs = CachedBlobs(
            registry.content, registry.metadata, self.clients, registry.content_guard, registry.blobs.links
        )
        self.referrers = ReferrerSync(self)
        self.manifests.on_cached.append(self._manifest_cached)

    def _manifest_cached(self, target: CacheTarget, stored: StoredManifest, parsed: ParsedManifest) -> None:
        # Referrers are usually present before a verifier requests them.
        self.referrers.schedule(target, Digest.parse(stored.record.digest))

    async def start(self) -> None:
        ttls = [rule.referrers_ttl for rule in self.rules.rules if rule.referrers_ttl > 0]
        if ttls:
            self.referrers.start_periodic(max(min(ttls), 30.0))

    def resolve(self, name: str, namespace: str | None = None) -> CacheTarget | None:
        """Return where a repository is cached from, or None if it is hosted."""
        return self.rules.resolve(name, namespace)

    async def close(self) -> None:
        await self.referrers.close()
        await self.blobs.close()
        for client in self.clients.values():
            await client.close()
