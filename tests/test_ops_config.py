"""Operator commands for configuration and rules, run as real `docket` subprocesses.

`docket config check FILE` must name the key and the problem of every invalid value
in docs/configuration.md (and the `[storage]` table), all at once. `docket config
show` prints the effective configuration (file, then `DOCKET_*` environment
variables) without secrets, and `docket serve` honours the same environment with
flags taking precedence. `docket rules list` and `docket rules check` report on each
rule's upstream, here FakeUpstreams with and without authentication.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, RequireBasicAuth, RequireBearerToken
from tests.support.oci import image, push_manifest
from tests.support.processes import DocketProcess, free_port

CLI_TIMEOUT = 30.0
# Environment variables the invalid-value cases rely on: one set, one never set.
SET_VARIABLE = "OPS_CONFIG_SECRET"
UNSET_VARIABLE = "OPS_CONFIG_NEVER_SET"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without DOCKET_* variables, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DOCKET_")}
    env.pop(UNSET_VARIABLE, None)
    env.update(extra)
    return env


def run_docket(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", *arguments],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=env if env is not None else clean_env(),
        check=False,
    )


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    assert isinstance(value, list | tuple)
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def rules_toml(rules: list[dict[str, object]], header: str = "[cache]\nembedded_rules = false\n") -> str:
    text = header
    for rule in rules:
        text += "\n[[rules]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in rule.items())
    return text


# `docket config check`: invalid values, one case per key and problem.


@dataclass(frozen=True)
class Case:
    """One invalid setting, whose `value` is TOML text; `problem` must appear on the line naming the key."""

    id: str
    section: str  # "" for top-level keys
    key: str
    value: str
    problem: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def case(id: str, section: str, key: str, value: str, problem: str) -> Case:
    return Case(id, section, key, value, problem)


SETTING_CASES = [
    case("listen-integer", "", "listen", "5000", "expected a string"),
    case("listen-no-port", "", "listen", '"nohost"', "invalid address"),
    case("listen-port-range", "", "listen", '"127.0.0.1:70000"', "invalid address"),
    case("listen-no-host", "", "listen", '":5000"', "invalid address"),
    case("data-dir-integer", "", "data_dir", "5", "expected a directory path"),
    case("data-dir-array", "", "data_dir", '["data"]', "expected a directory path"),
    case("log-level-unknown", "", "log_level", '"loud"', "expected one of"),
    case("log-level-integer", "", "log_level", "3", "expected a string"),
    case("log-format-unknown", "", "log_format", '"xml"', "expected 'text' or 'json'"),
    case("log-format-boolean", "", "log_format", "true", "expected a string"),
    case("remote-admin-string", "", "remote_admin", '"yes"', "expected true or false"),
    case("remote-admin-integer", "", "remote_admin", "1", "expected true or false"),
    case("workers-zero", "", "workers", "0", "expected 1 to 64"),
    case("workers-too-many", "", "workers", "65", "expected 1 to 64"),
    case("workers-string", "", "workers", '"2"', "expected a positive integer"),
    case("workers-boolean", "", "workers", "true", "expected a positive integer"),
    case("top-level-unknown", "", "colour", '"blue"', "unknown key"),
    case("manifest-size-decimal-unit", "registry", "max_manifest_size", '"4MB"', "invalid size"),
    case("manifest-size-negative", "registry", "max_manifest_size", "-1", "invalid size"),
    case("manifest-size-boolean", "registry", "max_manifest_size", "true", "invalid size"),
    case("manifest-size-float", "registry", "max_manifest_size", "1.5", "invalid size"),
    case("page-size-zero", "registry", "max_page_size", "0", "expected a positive integer"),
    case("page-size-negative", "registry", "max_page_size", "-3", "expected a positive integer"),
    case("page-size-string", "registry", "max_page_size", '"100"', "expected a positive integer"),
    case("page-size-boolean", "registry", "max_page_size", "true", "expected a positive integer"),
    case("manifest-cache-word", "registry", "manifest_cache_size", '"lots"', "invalid size"),
    case("manifest-cache-negative", "registry", "manifest_cache_size", "-1", "invalid size"),
    case("automatic-mount-string", "registry", "automatic_mount", '"yes"', "expected true or false"),
    case("automatic-mount-integer", "registry", "automatic_mount", "1", "expected true or false"),
    case("registry-unknown", "registry", "max_page", "5", "unknown key"),
    case("tag-ttl-words", "cache", "tag_ttl", '"5 minutes"', "invalid duration"),
    case("tag-ttl-negative", "cache", "tag_ttl", "-1", "invalid duration"),
    case("tag-ttl-boolean", "cache", "tag_ttl", "true", "invalid duration"),
    case("tag-ttl-unit", "cache", "tag_ttl", '"5x"', "invalid duration"),
    case("referrers-ttl-word", "cache", "referrers_ttl", '"soon"', "invalid duration"),
    case("referrers-ttl-negative", "cache", "referrers_ttl", "-5", "invalid duration"),
    case("embedded-rules-string", "cache", "embedded_rules", '"no"', "expected true or false"),
    case("embedded-rules-integer", "cache", "embedded_rules", "0", "expected true or false"),
    case("default-rule-integer", "cache", "default_rule", "7", "expected a rule prefix"),
    case("default-rule-boolean", "cache", "default_rule", "true", "expected a rule prefix"),
    case("cache-unknown", "cache", "ttl", '"5m"', "unknown key"),
    case("max-size-decimal-unit", "storage", "max_size", '"3MB"', "invalid size"),
    case("max-size-negative", "storage", "max_size", "-1", "invalid size"),
    case("max-size-boolean", "storage", "max_size", "true", "invalid size"),
    case("max-age-word", "storage", "max_age", '"forever"', "invalid duration"),
    case("max-age-negative", "storage", "max_age", "-1", "invalid duration"),
    case("max-age-boolean", "storage", "max_age", "true", "invalid duration"),
    case("eviction-interval-zero", "storage", "eviction_interval", '"0"', "expected more than 0"),
    case("eviction-interval-integer-zero", "storage", "eviction_interval", "0", "expected more than 0"),
    case("eviction-interval-word", "storage", "eviction_interval", '"often"', "invalid duration"),
    case("eviction-interval-negative", "storage", "eviction_interval", '"-1s"', "invalid duration"),
    case("gc-grace-word", "storage", "gc_grace", '"x"', "invalid duration"),
    case("gc-grace-negative", "storage", "gc_grace", "-1", "invalid duration"),
    case("upload-expiry-boolean", "storage", "upload_expiry", "true", "invalid duration"),
    case("upload-expiry-words", "storage", "upload_expiry", '"1 day"', "invalid duration"),
    case("storage-unknown", "storage", "max_bytes", "5", "unknown key"),
]

# Tables given as other types: one file, because each name can appear only once.
SHAPE_CASES = [
    case("registry-not-table", "", "registry", "5", "expected a table"),
    case("cache-not-table", "", "cache", '"fast"', "expected a table"),
    case("storage-not-table", "", "storage", "[1]", "expected a table"),
    case("rules-not-array", "", "rules", "5", "expected an array of tables"),
]


@dataclass(frozen=True)
class RuleCase:
    """One invalid `[[rules]]` table. `key` is empty when the problem belongs to the whole rule."""

    id: str
    table: dict[str, object]
    key: str
    problem: str


def rule_case(id: str, key: str, problem: str, **table: object) -> RuleCase:
    return RuleCase(id, table, key, problem)


UNUSED_URL = "http://127.0.0.1:9"  # never contacted: `config check` only reads the file

RULE_CASES = [
    rule_case("prefix-integer", "prefix", "expected a string", prefix=5, url=UNUSED_URL),
    rule_case("prefix-empty", "prefix", "invalid prefix", prefix="", url=UNUSED_URL),
    rule_case("prefix-uppercase", "prefix", "invalid prefix", prefix="Team", url=UNUSED_URL),
    rule_case("prefix-missing", "prefix", "missing", url=UNUSED_URL),
    rule_case("url-missing", "url", "missing", prefix="p-url-missing"),
    rule_case("url-scheme", "url", "invalid upstream URL", prefix="p-url-scheme", url="ftp://127.0.0.1"),
    rule_case("url-path", "url", "invalid upstream URL", prefix="p-url-path", url="http://127.0.0.1:9/v2"),
    rule_case("url-no-scheme", "url", "invalid upstream URL", prefix="p-url-bare", url="127.0.0.1:9"),
    rule_case("url-integer", "url", "expected a string", prefix="p-url-int", url=5),
    rule_case(
        "upstream-prefix-integer",
        "upstream_prefix",
        "expected a string",
        prefix="p-up",
        url=UNUSED_URL,
        upstream_prefix=1,
    ),
    rule_case(
        "upstream-prefix-space",
        "upstream_prefix",
        "invalid",
        prefix="p-up-space",
        url=UNUSED_URL,
        upstream_prefix="org team",
    ),
    rule_case("namespace-integer", "namespace", "expected a string", prefix="p-ns", url=UNUSED_URL, namespace=1),
    rule_case("namespace-space", "namespace", "invalid", prefix="p-ns-space", url=UNUSED_URL, namespace="two words"),
    rule_case(
        "username-integer",
        "username",
        "expected a string",
        prefix="p-user",
        url=UNUSED_URL,
        username=1,
        password_env=SET_VARIABLE,
    ),
    rule_case(
        "username-alone", "", "need both a username and a password", prefix="p-user-only", url=UNUSED_URL, username="u"
    ),
    rule_case(
        "password-alone",
        "",
        "need both a username and a password",
        prefix="p-pw-only",
        url=UNUSED_URL,
        password_env=SET_VARIABLE,
    ),
    rule_case(
        "username-env-unset",
        "username_env",
        "is not set",
        prefix="p-uenv",
        url=UNUSED_URL,
        username_env=UNSET_VARIABLE,
        password_env=SET_VARIABLE,
    ),
    rule_case(
        "username-env-integer",
        "username_env",
        "expected a string",
        prefix="p-uenv-int",
        url=UNUSED_URL,
        username_env=1,
        password_env=SET_VARIABLE,
    ),
    rule_case(
        "password-env-unset",
        "password_env",
        "is not set",
        prefix="p-penv",
        url=UNUSED_URL,
        username="u",
        password_env=UNSET_VARIABLE,
    ),
    rule_case(
        "password-env-integer",
        "password_env",
        "expected a string",
        prefix="p-penv-int",
        url=UNUSED_URL,
        username="u",
        password_env=3,
    ),
    rule_case(
        "password-file-missing",
        "password_file",
        "cannot read",
        prefix="p-pfile",
        url=UNUSED_URL,
        username="u",
        password_file="absent-password.txt",
    ),
    rule_case(
        "password-file-integer",
        "password_file",
        "expected a string",
        prefix="p-pfile-int",
        url=UNUSED_URL,
        username="u",
        password_file=3,
    ),
    rule_case(
        "password-env-and-file",
        "",
        "not both",
        prefix="p-both",
        url=UNUSED_URL,
        username="u",
        password_env=SET_VARIABLE,
        password_file="absent-password.txt",
    ),
    rule_case(
        "token-hosts-string", "token_hosts", "expected a list", prefix="p-th", url=UNUSED_URL, token_hosts="auth.test"
    ),
    rule_case(
        "token-hosts-integers", "token_hosts", "expected a list", prefix="p-th-int", url=UNUSED_URL, token_hosts=[1]
    ),
    rule_case("tag-ttl-word", "tag_ttl", "invalid duration", prefix="p-ttl", url=UNUSED_URL, tag_ttl="soon"),
    rule_case("tag-ttl-negative", "tag_ttl", "invalid duration", prefix="p-ttl-neg", url=UNUSED_URL, tag_ttl=-1),
    rule_case(
        "referrers-ttl-words",
        "referrers_ttl",
        "invalid duration",
        prefix="p-rttl",
        url=UNUSED_URL,
        referrers_ttl="1 hour",
    ),
    rule_case(
        "max-connections-zero", "max_connections", "at least 1", prefix="p-mc", url=UNUSED_URL, max_connections=0
    ),
    rule_case(
        "max-connections-string",
        "max_connections",
        "at least 1",
        prefix="p-mc-str",
        url=UNUSED_URL,
        max_connections="16",
    ),
    rule_case(
        "max-connections-float",
        "max_connections",
        "at least 1",
        prefix="p-mc-float",
        url=UNUSED_URL,
        max_connections=1.5,
    ),
    rule_case(
        "connect-timeout-unitless",
        "connect_timeout",
        "invalid duration",
        prefix="p-ct",
        url=UNUSED_URL,
        connect_timeout="10",
    ),
    rule_case(
        "read-timeout-negative", "read_timeout", "invalid duration", prefix="p-rt", url=UNUSED_URL, read_timeout="-1s"
    ),
    rule_case("retries-negative", "retries", "at least 0", prefix="p-retry", url=UNUSED_URL, retries=-1),
    rule_case("retries-boolean", "retries", "at least 0", prefix="p-retry-bool", url=UNUSED_URL, retries=True),
    rule_case(
        "max-retry-after-word",
        "max_retry_after",
        "invalid duration",
        prefix="p-mra",
        url=UNUSED_URL,
        max_retry_after="x",
    ),
    rule_case(
        "tag-deleted-unknown",
        "upstream_tag_deleted",
        "'forget' or 'keep'",
        prefix="p-utd",
        url=UNUSED_URL,
        upstream_tag_deleted="drop",
    ),
    rule_case(
        "tag-deleted-boolean",
        "upstream_tag_deleted",
        "'forget' or 'keep'",
        prefix="p-utd-bool",
        url=UNUSED_URL,
        upstream_tag_deleted=True,
    ),
    rule_case(
        "library-prefix-string",
        "library_prefix",
        "expected true or false",
        prefix="p-lib",
        url=UNUSED_URL,
        library_prefix="yes",
    ),
    rule_case(
        "include-string", "referrers_include", "expected a list", prefix="p-inc", url=UNUSED_URL, referrers_include="x"
    ),
    rule_case(
        "include-empty-type",
        "referrers_include",
        "expected a list",
        prefix="p-inc-empty",
        url=UNUSED_URL,
        referrers_include=[""],
    ),
    rule_case(
        "include-integer",
        "referrers_include",
        "expected a list",
        prefix="p-inc-int",
        url=UNUSED_URL,
        referrers_include=[1],
    ),
    rule_case(
        "exclude-string", "referrers_exclude", "expected a list", prefix="p-exc", url=UNUSED_URL, referrers_exclude="x"
    ),
    rule_case(
        "referrers-max-size-unit",
        "referrers_max_size",
        "invalid size",
        prefix="p-rms",
        url=UNUSED_URL,
        referrers_max_size="10MB",
    ),
    rule_case(
        "referrers-max-size-negative",
        "referrers_max_size",
        "invalid size",
        prefix="p-rms-neg",
        url=UNUSED_URL,
        referrers_max_size=-1,
    ),
    rule_case(
        "referrers-depth-negative", "referrers_depth", "at least 0", prefix="p-rd", url=UNUSED_URL, referrers_depth=-1
    ),
    rule_case(
        "referrers-depth-string",
        "referrers_depth",
        "at least 0",
        prefix="p-rd-str",
        url=UNUSED_URL,
        referrers_depth="3",
    ),
    rule_case(
        "referrers-wait-word",
        "referrers_wait",
        "invalid duration",
        prefix="p-rw",
        url=UNUSED_URL,
        referrers_wait="later",
    ),
    rule_case(
        "require-string",
        "require_referrers",
        "expected a list",
        prefix="p-req",
        url=UNUSED_URL,
        require_referrers="sig",
    ),
    rule_case(
        "require-integer",
        "require_referrers",
        "expected a list",
        prefix="p-req-int",
        url=UNUSED_URL,
        require_referrers=[5],
    ),
    rule_case("rule-unknown-key", "bogus", "unknown key", prefix="p-unknown", url=UNUSED_URL, bogus=1),
]

# Problems that only show when every rule is valid on its own, one file each:
# (id, file text, key named in the message, problem).
COMBINED_CASES = [
    (
        "duplicate-prefix",
        rules_toml([{"prefix": "team", "url": UNUSED_URL}, {"prefix": "team", "url": "http://127.0.0.1:8"}]),
        "rules[1].prefix",
        "already used",
    ),
    (
        "shared-namespace",
        rules_toml(
            [
                {"prefix": "one", "url": UNUSED_URL, "namespace": "registry.test"},
                {"prefix": "two", "url": "http://127.0.0.1:8", "namespace": "registry.test"},
            ]
        ),
        "rules",
        "'registry.test'",
    ),
    (
        "default-rule-unknown",
        rules_toml(
            [{"prefix": "team", "url": UNUSED_URL}], '[cache]\nembedded_rules = false\ndefault_rule = "absent"\n'
        ),
        "cache.default_rule",
        "no rule has the prefix 'absent'",
    ),
]


def setting_files(cases: list[Case]) -> list[list[Case]]:
    """Group cases into files in which no key appears twice."""
    files: list[list[Case]] = []
    for item in cases:
        for group in files:
            if all(other.name != item.name for other in group):
                group.append(item)
                break
        else:
            files.append([item])
    return files


def render_settings(cases: list[Case]) -> str:
    lines = [f"{item.key} = {item.value}" for item in cases if not item.section]
    for section in dict.fromkeys(item.section for item in cases if item.section):
        lines += ["", f"[{section}]"]
        lines += [f"{item.key} = {item.value}" for item in cases if item.section == section]
    return "\n".join(lines) + "\n"


@dataclass
class CheckRun:
    path: Path
    result: subprocess.CompletedProcess[str]
    expected_problems: int

    def line_naming(self, key: str) -> str | None:
        """The first output line whose problem is about `key` (output lines are `FILE: KEY: problem`)."""
        for line in self.result.stderr.splitlines():
            if line.startswith(f"{self.path}: {key}:"):
                return line
        return None


@pytest.fixture(scope="module")
def check_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CheckRun, str]]:
    """Run `docket config check` once per file of invalid cases, and map each case id to its run and key."""
    folder = tmp_path_factory.mktemp("config-check")
    env = clean_env(**{SET_VARIABLE: "value-of-the-variable"})
    runs: dict[str, tuple[CheckRun, str]] = {}

    def check(name: str, text: str, expected_problems: int) -> CheckRun:
        path = folder / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return CheckRun(path, run_docket("config", "check", str(path), env=env), expected_problems)

    for number, group in enumerate(setting_files(SETTING_CASES)):
        run = check(f"settings{number}", render_settings(group), len(group))
        runs.update((f"setting:{item.id}", (run, item.name)) for item in group)
    shapes = check("shapes", render_settings(SHAPE_CASES), len(SHAPE_CASES))
    runs.update((f"setting:{item.id}", (shapes, item.name)) for item in SHAPE_CASES)
    rules = check("rules", rules_toml([item.table for item in RULE_CASES]), len(RULE_CASES))
    for index, item in enumerate(RULE_CASES):
        runs[f"rule:{item.id}"] = (rules, f"rules[{index}].{item.key}" if item.key else f"rules[{index}]")
    for name, text, key, _problem in COMBINED_CASES:
        runs[f"combined:{name}"] = (check(name, text, 1), key)
    return runs


@pytest.mark.parametrize("item", SETTING_CASES + SHAPE_CASES, ids=lambda item: item.id)
def test_check_invalid_setting(check_runs: dict[str, tuple[CheckRun, str]], item: Case) -> None:
    run, key = check_runs[f"setting:{item.id}"]
    line = run.line_naming(key)
    assert run.result.returncode == 2
    assert line is not None, f"no line names {key}:\n{run.result.stderr}"
    assert item.problem in line


@pytest.mark.parametrize("item", RULE_CASES, ids=lambda item: item.id)
def test_check_invalid_rule(check_runs: dict[str, tuple[CheckRun, str]], item: RuleCase) -> None:
    run, key = check_runs[f"rule:{item.id}"]
    line = run.line_naming(key)
    assert run.result.returncode == 2
    assert line is not None, f"no line names {key}:\n{run.result.stderr}"
    assert item.problem in line


@pytest.mark.parametrize(("name", "problem"), [(name, problem) for name, _text, _key, problem in COMBINED_CASES])
def test_check_combined_problem(check_runs: dict[str, tuple[CheckRun, str]], name: str, problem: str) -> None:
    run, key = check_runs[f"combined:{name}"]
    line = run.line_naming(key)
    assert run.result.returncode == 2
    assert line is not None, f"no line names {key}:\n{run.result.stderr}"
    assert problem in line


def test_check_lists_every_problem(check_runs: dict[str, tuple[CheckRun, str]]) -> None:
    files = {id(run): run for case_id, (run, _key) in check_runs.items() if case_id.startswith("setting:")}
    for run in files.values():
        reported = [line for line in run.result.stderr.splitlines() if line.strip()]
        assert len(reported) == run.expected_problems, f"{run.path}:\n{run.result.stderr}"


def test_check_rule_several_problems(tmp_path: Path) -> None:
    path = tmp_path / "docket.toml"
    path.write_text(
        rules_toml([{"prefix": "team", "url": UNUSED_URL, "tag_ttl": "soon", "retries": -1}]), encoding="utf-8"
    )

    result = run_docket("config", "check", str(path))

    assert result.returncode == 2
    assert "rules[0].tag_ttl" in result.stderr
    assert "rules[0].retries" in result.stderr


def test_check_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "docket.toml"
    path.write_text('listen = "127.0.0.1:5000"\n[registry\n', encoding="utf-8")

    result = run_docket("config", "check", str(path))

    assert result.returncode == 2
    assert "invalid TOML" in result.stderr
    assert "line 2" in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = run_docket("config", "check", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr


# A file that sets every documented key to a valid value.
VALID_FILE = """
listen = "127.0.0.1:5999"
data_dir = "data"
log_level = "warning"
log_format = "json"
remote_admin = false
workers = 2

