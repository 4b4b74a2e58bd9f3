"""Configuration: a TOML file, overridden by command-line flags.

Every key is documented in docs/configuration.md. Loading fails with
`ConfigError`, whose message names the key, the bad value and what is expected.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from docket import units
from docket.cache.rule_config import RuleConfigError, embedded_rules, rule_from_table
from docket.cache.rules import Credentials, Rule, RuleError, RuleSet
from docket.units import parse_duration

DEFAULT_LISTEN = "127.0.0.1:5000"
DEFAULT_DATA_DIR = "docket-data"

_LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """An invalid configuration; the message names the key and the problem."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    max_manifest_size: int = 4 * 1024 * 1024
    max_page_size: int = 1000
    manifest_cache_size: int = 64 * 1024 * 1024
    automatic_mount: bool = True


@dataclass(frozen=True, slots=True)
class StorageSettings:
    max_size: int | None = None
    max_age: float | None = None
    eviction_interval: float = 60.0
    gc_grace: float = 600.0
    upload_expiry: float = 86400.0


@dataclass(frozen=True, slots=True)
class CacheSettings:
    tag_ttl: float = 300.0
    referrers_ttl: float = 3600.0
    embedded_rules: bool = True
    default_rule: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    listen: Listen = field(default_factory=lambda: parse_listen(DEFAULT_LISTEN, "listen"))
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    log_level: str = "info"
    log_format: str = "text"
    workers: int = 1
    remote_admin: bool = False
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    rule_tables: tuple[dict[str, Any], ...] = ()
    """The `[[rules]]` tables as written; turned into rules by `build_rules`."""
    config_dir: Path = field(default=Path("."), compare=False)
    cli_rules: tuple[tuple[str, str], ...] = ()
    """`--upstream PREFIX=URL` flags."""
    cli_credentials: tuple[tuple[str, str, str], ...] = ()
    """`--upstream-credentials PREFIX=USER:PASSWORD` flags."""
    cli_require_referrers: tuple[str, ...] = ()
    """`--require-referrers TYPE[,TYPE...]`: the policy for every rule."""

    def extra_sections(self) -> list[tuple[str, dict[str, Any]]]:
        """Further `[table]` sections for `docket config show`."""
        storage: dict[str, Any] = {}
        if self.storage.max_size is not None:
            storage["max_size"] = self.storage.max_size
        if self.storage.max_age is not None:
            storage["max_age"] = units.format_duration(self.storage.max_age)
        for name in ("eviction_interval", "gc_grace", "upload_expiry"):
            storage[name] = units.format_duration(getattr(self.storage, name))
        return [("storage", storage)]


def build_rules(config: Config) -> RuleSet:
    """Combine configured, command-line and embedded rules; raise ConfigError if they conflict."""
    defaults = Rule(prefix="", url="", tag_ttl=config.cache.tag_ttl, referrers_ttl=config.cache.referrers_ttl)
    rules: dict[str, Rule] = {}
    try:
        if config.cache.embedded_rules:
            rules.update((rule.prefix, rule) for rule in embedded_rules(defaults))
        configured: set[str] = set()
        for index, table in enumerate(config.rule_tables):
            rule = rule_from_table(table, f"rules[{index}]", defaults, config.config_dir)
            if rule.prefix in configured:
                raise RuleConfigError(f"rules[{index}].prefix: {rule.prefix!r} is already used by another rule")
            configured.add(rule.prefix)
            rules[rule.prefix] = rule
        for prefix, url in config.cli_rules:
            rule = rule_from_table({"prefix": prefix, "url": url}, f"--upstream {prefix}", defaults, config.config_dir)
            rules[rule.prefix] = rule
        for prefix, username, password in config.cli_credentials:
            key = prefix.strip("/")
            if key not in rules:
                raise RuleConfigError(f"--upstream-credentials: no rule has the prefix {prefix!r}")
            rules[key] = replace(rules[key], credentials=Credentials(username, password))
        if config.cli_require_referrers:
            rules = {
                prefix: replace(rule, require_referrers=config.cli_require_referrers) for prefix, rule in rules.items()
            }
        return RuleSet(list(rules.values()), config.cache.default_rule)
    except (RuleConfigError, RuleError) as error:
        raise ConfigError(str(error)) from None


