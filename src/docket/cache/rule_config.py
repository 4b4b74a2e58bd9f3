"""Reading pull-through rules from the `[cache]` table and `[[rules]]` of the config file."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from docket.cache.rules import (
    EMBEDDED_RULES,
    TAG_DELETED_FORGET,
    TAG_DELETED_KEEP,
    Credentials,
    Rule,
)
from docket.units import parse_duration, parse_size

RULE_KEYS = {
    "prefix",
    "url",
    "upstream_prefix",
    "namespace",
    "username",
    "username_env",
    "password_env",
    "password_file",
    "token_hosts",
    "tag_ttl",
    "referrers_ttl",
    "max_connections",
    "connect_timeout",
    "read_timeout",
    "retries",
    "max_retry_after",
    "upstream_tag_deleted",
    "library_prefix",
    "referrers_include",
    "referrers_exclude",
    "referrers_max_size",
    "referrers_depth",
    "referrers_wait",
    "require_referrers",
}


class RuleConfigError(ValueError):
    pass


def check_url(url: str, key: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise RuleConfigError(f"{key}: invalid upstream URL {url!r}; expected http(s)://HOST[:PORT]")
    if parts.path not in ("", "/"):
        raise RuleConfigError(
            f"{key}: invalid upstream URL {url!r}; give only scheme and host, and use upstream_prefix for a path"
        )
    return url.rstrip("/")


def _duration(value: Any, key: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise RuleConfigError(f"{key}: {error}") from None


def _size(value: Any, key: str) -> int:
    try:
        return parse_size(value)
    except ValueError as error:
        raise RuleConfigError(f"{key}: {error}") from None


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RuleConfigError(f"{key}: invalid value {value!r}; expected a string")
    return value


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RuleConfigError(f"{key}: invalid value {value!r}; expected an integer of at least {minimum}")
    return value


def _credentials(table: dict[str, Any], key: str, base_dir: Path) -> Credentials | None:
    username = table.get("username")
    if "username_env" in table:
        variable = _string(table["username_env"], f"{key}.username_env")
        username = os.environ.get(variable)
        if username is None:
            raise RuleConfigError(f"{key}.username_env: environment variable {variable} is not set")
    password = None
    if "password_env" in table:
        variable = _string(table["password_env"], f"{key}.password_env")
        password = os.environ.get(variable)
        if password is None:
            raise RuleConfigError(f"{key}.password_env: environment variable {variable} is not set")
    if "password_file" in table:
        if password is not None:
            raise RuleConfigError(f"{key}: set password_env or password_file, not both")
        path = Path(_string(table["password_file"], f"{key}.password_file"))
        path = path if path.is_absolute() else base_dir / path
        try:
            password = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise RuleConfigError(f"{key}.password_file: cannot read {path}: {error}") from None
    if username is None and password is None:
        return None
    if username is None or password is None:
        raise RuleConfigError(f"{key}: credentials need both a username and a password (password_env or password_file)")
    return Credentials(_string(username, f"{key}.username"), password)


def rule_from_table(table: Any, key: str, defaults: Rule, base_dir: Path) -> Rule:
    """Build a Rule from one `[[rules]]` table; `defaults` carries the `[cache]` settings."""
    if not isinstance(table, dict):
        raise RuleConfigError(f"{key}: expected a table")
    for name in table:
        if name not in RULE_KEYS:
            raise RuleConfigError(f"{key}.{name}: unknown key; the valid keys are {', '.join(sorted(RULE_KEYS))}")
    for required in ("prefix", "url"):
        if required not in table:
            raise RuleConfigError(f"{key}.{required}: missing; every rule needs prefix and url")
    rule = replace(
        defaults,
        prefix=_string(table["prefix"], f"{key}.prefix").strip("/"),
        url=check_url(_string(table["url"], f"{key}.url"), f"{key}.url"),
        credentials=_credentials(table, key, base_dir),
    )
    if "upstream_prefix" in table:
        rule = replace(rule, upstream_prefix=_string(table["upstream_prefix"], f"{key}.upstream_prefix").strip("/"))
    if "namespace" in table:
        rule = replace(rule, namespace=_string(table["namespace"], f"{key}.namespace"))
    if "token_hosts" in table:
        hosts = table["token_hosts"]
        if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
            raise RuleConfigError(f"{key}.token_hosts: expected a list of host names")
        rule = replace(rule, token_hosts=tuple(host.lower() for host in hosts))
    for name in ("tag_ttl", "referrers_ttl", "connect_timeout", "read_timeout", "max_retry_after"):
        if name in table:
            durations: dict[str, Any] = {name: _duration(table[name], f"{key}.{name}")}
            rule = replace(rule, **durations)
    if "max_connections" in table:
        rule = replace(rule, max_connections=_positive_int(table["max_connections"], f"{key}.max_connections"))
    if "retries" in table:
        rule = replace(rule, retries=_positive_int(table["retries"], f"{key}.retries", minimum=0))
    if "upstream_tag_deleted" in table:
        choice = table["upstream_tag_deleted"]
        if choice not in (TAG_DELETED_FORGET, TAG_DELETED_KEEP):
            raise RuleConfigError(
                f"{key}.upstream_tag_deleted: invalid value {choice!r}; expected "
                f"{TAG_DELETED_FORGET!r} or {TAG_DELETED_KEEP!r}"
            )
        rule = replace(rule, upstream_tag_deleted=choice)
    for name in ("referrers_include", "referrers_exclude", "require_referrers"):
        if name in table:
            values = table[name]
            if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
                raise RuleConfigError(f"{key}.{name}: expected a list of artifact types (media type strings)")
            listed: dict[str, Any] = {name: tuple(values)}
            rule = replace(rule, **listed)
    if "referrers_max_size" in table:
        rule = replace(rule, referrers_max_size=_size(table["referrers_max_size"], f"{key}.referrers_max_size"))
    if "referrers_depth" in table:
        rule = replace(rule, referrers_depth=_positive_int(table["referrers_depth"], f"{key}.referrers_depth", 0))
    if "referrers_wait" in table:
        rule = replace(rule, referrers_wait=_duration(table["referrers_wait"], f"{key}.referrers_wait"))
    if "library_prefix" in table:
        value = table["library_prefix"]
        if not isinstance(value, bool):
            raise RuleConfigError(f"{key}.library_prefix: invalid value {value!r}; expected true or false")
        rule = replace(rule, library_prefix=value)
    return rule


def embedded_rules(defaults: Rule) -> list[Rule]:
    """The public-registry rules, with the configured default TTLs and limits."""
    return [
        replace(defaults, prefix=rule.prefix, url=rule.url, library_prefix=rule.library_prefix)
        for rule in EMBEDDED_RULES
    ]