[registry]
max_manifest_size = "8MiB"
max_page_size = 50
manifest_cache_size = 1048576
automatic_mount = false

[cache]
tag_ttl = "10m"
referrers_ttl = "1h"
embedded_rules = false
default_rule = "team"

[storage]
max_size = "10GiB"
max_age = "30d"
eviction_interval = "1m"
gc_grace = "0"
upload_expiry = "1d"

[[rules]]
prefix = "team"
url = "http://127.0.0.1:9"
upstream_prefix = "org/team"
namespace = "registry.team.test"
username = "ci-bot"
password_env = "OPS_TEAM_TOKEN"
token_hosts = ["auth.team.test"]
tag_ttl = "0"
referrers_ttl = "30m"
max_connections = 4
connect_timeout = "5s"
read_timeout = "30s"
retries = 0
max_retry_after = "1h30m"
upstream_tag_deleted = "keep"
library_prefix = true
referrers_include = ["application/vnd.dev.cosign.artifact.sig.v1+json"]
referrers_exclude = ["application/vnd.cyclonedx+json"]
referrers_max_size = "10MiB"
referrers_depth = 0
referrers_wait = "500ms"
require_referrers = ["application/vnd.dev.cosign.artifact.sig.v1+json"]

[[rules]]
prefix = "mirror.internal"
url = "https://127.0.0.1:8"
username_env = "OPS_MIRROR_USER"
password_file = "mirror-password.txt"
"""

TEAM_TOKEN = "team-token-e1f7c0"
MIRROR_PASSWORD = "mirror-password-9b2d"


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    (tmp_path / "mirror-password.txt").write_text(MIRROR_PASSWORD + "\n", encoding="utf-8")
    path = tmp_path / "docket.toml"
    path.write_text(VALID_FILE, encoding="utf-8")
    return path


def secrets_env(**extra: str) -> dict[str, str]:
    return clean_env(OPS_TEAM_TOKEN=TEAM_TOKEN, OPS_MIRROR_USER="mirror-bot", **extra)


def test_check_valid_file(valid_file: Path) -> None:
    result = run_docket("config", "check", str(valid_file), env=secrets_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{valid_file}: valid"


# `docket config show`


def rule_blocks(output: str) -> dict[str, str]:
    """Split `config show` output into its `[[rules]]` blocks, by prefix."""
    blocks = {}
    for block in output.split("[[rules]]\n")[1:]:
        prefix = re.search(r'^prefix = "([^"]*)"$', block, re.MULTILINE)
        assert prefix is not None, block
        blocks[prefix.group(1)] = block
    return blocks


def test_show_redacts_passwords(valid_file: Path) -> None:
    result = run_docket("config", "show", "--config", str(valid_file), env=secrets_env())
    blocks = rule_blocks(result.stdout)

    assert result.returncode == 0, result.stderr
    assert TEAM_TOKEN not in result.stdout
    assert MIRROR_PASSWORD not in result.stdout
    assert 'username = "ci-bot"' in blocks["team"]
    assert "redacted" in blocks["team"]
    assert 'username = "mirror-bot"' in blocks["mirror.internal"]
    assert "redacted" in blocks["mirror.internal"]


def test_show_redacts_rule_from_environment() -> None:
    rules = '[{prefix = "env", url = "http://127.0.0.1:9", username = "env-bot", password_env = "OPS_ENV_TOKEN"}]'
    env = clean_env(DOCKET_RULES=rules, DOCKET_CACHE__EMBEDDED_RULES="false", OPS_ENV_TOKEN="env-token-41ac")

    result = run_docket("config", "show", env=env)
    blocks = rule_blocks(result.stdout)

    assert result.returncode == 0, result.stderr
    assert "env-token-41ac" not in result.stdout
    assert sorted(blocks) == ["env"]
    assert 'username = "env-bot"' in blocks["env"]
    assert "redacted" in blocks["env"]


def test_show_environment_overrides(valid_file: Path) -> None:
    env = secrets_env(DOCKET_CACHE__TAG_TTL="30s", DOCKET_REGISTRY__MAX_PAGE_SIZE="3", DOCKET_LOG_LEVEL="debug")

    result = run_docket("config", "show", "--config", str(valid_file), env=env)

    assert result.returncode == 0, result.stderr
    assert "max_page_size = 3\n" in result.stdout
    assert 'tag_ttl = "30s"\n' in result.stdout
    assert 'log_level = "debug"\n' in result.stdout
    # The per-rule tag_ttl of the file wins over the environment's default.
    assert 'tag_ttl = "0"\n' in result.stdout


def test_show_docket_config_variable(valid_file: Path) -> None:
    result = run_docket("config", "show", env=secrets_env(DOCKET_CONFIG=str(valid_file)))
    assert result.returncode == 0, result.stderr
    assert 'prefix = "team"' in result.stdout
    assert "max_page_size = 50\n" in result.stdout


def test_show_config_flag_beats_variable(valid_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[registry]\nmax_page_size = 7\n[cache]\nembedded_rules = false\n", encoding="utf-8")

    result = run_docket("config", "show", "--config", str(other), env=secrets_env(DOCKET_CONFIG=str(valid_file)))

    assert result.returncode == 0, result.stderr
    assert "max_page_size = 7\n" in result.stdout
    assert 'prefix = "team"' not in result.stdout


@pytest.mark.parametrize("command", ["show", "check"])
def test_invalid_environment_value(tmp_path: Path, command: str) -> None:
    path = tmp_path / "docket.toml"
    path.write_text("[cache]\nembedded_rules = false\n\n[registry]\nmax_page_size = 50\n", encoding="utf-8")
    arguments = ["config", "show", "--config", str(path)] if command == "show" else ["config", "check", str(path)]

    result = run_docket(*arguments, env=clean_env(DOCKET_REGISTRY__MAX_PAGE_SIZE="0"))

    assert result.returncode == 2
    assert "registry.max_page_size" in result.stderr
    assert "expected a positive integer" in result.stderr
    # The value came from the environment, so the message points there, not at the file.
    assert "DOCKET_" in result.stderr
    assert f"{path}: registry.max_page_size" not in result.stderr


# `docket serve` with environment overrides and flags


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def pull_twice(server: DocketProcess, upstream: FakeUpstream, prefix: str) -> int:
    """Pull a cached tag twice and return how many HEAD revalidations reached the upstream."""
    manifest = image()
    upstream.add_image("ops/app", manifest, tags=["v1"])
    before = upstream.count("HEAD", "/v2/ops/app/manifests/v1")
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for _ in range(2):
            response = client.get(f"/v2/{prefix}/ops/app/manifests/v1", headers={"Accept": manifest.media_type})
            assert response.status_code == 200, response.text
    return upstream.count("HEAD", "/v2/ops/app/manifests/v1") - before


def tags_page(server: DocketProcess, repository: str) -> tuple[list[str], str | None]:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        manifest = image()
        for number in range(6):
            push_manifest(client, repository, manifest, f"t{number}")
        response = client.get(f"/v2/{repository}/tags/list", params={"n": 100})
    assert response.status_code == 200, response.text
    return response.json()["tags"], response.headers.get("Link")


@pytest.fixture
def docket_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Environment for `docket serve` (DocketProcess passes os.environ on), without DOCKET_* from outside."""
    for name in list(os.environ):
        if name.startswith("DOCKET_") and name != "DOCKET_TEST_FIXTURES":
            monkeypatch.delenv(name)
    return monkeypatch


