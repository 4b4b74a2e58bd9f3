"""Unit tests of pull-through rules: RuleSet matching, `[[rules]]` parsing, build_rules and durations.

No server is started and nothing is sent over the network: the embedded public
rules are only resolved, never contacted.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from docket.cache.rule_config import RuleConfigError, check_url, rule_from_table
from docket.cache.rules import EMBEDDED_RULES, Credentials, Rule, RuleError, RuleSet
from docket.config import Config, ConfigError, build_rules, config_from_mapping, load_config
from docket.errors import ErrorCode, RegistryError
from docket.units import format_duration, parse_duration

UPSTREAM_A = "http://127.0.0.1:5001"
UPSTREAM_B = "http://127.0.0.1:5002"
UPSTREAM_C = "http://127.0.0.1:5003"
EMBEDDED_PREFIXES = {"docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "public.ecr.aws", "mcr.microsoft.com"}
DEFAULTS = Rule(prefix="", url="")


def write_config(folder: Path, text: str) -> Path:
    path = folder / "docket.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def nested_rules() -> RuleSet:
    return RuleSet(
        [
            Rule(prefix="team", url=UPSTREAM_A),
            Rule(prefix="team/app", url=UPSTREAM_B),
            Rule(prefix="mirror.example", url=UPSTREAM_C),
        ]
    )


# Longest prefix on whole path components


@pytest.mark.parametrize(
    ("name", "prefix", "upstream"),
    [
        pytest.param("team/web", "team", "web", id="short-rule"),
        pytest.param("team/web/api", "team", "web/api", id="short-rule-deep"),
        pytest.param("team/app/x", "team/app", "x", id="long-rule"),
        pytest.param("team/app/x/y", "team/app", "x/y", id="long-rule-deep"),
        pytest.param("team/appx", "team", "appx", id="longer-component"),
        pytest.param("team/app-x/y", "team", "app-x/y", id="component-with-dash"),
        pytest.param("mirror.example/lib/img", "mirror.example", "lib/img", id="dotted-prefix"),
    ],
)
def test_resolve_longest_prefix(name: str, prefix: str, upstream: str) -> None:
    target = nested_rules().resolve(name)
    assert target is not None
    assert target.rule.prefix == prefix
    assert target.repository == name
    assert target.upstream_repository == upstream


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("teamx/app", id="longer-first-component"),
        pytest.param("teams", id="prefix-plus-letter"),
        pytest.param("other/team/app", id="prefix-not-at-start"),
        pytest.param("mirror/example/x", id="dot-is-not-slash"),
        pytest.param("hosted", id="single-component"),
    ],
)
def test_resolve_no_match_is_hosted(name: str) -> None:
    assert nested_rules().resolve(name) is None


def test_resolve_prefix_alone_is_hosted() -> None:
    assert RuleSet([Rule(prefix="team", url=UPSTREAM_A)]).resolve("team") is None


def test_resolve_prefix_alone_with_upstream_prefix() -> None:
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A, upstream_prefix="org/team")])
    target = rules.resolve("team")
    assert target is not None
    assert target.upstream_repository == "org/team"


def test_resolve_order_independent() -> None:
    forward = [Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="team/app", url=UPSTREAM_B)]
    for rules in (forward, list(reversed(forward))):
        target = RuleSet(rules).resolve("team/app/x")
        assert target is not None
        assert target.rule.prefix == "team/app"


def test_resolve_upstream_prefix() -> None:
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A, upstream_prefix="org/team")])
    target = rules.resolve("team/app")
    assert target is not None
    assert target.repository == "team/app"
    assert target.upstream_repository == "org/team/app"


def test_resolve_library_prefix() -> None:
    rules = RuleSet([Rule(prefix="hub", url=UPSTREAM_A, library_prefix=True)])
    single = rules.resolve("hub/alpine")
    nested = rules.resolve("hub/org/img")
    assert single is not None
    assert single.upstream_repository == "library/alpine"
    assert nested is not None
    assert nested.upstream_repository == "org/img"


def test_resolve_empty_ruleset() -> None:
    rules = RuleSet([])
    assert not rules
    assert rules.resolve("team/app") is None


# Mirror namespaces (the `ns` query parameter)


def test_mirror_namespace_sources() -> None:
    assert Rule(prefix="team", url=UPSTREAM_A).mirror_namespace == "127.0.0.1:5001"
    assert Rule(prefix="mirror.example", url=UPSTREAM_A).mirror_namespace == "mirror.example"
    assert Rule(prefix="mirror.example/sub", url=UPSTREAM_A).mirror_namespace == "mirror.example"
    assert Rule(prefix="team", url=UPSTREAM_A, namespace="registry.test").mirror_namespace == "registry.test"


def test_resolve_namespace() -> None:
    rules = RuleSet(
        [
            Rule(prefix="team", url=UPSTREAM_A, upstream_prefix="org"),
            Rule(prefix="named", url=UPSTREAM_B, namespace="registry.test"),
        ]
    )
    by_host = rules.resolve("app", namespace="127.0.0.1:5001")
    by_name = rules.resolve("lib/img", namespace="registry.test")
    assert by_host is not None
    assert by_host.rule.prefix == "team"
    assert by_host.repository == "team/app"
    assert by_host.upstream_repository == "org/app"
    assert by_name is not None
    assert by_name.rule.prefix == "named"
    assert by_name.repository == "named/lib/img"
    assert by_name.upstream_repository == "lib/img"


def test_resolve_unknown_namespace_denied() -> None:
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A)])
    with pytest.raises(RegistryError) as info:
        rules.resolve("app", namespace="unknown.invalid")
    assert info.value.code is ErrorCode.DENIED
    assert "unknown.invalid" in info.value.message


def test_resolve_namespace_ignores_prefixes() -> None:
    """With `ns`, the name is relative to that registry even if it starts like a prefix."""
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="other", url=UPSTREAM_B)])
    target = rules.resolve("other/app", namespace="127.0.0.1:5001")
    assert target is not None
    assert target.rule.prefix == "team"
    assert target.upstream_repository == "other/app"


def test_resolve_namespace_round_trip() -> None:
    """The repository a mirror request is stored under resolves to the same rule without `ns`."""
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="team/app", url=UPSTREAM_B)])
    mirrored = rules.resolve("web", namespace="127.0.0.1:5001")
    assert mirrored is not None
    prefixed = rules.resolve(mirrored.repository)
    assert prefixed is not None
    assert prefixed.rule.prefix == mirrored.rule.prefix
    assert prefixed.upstream_repository == mirrored.upstream_repository


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("app/x", id="longer-rule-owns-name"),
        pytest.param("app", id="name-is-hosted-prefix"),
    ],
)
def test_resolve_namespace_clash_denied(name: str) -> None:
    """A mirror request whose storage name belongs to another rule or a hosted repository is refused.

    Otherwise a mirror request and a prefixed request would share one stored
    repository (tags included) while naming different upstreams, or a hosted one.
    """
    rules = RuleSet([Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="team/app", url=UPSTREAM_B)])
    with pytest.raises(RegistryError) as info:
        rules.resolve(name, namespace="127.0.0.1:5001")
    assert info.value.code is ErrorCode.DENIED


def test_default_rule_serves_unprefixed() -> None:
    rules = RuleSet(
        [Rule(prefix="hub", url=UPSTREAM_A, library_prefix=True), Rule(prefix="team", url=UPSTREAM_B)],
        default_prefix="hub",
    )
    unprefixed = rules.resolve("alpine")
    prefixed = rules.resolve("team/app")
    assert unprefixed is not None
    assert unprefixed.rule.prefix == "hub"
    assert unprefixed.upstream_repository == "library/alpine"
    assert prefixed is not None
    assert prefixed.rule.prefix == "team"


def test_default_rule_unknown_prefix() -> None:
    with pytest.raises(RuleError, match="default_rule"):
        RuleSet([Rule(prefix="team", url=UPSTREAM_A)], default_prefix="hub")


# Rejected rule sets


def test_ruleset_duplicate_prefix() -> None:
    rules = [Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="team", url=UPSTREAM_B)]
    with pytest.raises(RuleError, match="'team' is defined twice"):
        RuleSet(rules)


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("Team", id="uppercase"),
        pytest.param("team/", id="trailing-slash"),
        pytest.param("/team", id="leading-slash"),
        pytest.param("team//app", id="empty-component"),
        pytest.param("-team", id="leading-dash"),
        pytest.param("127.0.0.1:5000", id="port"),
        pytest.param("team app", id="space"),
    ],
)
def test_ruleset_invalid_prefix(prefix: str) -> None:
    with pytest.raises(RuleError, match="invalid prefix"):
        RuleSet([Rule(prefix=prefix, url=UPSTREAM_A)])


def test_ruleset_same_namespace_from_url() -> None:
    rules = [Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="other", url=UPSTREAM_A)]
    with pytest.raises(RuleError, match="both serve mirror requests for '127.0.0.1:5001'"):
        RuleSet(rules)


def test_ruleset_same_namespace_configured() -> None:
    rules = [
        Rule(prefix="mirror.example", url=UPSTREAM_A),
        Rule(prefix="team", url=UPSTREAM_B, namespace="mirror.example"),
    ]
    with pytest.raises(RuleError, match="mirror.example"):
        RuleSet(rules)


def test_ruleset_distinct_namespace_allowed() -> None:
    rules = [Rule(prefix="team", url=UPSTREAM_A), Rule(prefix="other", url=UPSTREAM_A, namespace="other.test")]
    assert len(RuleSet(rules).rules) == 2


def test_credentials_repr_hides_password() -> None:
    rule = Rule(prefix="team", url=UPSTREAM_A, credentials=Credentials("robot", "s3cret-value"))
    assert "s3cret-value" not in repr(rule)
    assert "s3cret-value" not in repr(rule.credentials)


# One [[rules]] table


def test_rule_table_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_TEST_RULE_USER", "robot")
    (tmp_path / "secret.txt").write_text("from-file\n", encoding="utf-8")
    table = {
        "prefix": "/team/",
        "url": UPSTREAM_A + "/",
        "upstream_prefix": "/org/team/",
        "namespace": "registry.test",
        "username_env": "DOCKET_TEST_RULE_USER",
        "password_file": "secret.txt",
        "token_hosts": ["Auth.Example"],
        "tag_ttl": "1h30m",
        "referrers_ttl": 0,
        "max_connections": 4,
        "connect_timeout": "5s",
        "read_timeout": "2m",
        "retries": 0,
        "max_retry_after": "500ms",
        "upstream_tag_deleted": "keep",
        "library_prefix": True,
    }

    rule = rule_from_table(table, "rules[0]", DEFAULTS, tmp_path)

    assert rule == Rule(
        prefix="team",
        url=UPSTREAM_A,
        upstream_prefix="org/team",
        namespace="registry.test",
        credentials=Credentials("robot", "from-file"),
        token_hosts=("auth.example",),
        tag_ttl=5400.0,
        referrers_ttl=0.0,
        max_connections=4,
        connect_timeout=5.0,
        read_timeout=120.0,
        retries=0,
        max_retry_after=0.5,
        upstream_tag_deleted="keep",
        library_prefix=True,
    )
    assert rule.credentials == Credentials("robot", "from-file")


def test_rule_table_password_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKET_TEST_RULE_PASSWORD", "pw")
    table = {"prefix": "team", "url": UPSTREAM_A, "username": "robot", "password_env": "DOCKET_TEST_RULE_PASSWORD"}
    rule = rule_from_table(table, "rules[0]", DEFAULTS, tmp_path)
    assert rule.credentials == Credentials("robot", "pw")


def test_rule_table_defaults_from_cache(tmp_path: Path) -> None:
    defaults = replace(DEFAULTS, tag_ttl=60.0, referrers_ttl=120.0)
    rule = rule_from_table({"prefix": "team", "url": UPSTREAM_A}, "rules[0]", defaults, tmp_path)
    assert rule.tag_ttl == 60.0
    assert rule.referrers_ttl == 120.0
    assert rule.credentials is None


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        pytest.param({"url": UPSTREAM_A}, "rules[0].prefix", "missing", id="no-prefix"),
        pytest.param({"prefix": "team"}, "rules[0].url", "missing", id="no-url"),
        pytest.param({"prefix": "team", "url": UPSTREAM_A, "ttl": "5m"}, "rules[0].ttl", "unknown key", id="unknown"),
        pytest.param({"prefix": 5, "url": UPSTREAM_A}, "rules[0].prefix", "expected a string", id="prefix-int"),
        pytest.param(
            {"prefix": "team", "url": "ftp://127.0.0.1"}, "rules[0].url", "invalid upstream URL", id="url-ftp"
        ),
        pytest.param(
            {"prefix": "team", "url": "127.0.0.1:5000"}, "rules[0].url", "invalid upstream URL", id="url-bare"
        ),
        pytest.param({"prefix": "team", "url": "http://"}, "rules[0].url", "invalid upstream URL", id="url-no-host"),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A + "/v2/org"}, "rules[0].url", "upstream_prefix", id="url-path"
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A + "?x=1"}, "rules[0].url", "invalid upstream URL", id="url-query"
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A + "#x"}, "rules[0].url", "invalid upstream URL", id="url-fragment"
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "tag_ttl": "5x"}, "rules[0].tag_ttl", "invalid duration", id="ttl-5x"
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "referrers_ttl": -1},
            "rules[0].referrers_ttl",
            "must not be negative",
            id="ttl-negative",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "max_connections": 0},
            "rules[0].max_connections",
            "at least 1",
            id="connections-zero",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "retries": -1},
            "rules[0].retries",
            "at least 0",
            id="retries-negative",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "retries": True},
            "rules[0].retries",
            "expected an integer",
            id="retries-bool",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "upstream_tag_deleted": "drop"},
            "rules[0].upstream_tag_deleted",
            "'forget' or 'keep'",
            id="tag-deleted",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "library_prefix": "yes"},
            "rules[0].library_prefix",
            "true or false",
            id="library-string",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "token_hosts": "auth.example"},
            "rules[0].token_hosts",
            "list of host names",
            id="token-hosts-string",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "password_env": "DOCKET_TEST_UNSET_VARIABLE", "username": "u"},
            "rules[0].password_env",
            "DOCKET_TEST_UNSET_VARIABLE is not set",
            id="password-env-unset",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "username_env": "DOCKET_TEST_UNSET_VARIABLE"},
            "rules[0].username_env",
            "is not set",
            id="username-env-unset",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "username": "robot"},
            "rules[0]",
            "both a username and a password",
            id="username-only",
        ),
        pytest.param(
            {"prefix": "team", "url": UPSTREAM_A, "password_file": "absent.txt", "username": "robot"},
            "rules[0].password_file",
            "cannot read",
            id="password-file-missing",
        ),
    ],
)
def test_rule_table_invalid(tmp_path: Path, table: dict[str, object], key: str, problem: str) -> None:
    assert "DOCKET_TEST_UNSET_VARIABLE" not in os.environ
    with pytest.raises(RuleConfigError) as info:
        rule_from_table(table, "rules[0]", DEFAULTS, tmp_path)
    message = str(info.value)
    assert message.startswith(key)
    assert problem in message


def test_rule_table_both_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_TEST_RULE_PASSWORD", "pw")
    (tmp_path / "secret.txt").write_text("pw", encoding="utf-8")
    table = {
        "prefix": "team",
        "url": UPSTREAM_A,
        "username": "robot",
        "password_env": "DOCKET_TEST_RULE_PASSWORD",
        "password_file": "secret.txt",
    }
    with pytest.raises(RuleConfigError, match="not both"):
        rule_from_table(table, "rules[0]", DEFAULTS, tmp_path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("https://registry.example/", "https://registry.example"),
    ],
)
def test_check_url_valid(url: str, expected: str) -> None:
    assert check_url(url, "rules[0].url") == expected


# build_rules: the configuration file, flags and embedded rules together


def test_embedded_rules_default() -> None:
    rules = build_rules(Config())
    assert {rule.prefix for rule in rules.rules} == EMBEDDED_PREFIXES
    assert rules.default is None


def test_embedded_rules_turned_off(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "[cache]\nembedded_rules = false\n"))
    assert not build_rules(config)


@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        pytest.param("docker.io/alpine", "library/alpine", id="docker-single"),
        pytest.param("docker.io/library/alpine", "library/alpine", id="docker-library"),
        pytest.param("docker.io/org/img", "org/img", id="docker-org"),
        pytest.param("ghcr.io/org/img", "org/img", id="ghcr"),
        pytest.param("ghcr.io/img", "img", id="ghcr-single"),
        pytest.param("quay.io/org/img", "org/img", id="quay"),
        pytest.param("registry.k8s.io/pause", "pause", id="k8s"),
        pytest.param("public.ecr.aws/org/img", "org/img", id="ecr"),
        pytest.param("mcr.microsoft.com/dotnet/runtime", "dotnet/runtime", id="mcr"),
    ],
)
def test_embedded_rules_resolve(name: str, upstream: str) -> None:
    target = build_rules(Config()).resolve(name)
    assert target is not None
    assert target.repository == name
    assert target.upstream_repository == upstream


def test_embedded_rules_urls() -> None:
    urls = {rule.prefix: rule.url for rule in build_rules(Config()).rules}
    assert urls == {rule.prefix: rule.url for rule in EMBEDDED_RULES}
    assert urls["docker.io"] == "https://registry-1.docker.io"


def test_embedded_rules_mirror_namespaces() -> None:
    rules = build_rules(Config())
    hub = rules.resolve("alpine", namespace="docker.io")
    ghcr = rules.resolve("org/img", namespace="ghcr.io")
    assert hub is not None
    assert hub.repository == "docker.io/alpine"
    assert hub.upstream_repository == "library/alpine"
    assert ghcr is not None
    assert ghcr.repository == "ghcr.io/org/img"


def test_embedded_rules_take_cache_ttls(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, '[cache]\ntag_ttl = "1m"\nreferrers_ttl = "2h"\n'))
    for rule in build_rules(config).rules:
        assert rule.tag_ttl == 60.0, rule.prefix
        assert rule.referrers_ttl == 7200.0, rule.prefix


def test_configured_rule_replaces_embedded(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f'[[rules]]\nprefix = "docker.io"\nurl = "{UPSTREAM_A}"\n',
    )
    rules = build_rules(load_config(path))
    by_prefix = {rule.prefix: rule for rule in rules.rules}
    target = rules.resolve("docker.io/alpine")
    assert len(rules.rules) == len(EMBEDDED_PREFIXES)
    assert by_prefix["docker.io"].url == UPSTREAM_A
    assert by_prefix["ghcr.io"].url == "https://ghcr.io"
    assert target is not None
    assert target.rule.url == UPSTREAM_A
    assert target.upstream_repository == "alpine"


def test_configured_rule_with_embedded(tmp_path: Path) -> None:
    path = write_config(tmp_path, f'[[rules]]\nprefix = "team"\nurl = "{UPSTREAM_A}"\ntag_ttl = "30s"\n')
    rules = build_rules(load_config(path))
    target = rules.resolve("team/app")
    assert {rule.prefix for rule in rules.rules} == EMBEDDED_PREFIXES | {"team"}
    assert target is not None
    assert target.rule.tag_ttl == 30.0


def test_cli_rule_and_credentials() -> None:
    config = Config(
        cache=replace(Config().cache, embedded_rules=False),
        cli_rules=(("team", UPSTREAM_A),),
        cli_credentials=(("team", "robot", "pw"),),
    )
    rules = build_rules(config)
    assert [rule.prefix for rule in rules.rules] == ["team"]
    assert rules.rules[0].credentials == Credentials("robot", "pw")


def test_cli_credentials_for_embedded_rule() -> None:
    rules = build_rules(Config(cli_credentials=(("docker.io", "robot", "pw"),)))
    by_prefix = {rule.prefix: rule for rule in rules.rules}
    assert by_prefix["docker.io"].credentials == Credentials("robot", "pw")


def test_cli_credentials_unknown_prefix() -> None:
    config = Config(cache=replace(Config().cache, embedded_rules=False), cli_credentials=(("team", "robot", "pw"),))
    with pytest.raises(ConfigError, match="--upstream-credentials: no rule has the prefix 'team'"):
        build_rules(config)


def test_cli_rule_invalid_url() -> None:
    with pytest.raises(ConfigError, match="--upstream team.url: invalid upstream URL"):
        build_rules(Config(cli_rules=(("team", "registry.example"),)))


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        pytest.param(
            f'[[rules]]\nprefix = "team"\nurl = "{UPSTREAM_A}"\n[[rules]]\nprefix = "team"\nurl = "{UPSTREAM_B}"\n',
            "rules[1].prefix",
            "already used",
            id="duplicate-prefix",
        ),
        pytest.param(
            f'[[rules]]\nprefix = "team/"\nurl = "{UPSTREAM_A}"\n[[rules]]\nprefix = "team"\nurl = "{UPSTREAM_B}"\n',
            "rules[1].prefix",
            "already used",
            id="duplicate-after-strip",
        ),
        pytest.param(
            f'[[rules]]\nprefix = "Team"\nurl = "{UPSTREAM_A}"\n',
            "rules[0].prefix: invalid prefix",
            "'Team'",
            id="uppercase",
        ),
        pytest.param(
            f'[[rules]]\nprefix = "a/../b"\nurl = "{UPSTREAM_A}"\n',
            "rules[0].prefix: invalid prefix",
            "'a/../b'",
            id="dots",
        ),
        pytest.param(
            f'[[rules]]\nprefix = ""\nurl = "{UPSTREAM_A}"\n', "rules[0].prefix: invalid prefix", "''", id="empty"
        ),
        pytest.param(
            f'[[rules]]\nprefix = "team"\nurl = "{UPSTREAM_A}"\n[[rules]]\nprefix = "other"\nurl = "{UPSTREAM_A}"\n',
            "rules: prefixes 'team' and 'other'",
            "127.0.0.1:5001",
            id="same-namespace",
        ),
        pytest.param(
            '[cache]\nembedded_rules = false\ndefault_rule = "hub"\n',
            "cache.default_rule",
            "'hub'",
            id="default-unknown",
        ),
        pytest.param('[cache]\ntag_ttl = "5x"\n', "cache.tag_ttl", "invalid duration", id="cache-ttl"),
        pytest.param("[cache]\nreferrers_ttl = true\n", "cache.referrers_ttl", "invalid duration", id="cache-bool"),
        pytest.param("[cache]\nembedded = false\n", "cache.embedded", "unknown key", id="cache-unknown"),
        pytest.param('[cache]\nembedded_rules = "no"\n', "cache.embedded_rules", "true or false", id="embedded-str"),
        pytest.param("[cache]\ndefault_rule = 1\n", "cache.default_rule", "a rule prefix", id="default-int"),
        pytest.param('rules = "team"\n', "rules", "array of tables", id="rules-string"),
        pytest.param("rules = [1]\n", "rules[0]", "expected a table", id="rules-int"),
    ],
)
def test_config_rules_invalid(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write_config(tmp_path, text)
    message = config_error(path)
    assert f"{path}: {key}" in message
    assert problem in message


def test_config_rules_valid(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
[cache]
embedded_rules = false
tag_ttl = "10s"
default_rule = "team"

[[rules]]
prefix = "team"
url = "{UPSTREAM_A}"
upstream_prefix = "org/team"

[[rules]]
prefix = "team/app"
url = "{UPSTREAM_B}"
tag_ttl = 0
""",
    )

    rules = build_rules(load_config(path))

    assert [rule.prefix for rule in rules.rules] == ["team/app", "team"]
    assert [rule.tag_ttl for rule in rules.rules] == [0.0, 10.0]
    assert rules.default is not None
    assert rules.default.prefix == "team"


# Durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (" 5m ", 300.0),
        (0, 0.0),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_duration_valid(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["5x", "", "30", "m", "5m3", "1h 30m", "-5m", "5M", "h1", "1h-30m", True, None, -1, [1]],
)
def test_duration_invalid(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="toml-nan"),
        pytest.param(float("inf"), id="toml-inf"),
        pytest.param("9" * 400 + "s", id="overflow-to-inf"),
    ],
)
def test_duration_not_finite(value: object) -> None:
    """TOML has `nan` and `inf` literals, and neither is a usable TTL or timeout."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_duration_unicode_digits() -> None:
    """Only ASCII digits count, as in the size and range parsers. U+0665 is ARABIC-INDIC DIGIT FIVE."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("\u0665m")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0"), (30, "30s"), (300, "5m"), (86400, "1d"), (5400, "90m")])
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_named_namespace_wins_over_url_host() -> None:
    """A `team` rule for https://ghcr.io leaves mirror requests for ghcr.io to the embedded `ghcr.io` rule."""
    config = config_from_mapping({"rules": [{"prefix": "team", "url": "https://ghcr.io"}]}, Path("."))
    rules = build_rules(config)
    target = rules.resolve("org/img", namespace="ghcr.io")
    assert target is not None
    assert target.rule.prefix == "ghcr.io"