def parse_listen(value: str, key: str) -> Listen:
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or re.fullmatch(r"[0-9]{1,5}", port_text) is None or int(port_text) > 65535:
        raise ConfigError(f"{key}: invalid address {value!r}; expected HOST:PORT such as 127.0.0.1:5000")
    return Listen(host, int(port_text))


def parse_size(value: Any, key: str) -> int:
    """Parse a size given as an integer number of bytes or a string such as '4MiB'."""
    try:
        return units.parse_size(value)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def _expect(value: Any, kind: type, key: str, description: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: invalid value {value!r}; expected {description}")
    return value


def _check_keys(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            name = f"{prefix}{key}"
            raise ConfigError(f"{name}: unknown key; the valid keys here are {', '.join(sorted(allowed))}")


def _registry_settings(table: Any) -> RegistrySettings:
    _expect(table, dict, "registry", "a table")
    fields = {"max_manifest_size", "max_page_size", "manifest_cache_size", "automatic_mount"}
    _check_keys(table, fields, "registry.")
    settings = RegistrySettings()
    if "max_manifest_size" in table:
        settings = replace(
            settings, max_manifest_size=parse_size(table["max_manifest_size"], "registry.max_manifest_size")
        )
    if "max_page_size" in table:
        size = _expect(table["max_page_size"], int, "registry.max_page_size", "a positive integer")
        if size < 1:
            raise ConfigError(f"registry.max_page_size: invalid value {size}; expected a positive integer")
        settings = replace(settings, max_page_size=size)
    if "manifest_cache_size" in table:
        settings = replace(
            settings, manifest_cache_size=parse_size(table["manifest_cache_size"], "registry.manifest_cache_size")
        )
    if "automatic_mount" in table:
        settings = replace(
            settings,
            automatic_mount=_expect(table["automatic_mount"], bool, "registry.automatic_mount", "true or false"),
        )
    return settings


def _cache_settings(table: Any) -> CacheSettings:
    _expect(table, dict, "cache", "a table")
    _check_keys(table, {"tag_ttl", "referrers_ttl", "embedded_rules", "default_rule"}, "cache.")
    settings = CacheSettings()
    for name in ("tag_ttl", "referrers_ttl"):
        if name in table:
            try:
                durations: dict[str, Any] = {name: parse_duration(table[name])}
                settings = replace(settings, **durations)
            except ValueError as error:
                raise ConfigError(f"cache.{name}: {error}") from None
    if "embedded_rules" in table:
        settings = replace(
            settings, embedded_rules=_expect(table["embedded_rules"], bool, "cache.embedded_rules", "true or false")
        )
    if "default_rule" in table:
        settings = replace(
            settings, default_rule=_expect(table["default_rule"], str, "cache.default_rule", "a rule prefix")
        )
    return settings


def _storage_settings(table: Any) -> StorageSettings:
    _expect(table, dict, "storage", "a table")
    _check_keys(table, {"max_size", "max_age", "eviction_interval", "gc_grace", "upload_expiry"}, "storage.")
    settings = StorageSettings()
    if "max_size" in table:
        settings = replace(settings, max_size=parse_size(table["max_size"], "storage.max_size"))
    for name in ("max_age", "eviction_interval", "gc_grace", "upload_expiry"):
        if name in table:
            try:
                seconds = parse_duration(table[name])
            except ValueError as error:
                raise ConfigError(f"storage.{name}: {error}") from None
            if name == "eviction_interval" and seconds <= 0:
                raise ConfigError(f"storage.eviction_interval: invalid value {table[name]!r}; expected more than 0")
            values: dict[str, Any] = {name: seconds}
            settings = replace(settings, **values)
    return settings


def config_from_mapping(document: dict[str, Any], base_dir: Path) -> Config:
    """Build a Config from a parsed TOML document; relative paths resolve against `base_dir`."""
    _check_keys(
        document,
        {
            "listen",
            "data_dir",
            "log_level",
            "log_format",
            "workers",
            "remote_admin",
            "registry",
            "cache",
            "storage",
            "rules",
        },
        "",
    )
    config = Config(config_dir=base_dir)
    if "listen" in document:
        config = replace(
            config, listen=parse_listen(_expect(document["listen"], str, "listen", "a string HOST:PORT"), "listen")
        )
    if "data_dir" in document:
        data_dir = Path(_expect(document["data_dir"], str, "data_dir", "a directory path"))
        config = replace(config, data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir)
    if "log_level" in document:
        level = _expect(document["log_level"], str, "log_level", "a string")
        if level.lower() not in _LOG_LEVELS:
            raise ConfigError(f"log_level: invalid value {level!r}; expected one of {', '.join(_LOG_LEVELS)}")
        config = replace(config, log_level=level.lower())
    if "remote_admin" in document:
        config = replace(config, remote_admin=_expect(document["remote_admin"], bool, "remote_admin", "true or false"))
    if "workers" in document:
        workers = _expect(document["workers"], int, "workers", "a positive integer")
        if not 1 <= workers <= 64:
            raise ConfigError(f"workers: invalid value {workers}; expected 1 to 64")
        config = replace(config, workers=workers)
    if "log_format" in document:
        log_format = _expect(document["log_format"], str, "log_format", "a string")
        if log_format not in ("text", "json"):
            raise ConfigError(f"log_format: invalid value {log_format!r}; expected 'text' or 'json'")
        config = replace(config, log_format=log_format)
    if "registry" in document:
        config = replace(config, registry=_registry_settings(document["registry"]))
    if "cache" in document:
        config = replace(config, cache=_cache_settings(document["cache"]))
    if "storage" in document:
        config = replace(config, storage=_storage_settings(document["storage"]))
    if "rules" in document:
        tables = _expect(document["rules"], list, "rules", "an array of tables ([[rules]])")
        config = replace(config, rule_tables=tuple(tables))
    build_rules(config)  # validates every rule now, so errors name the file
    return config


ENV_PREFIX = "DOCKET_"


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn `DOCKET_<KEY>` and `DOCKET_<TABLE>__<KEY>` variables into a partial document.

    Values are read as TOML values where they parse (`500`, `true`, `"x"`), else as
    strings, so `DOCKET_CACHE__TAG_TTL=30s` and `DOCKET_REGISTRY__MAX_PAGE_SIZE=500` work.
    `DOCKET_CONFIG` names the file and is not a key.
    """
    document: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "DOCKET_CONFIG" or name.startswith("DOCKET_TEST_"):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        try:
            value: Any = tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError:
            value = raw
        table = document
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"DOCKET_* environment variables: {name} conflicts with another DOCKET_ variable")
        table[path[-1]] = value
    return document


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_document(path: Path) -> dict[str, Any]:
    """Parse a TOML configuration file, raising ConfigError with the file name."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: the file is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at `path` (defaults when None) with environment overrides applied.

    Without `environ`, no environment variables are read.
    """
    document = read_document(path) if path is not None else {}
    base_dir = path.parent.resolve() if path is not None else Path.cwd()
    try:
        config = config_from_mapping(document, base_dir)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None
    overrides = env_overrides(environ) if environ is not None else {}
    if not overrides:
        return config
    try:
        return config_from_mapping(_merge(document, overrides), base_dir)
    except ConfigError as error:
        raise ConfigError(f"DOCKET_* environment variables: {error}") from None


def check_document(document: dict[str, Any], base_dir: Path) -> list[str]:
    """Validate a configuration document and return every problem found, not only the first."""
    problems: list[str] = []

    def attempt(partial: dict[str, Any]) -> None:
        try:
            config_from_mapping(partial, base_dir)
        except ConfigError as error:
            problems.append(str(error))

    no_embedded = {"cache": {"embedded_rules": False}}
    for key, value in document.items():
        if key in ("registry", "cache", "storage") and isinstance(value, dict):
            for inner, inner_value in value.items():
                # default_rule names a rule, so it is checked together with the rules.
                partial = {key: {inner: inner_value}}
                if inner == "default_rule":
                    partial["rules"] = document.get("rules", [])
                attempt(_merge(no_embedded, partial))
        elif key == "rules" and isinstance(value, list):
            for index, table in enumerate(value):
                before = len(problems)
                attempt(_merge(no_embedded, {"rules": [table]}))
                problems[before:] = [problem.replace("rules[0]", f"rules[{index}]") for problem in problems[before:]]
        else:
            attempt(_merge(no_embedded, {key: value}))
    if not problems:
        attempt(document)  # problems that only show together, such as duplicate prefixes
    return list(dict.fromkeys(line for problem in problems for line in problem.splitlines()))