def test_serve_environment_overrides(
    docket_env: pytest.MonkeyPatch, upstream: FakeUpstream, start_docket: Callable[..., DocketProcess]
) -> None:
    docket_env.setenv("DOCKET_CACHE__TAG_TTL", "0")
    docket_env.setenv("DOCKET_REGISTRY__MAX_PAGE_SIZE", "3")
    docket_env.setenv("DOCKET_CACHE__EMBEDDED_RULES", "false")

    server = start_docket("--upstream", f"up={upstream.url}")
    tags, link = tags_page(server, "ops/paged")

    assert pull_twice(server, upstream, "up") == 1
    assert tags == ["t0", "t1", "t2"]
    assert link is not None


def test_serve_flags_beat_environment(
    docket_env: pytest.MonkeyPatch, upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    from_variable = tmp_path / "variable.toml"
    from_variable.write_text("[registry]\nmax_page_size = 2\n", encoding="utf-8")
    from_flag = tmp_path / "flag.toml"
    from_flag.write_text("[registry]\nmax_page_size = 4\n[cache]\nembedded_rules = false\n", encoding="utf-8")
    env_port = free_port()
    docket_env.setenv("DOCKET_CONFIG", str(from_variable))
    docket_env.setenv("DOCKET_CACHE__TAG_TTL", "0")
    docket_env.setenv("DOCKET_LISTEN", f"127.0.0.1:{env_port}")

    # DocketProcess passes --listen 127.0.0.1:0, which must beat DOCKET_LISTEN.
    server = start_docket("--config", str(from_flag), "--tag-ttl", "1h", "--upstream", f"up={upstream.url}")
    tags, _link = tags_page(server, "ops/flags")

    assert server.port != env_port
    assert tags == ["t0", "t1", "t2", "t3"]
    assert pull_twice(server, upstream, "up") == 0


def test_serve_docket_config_variable(
    docket_env: pytest.MonkeyPatch, upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    path = tmp_path / "docket.toml"
    path.write_text(rules_toml([{"prefix": "fromfile", "url": upstream.url}], "[registry]\nmax_page_size = 2\n"))
    docket_env.setenv("DOCKET_CONFIG", str(path))
    docket_env.setenv("DOCKET_CACHE__EMBEDDED_RULES", "false")
    docket_env.setenv("DOCKET_REGISTRY__MAX_PAGE_SIZE", "5")  # the environment beats the file
    docket_env.setenv("DOCKET_CACHE__TAG_TTL", "30s")

    server = start_docket()
    tags, _link = tags_page(server, "ops/variable")

    assert tags == ["t0", "t1", "t2", "t3", "t4"]
    assert f"pull-through rule fromfile -> {upstream.url} (tag TTL 30s)" in server.log()
    assert pull_twice(server, upstream, "fromfile") == 0


# `docket rules list` and `docket rules check`

BASIC_USER, BASIC_PASSWORD = "alice", "basic-password-7d1e"
TOKEN_USER, TOKEN_PASSWORD = "bob", "token-password-c3a9"


@dataclass
class Upstreams:
    anonymous: FakeUpstream
    basic: FakeUpstream
    bearer: FakeUpstream
    stopped_url: str
    config: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    folder = tmp_path_factory.mktemp("rules")
    stopped = FakeUpstream().start()
    stopped_url = stopped.url
    stopped.stop()
    with (
        FakeUpstream(referrers="index") as anonymous,
        FakeUpstream(auth=RequireBasicAuth(BASIC_USER, BASIC_PASSWORD), referrers="not_found") as basic,
        FakeUpstream(auth=RequireBearerToken(TOKEN_USER, TOKEN_PASSWORD), referrers="index") as bearer,
    ):
        rules: list[dict[str, object]] = [
            {"prefix": "anon", "url": anonymous.url},
            {
                "prefix": "basic-good",
                "url": basic.url,
                "namespace": "good.basic.test",
                "username": BASIC_USER,
                "password_env": "OPS_BASIC_GOOD",
            },
            {
                "prefix": "basic-bad",
                "url": basic.url,
                "namespace": "bad.basic.test",
                "username": BASIC_USER,
                "password_env": "OPS_BASIC_BAD",
            },
            {"prefix": "basic-none", "url": basic.url, "namespace": "none.basic.test"},
            {
                "prefix": "bearer-good",
                "url": bearer.url,
                "namespace": "good.bearer.test",
                "username": TOKEN_USER,
                "password_env": "OPS_TOKEN_GOOD",
            },
            {
                "prefix": "bearer-bad",
                "url": bearer.url,
                "namespace": "bad.bearer.test",
                "username": TOKEN_USER,
                "password_env": "OPS_TOKEN_BAD",
            },
            {"prefix": "down", "url": stopped_url},
        ]
        config = folder / "docket.toml"
        config.write_text(rules_toml(rules), encoding="utf-8")
        env = clean_env(
            OPS_BASIC_GOOD=BASIC_PASSWORD,
            OPS_BASIC_BAD="wrong-basic-0f3b",
            OPS_TOKEN_GOOD=TOKEN_PASSWORD,
            OPS_TOKEN_BAD="wrong-token-8e5c",
        )
        yield Upstreams(anonymous, basic, bearer, stopped_url, config, env)


def rules_command(upstreams: Upstreams, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run_docket("rules", *arguments, "--config", str(upstreams.config), env=upstreams.env)


def secrets_of(upstreams: Upstreams) -> list[str]:
    values = [upstreams.env[name] for name in ("OPS_BASIC_GOOD", "OPS_BASIC_BAD", "OPS_TOKEN_GOOD", "OPS_TOKEN_BAD")]
    encoded = [base64.b64encode(f"{BASIC_USER}:{value}".encode()).decode() for value in values[:2]]
    return values + encoded


def test_rules_list(upstreams: Upstreams) -> None:
    result = rules_command(upstreams, "list")
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}

    assert result.returncode == 0, result.stderr
    assert sorted(lines) == ["anon", "basic-bad", "basic-good", "basic-none", "bearer-bad", "bearer-good", "down"]
    assert f"-> {upstreams.anonymous.url}" in lines["anon"]
    assert "anonymous" in lines["anon"]
    assert "credentials" in lines["basic-good"]
    assert "ns=good.basic.test" in lines["basic-good"]
    for secret in secrets_of(upstreams):
        assert secret not in result.stdout


@pytest.fixture(scope="module")
def check_all(upstreams: Upstreams) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run `docket rules check` for every rule once, and return the run with each rule's report."""
    result = rules_command(upstreams, "check")
    reports: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            prefix = line.split()[0]
            reports[prefix] = ""
        reports[prefix] += line + "\n"
    return result, reports


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("anon", ["reachable: yes", "authentication: not required", "referrers API: supported"]),
        ("basic-good", ["reachable: yes", "credentials: accepted", "referrers API: not supported"]),
        ("basic-bad", ["reachable: yes", "credentials: rejected"]),
        ("basic-none", ["reachable: yes", "basic auth required, but the rule has no credentials"]),
        ("bearer-good", ["reachable: yes", "credentials accepted", "referrers API: supported"]),
        ("bearer-bad", ["reachable: yes", "rejected"]),
        ("down", ["reachable: no"]),
    ],
)
def test_rules_check_report(
    check_all: tuple[subprocess.CompletedProcess[str], dict[str, str]], prefix: str, expected: list[str]
) -> None:
    _result, reports = check_all
    report = reports.get(prefix, "")
    for text in expected:
        assert text in report, report


