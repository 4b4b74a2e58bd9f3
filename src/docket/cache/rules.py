"""Pull-through rules: which repository names are cached from which upstream.

A rule maps a repository prefix (`docker.io`, `team`) to an upstream registry URL.
The longest matching prefix wins, matched on whole path components. Mirror
requests from container runtimes name the upstream host in the `ns` query
parameter instead of a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from docket.errors import ErrorCode, RegistryError
from docket.oci.reference import validate_repository

TAG_DELETED_FORGET = "forget"
TAG_DELETED_KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"


@dataclass(frozen=True, slots=True)
class Rule:
    prefix: str
    url: str
    upstream_prefix: str = ""
    namespace: str = ""
    """Registry host that mirror requests name in `ns`; defaults to the prefix or the URL's host."""
    credentials: Credentials | None = field(default=None, repr=False)
    token_hosts: tuple[str, ...] = ()
    """Hosts besides the upstream's own that may receive the credentials as a token realm."""
    tag_ttl: float = 300.0
    referrers_ttl: float = 3600.0
    max_connections: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 2
    max_retry_after: float = 10.0
    upstream_tag_deleted: str = TAG_DELETED_FORGET
    library_prefix: bool = False
    """Docker Hub: single-component names live under `library/` upstream."""
    referrers_include: tuple[str, ...] = ()
    """Artifact types whose referrer content is synced; empty means all."""
    referrers_exclude: tuple[str, ...] = ()
    referrers_max_size: int | None = None
    """Largest referrer (manifest plus blobs, in bytes) whose content is synced."""
    referrers_depth: int = 3
    """How many levels of referrers of referrers are synced."""
    referrers_wait: float = 10.0
    """Time a referrers API call waits for a sync before responding with what is cached."""
    require_referrers: tuple[str, ...] = ()
    """Artifact types of which one must refer to an image (or a cosign .sig tag exist) before it is served."""

    def syncs_content_of(self, artifact_type: str | None, size: int) -> str | None:
        """Return why a referrer's content is skipped, or None if it is synced."""
        if self.referrers_include and artifact_type not in self.referrers_include:
            return f"artifact type {artifact_type!r} is not in referrers_include"
        if artifact_type in self.referrers_exclude:
            return f"artifact type {artifact_type!r} is in referrers_exclude"
        if self.referrers_max_size is not None and size > self.referrers_max_size:
            return f"{size} bytes exceed referrers_max_size of {self.referrers_max_size}"
        return None

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def mirror_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        first = self.prefix.split("/", 1)[0]
        return first if self.names_host else self.host

    @property
    def names_host(self) -> bool:
        """Whether the namespace was named (`namespace`, or a prefix such as `ghcr.io`), not taken from the URL."""
        return bool(self.namespace) or "." in self.prefix.split("/", 1)[0]

    def upstream_repository(self, remainder: str) -> str:
        if self.library_prefix and remainder and "/" not in remainder:
            remainder = f"library/{remainder}"
        return "/".join(part for part in (self.upstream_prefix, remainder) if part)


@dataclass(frozen=True, slots=True)
class CacheTarget:
    """A repository served from a rule's upstream."""

    rule: Rule
    repository: str
    """The name clients use and Docket stores the cache under."""
    upstream_repository: str


# The well-known public registries, used when the configuration does not turn them off.
EMBEDDED_RULES = (
    Rule(prefix="docker.io", url="https://registry-1.docker.io", library_prefix=True),
    Rule(prefix="ghcr.io", url="https://ghcr.io"),
    Rule(prefix="quay.io", url="https://quay.io"),
    Rule(prefix="registry.k8s.io", url="https://registry.k8s.io"),
    Rule(prefix="public.ecr.aws", url="https://public.ecr.aws"),
    Rule(prefix="mcr.microsoft.com", url="https://mcr.microsoft.com"),
)


class RuleError(ValueError):
    pass


class RuleSet:
    def __init__(self, rules: list[Rule], default_prefix: str | None = None) -> None:
        seen: dict[str, Rule] = {}
        for rule in rules:
            _check_prefix(rule.prefix)
            if rule.prefix in seen:
                raise RuleError(f"rules: prefix {rule.prefix!r} is defined twice; each prefix may have one rule")
            seen[rule.prefix] = rule
        namespaces: dict[str, Rule] = {}
        # Namespaces named by the configuration come first and must be unique. One
        # taken from a rule's URL applies only where no rule names that host, so a
        # `team` rule for https://ghcr.io leaves mirror requests to the `ghcr.io` rule.
        for rule in sorted(rules, key=lambda rule: not rule.names_host):
            other = namespaces.get(rule.mirror_namespace)
            if other is None:
                namespaces[rule.mirror_namespace] = rule
            elif rule.names_host or not other.names_host:
                raise RuleError(
                    f"rules: prefixes {other.prefix!r} and {rule.prefix!r} both serve mirror requests for "
                    f"{rule.mirror_namespace!r}; set a distinct `namespace` on one of them"
                )
        self.rules = sorted(rules, key=lambda rule: len(rule.prefix), reverse=True)
        self._by_namespace = namespaces
        self.default: Rule | None = None
        if default_prefix:
            if default_prefix not in seen:
                raise RuleError(f"cache.default_rule: no rule has the prefix {default_prefix!r}")
            self.default = seen[default_prefix]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def resolve(self, name: str, namespace: str | None = None) -> CacheTarget | None:
        """Return the cache target for a repository name, or None for a hosted repository.

        With `namespace` (a mirror request's `ns` parameter), the name is relative
        to that upstream host; a host no rule serves is rejected with DENIED.
        """
        if namespace is not None:
            rule = self._by_namespace.get(namespace)
            if rule is None:
                raise RegistryError(
                    ErrorCode.DENIED,
                    f"Docket has no pull-through rule for registry {namespace[:200]!r}; "
                    "it only mirrors the registries its rules name",
                )
            target = CacheTarget(rule, f"{rule.prefix}/{name}", rule.upstream_repository(name))
            # The same repository must mean the same upstream content with and without `ns`.
            direct = self._resolve_name(target.repository)
            if direct != target:
                raise RegistryError(
                    ErrorCode.DENIED,
                    f"mirror request for {name[:200]!r} on {namespace[:200]!r} would be stored as "
                    f"{target.repository}, which another rule or a hosted repository owns",
                )
            return target
        return self._resolve_name(name)

    def _resolve_name(self, name: str) -> CacheTarget | None:
        for rule in self.rules:
            if name == rule.prefix or name.startswith(rule.prefix + "/"):
                remainder = name[len(rule.prefix) + 1 :]
                upstream = rule.upstream_repository(remainder)
                if not upstream:
                    return None
                return CacheTarget(rule, name, upstream)
        if self.default is not None:
            return CacheTarget(self.default, name, self.default.upstream_repository(name))
        return None


def _check_prefix(prefix: str) -> None:
    try:
        validate_repository(prefix)
    except RegistryError:
        raise RuleError(
            f"rules: invalid prefix {prefix!r}; use lowercase repository path components "
            "such as 'docker.io' or 'team/app'"
        ) from None
