"""`docket rules list` and `docket rules check`: the pull-through rules and their upstreams."""

from __future__ import annotations

from docket.cache.rules import CacheTarget, Rule, RuleSet
from docket.oci.digest import Digest
from docket.referrers.discovery import ApiNotSupported, ReferrerDiscovery
from docket.units import format_duration
from docket.upstream.auth import basic_header, parse_challenge
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError

# A digest nothing has. The referrers API of a registry that supports it returns an empty index.
PROBE_SUBJECT = Digest("sha256", "0" * 64)


def list_rules(rules: RuleSet) -> str:
    lines = []
    for rule in sorted(rules.rules, key=lambda rule: rule.prefix):
        upstream = rule.url + (f"/{rule.upstream_prefix}" if rule.upstream_prefix else "")
        details = [
            f"ns={rule.mirror_namespace}",
            f"tag_ttl={format_duration(rule.tag_ttl)}",
            f"referrers_ttl={format_duration(rule.referrers_ttl)}",
            "credentials" if rule.credentials else "anonymous",
        ]
        if rule.require_referrers:
            details.append("requires " + ",".join(rule.require_referrers))
        default = " (default rule)" if rules.default is rule else ""
        lines.append(f"{rule.prefix:<24} -> {upstream}{default}  [{'; '.join(details)}]")
    return "\n".join(lines) if lines else "no pull-through rules; every repository is hosted"


async def check_rule(rule: Rule, repository: str | None) -> tuple[bool, list[str]]:
    """Contact the rule's upstream; return whether it is usable and the report lines."""
    client = UpstreamClient(rule)
    lines = [f"{rule.prefix} -> {rule.url}"]
    ok = True
    try:
        session = client.session
        try:
            async with session.get(client.base.with_path("/v2/"), allow_redirects=False) as response:
                status = response.status
                challenge_header = response.headers.get("WWW-Authenticate")
        except Exception as error:
            lines.append(f"  reachable: no ({type(error).__name__}: {error})")
            return False, lines
        lines.append(f"  reachable: yes (GET /v2/ responded {status})")
        challenge = parse_challenge(challenge_header or "") if status == 401 else None
        probe_repository = repository or rule.upstream_repository(
            "library/alpine" if rule.library_prefix else "docket-probe"
        )
        if challenge is None:
            lines.append(
                "  authentication: not required" if status == 200 else f"  authentication: unexpected status {status}"
            )
        elif challenge.scheme == "basic":
            if rule.credentials is None:
                lines.append("  authentication: basic auth required, but the rule has no credentials")
                ok = False
            else:
                headers = {"Authorization": basic_header(rule.credentials)}
                async with session.get(client.base.with_path("/v2/"), headers=headers) as response:
                    accepted = response.status == 200
                lines.append(f"  credentials: {'accepted' if accepted else f'rejected ({response.status})'}")
                ok &= accepted
        else:
            client.auth.learn(challenge_header)
            try:
                await client.auth.authorization(f"repository:{probe_repository}:pull")
                who = "credentials accepted" if rule.credentials else "anonymous token issued"
                lines.append(f"  authentication: bearer token from {challenge.params.get('realm', '?')}: {who}")
            except UpstreamError as error:
                if rule.credentials is not None and error.status in (401, 403):
                    lines.append(f"  credentials: rejected (the token service answered {error.status})")
                else:
                    lines.append(f"  authentication: token request failed: {error}")
                ok = False
        discovery = ReferrerDiscovery()
        try:
            target = CacheTarget(rule, rule.prefix, probe_repository)
            await discovery.list_from_api(client, target, PROBE_SUBJECT)
            lines.append(f"  referrers API: supported (probed on {probe_repository})")
        except ApiNotSupported as reason:
            lines.append(f"  referrers API: not supported ({reason}); the referrers tag schema is used instead")
        except UpstreamError as error:
            lines.append(f"  referrers API: unknown ({error}); pass --repository with a repository that exists")
    finally:
        await client.close()
    return ok, lines