def test_rules_check_all(
    upstreams: Upstreams, check_all: tuple[subprocess.CompletedProcess[str], dict[str, str]]
) -> None:
    result, reports = check_all

    assert result.returncode == 1
    assert sorted(reports) == ["anon", "basic-bad", "basic-good", "basic-none", "bearer-bad", "bearer-good", "down"]
    for secret in secrets_of(upstreams):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(("prefix", "returncode"), [("bearer-good", 0), ("basic-bad", 1), ("down", 1)])
def test_rules_check_exit_status(upstreams: Upstreams, prefix: str, returncode: int) -> None:
    result = rules_command(upstreams, "check", prefix)

    assert result.returncode == returncode, result.stdout + result.stderr
    assert result.stdout.startswith(f"{prefix} -> ")
    assert result.stdout.count(" -> ") == 1


def test_rules_check_repository_probe(upstreams: Upstreams) -> None:
    result = rules_command(upstreams, "check", "basic-good", "--repository", "library/app")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "referrers API: not supported" in result.stdout
    assert upstreams.basic.count("GET", "/v2/library/app/referrers/") >= 1


def test_rules_check_unknown_prefix(upstreams: Upstreams) -> None:
    result = rules_command(upstreams, "check", "absent")
    assert result.returncode == 2
    assert "no rule has the prefix 'absent'" in result.stderr
