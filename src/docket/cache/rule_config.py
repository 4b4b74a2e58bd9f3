"""Reading pull-through rules from the `[cache]` table and `[[rules]]` of the config file."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
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
from docket.errors import RegistryError
from docket.oci.reference import validate_repository
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


def _artifact_types(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise RuleConfigError(f"{key}: expected a list of artifact types (media type strings)")
    return tuple(value)


def _token_hosts(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(host, str) for host in value):
        raise RuleConfigError(f"{key}: expected a list of host names")
    return tuple(host.lower() for host in value)


def _choice(value: Any, key: str) -> str:
    if value not in (TAG_DELETED_FORGET, TAG_DELETED_KEEP):
        raise RuleConfigError(
            f"{key}: invalid value {value!r}; expected {TAG_DELETED_FORGET!r} or {TAG_DELETED_KEEP!r}"
        )
    return str(value)


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise RuleConfigError(f"{key}: invalid value {value!r}; expected true or false")
    return value


def _prefix(value: Any, key: str) -> str:
    prefix = _string(value, key).strip("/")
    try:
        validate_repository(prefix)
    except RegistryError:
        raise RuleConfigError(
            f"{key}: invalid prefix {prefix!r}; use lowercase repository path components "
            "such as 'docker.io' or 'team/app'"
        ) from None
    return prefix


def _upstream_prefix(value: Any, key: str) -> str:
    prefix = _string(value, key).strip("/")
    if prefix:
        try:
            validate_repository(prefix)
        except RegistryError:
            raise RuleConfigError(
                f"{key}: invalid repository path {prefix!r}; use lowercase path components such as 'org/team'"
            ) from None
    return prefix


def _namespace(value: Any, key: str) -> str:
    namespace = _string(value, key)
    if _HOST_RE.fullmatch(namespace) is None:
        raise RuleConfigError(f"{key}: invalid registry host {namespace!r}; expected HOST or HOST:PORT")
    return namespace


_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")

# Parser of each optional rule key, in the order problems are reported.
_FIELD_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "upstream_prefix": _upstream_prefix,
    "namespace": _namespace,
    "token_hosts": _token_hosts,
    "tag_ttl": _duration,
    "referrers_ttl": _duration,
    "connect_timeout": _duration,
    "read_timeout": _duration,
    "max_retry_after": _duration,
    "referrers_wait": _duration,
    "max_connections": _positive_int,
    "retries": lambda value, key: _positive_int(value, key, minimum=0),
    "referrers_depth": lambda value, key: _positive_int(value, key, minimum=0),
    "upstream_tag_deleted": _choice,
    "referrers_include": _artifact_types,
    "referrers_exclude": _artifact_types,
    "require_referrers": _artifact_types,
    "referrers_max_size": _size,
    "library_prefix": _boolean,
}


def rule_from_table(table: Any, key: str, defaults: Rule, base_dir: Path) -> Rule:
    """Build a Rule from one `[[rules]]` table; `defaults` carries the `[cache]` settings.

    Every problem of the table is collected; the raised error lists one per line.
    """
    if not isinstance(table, dict):
        raise RuleConfigError(f"{key}: expected a table")
    problems: list[str] = []
    values: dict[str, Any] = {}

    def attempt(name: str, parse: Callable[[], Any]) -> None:
        try:
            values[name] = parse()
        except RuleConfigError as error:
            problems.append(str(error))

    for name in table:
        if name not in RULE_KEYS:
            problems.append(f"{key}.{name}: unknown key; the valid keys are {', '.join(sorted(RULE_KEYS))}")
    for required in ("prefix", "url"):
        if required not in table:
            problems.append(f"{key}.{required}: missing; every rule needs prefix and url")
    if "prefix" in table:
        attempt("prefix", lambda: _prefix(table["prefix"], f"{key}.prefix"))
    if "url" in table:
        attempt("url", lambda: check_url(_string(table["url"], f"{key}.url"), f"{key}.url"))
    attempt("credentials", lambda: _credentials(table, key, base_dir))
    for name, parse in _FIELD_PARSERS.items():
        if name in table:
            attempt(name, functools.partial(parse, table[name], f"{key}.{name}"))
    if problems:
        raise RuleConfigError("\n".join(problems))
    return replace(defaults, **values)


def embedded_rules(defaults: Rule) -> list[Rule]:
    """Return the public-registry rules with the configured default TTLs and limits."""
    return [
        replace(defaults, prefix=rule.prefix, url=rule.url, library_prefix=rule.library_prefix)
        for rule in EMBEDDED_RULES
    ]
