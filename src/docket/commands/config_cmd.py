"""`docket config check` and `docket config show`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from docket.cache.rules import Rule
from docket.config import Config, ConfigError, build_rules, check_document, load_config, read_document
from docket.units import format_duration

REDACTED = "<redacted>"


def check(path: Path, environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Validate a file, and the `DOCKET_*` variables of `environ`; return validity and the report."""
    try:
        document = read_document(path)
    except ConfigError as error:
        return False, str(error)
    problems = [f"{path}: {problem}" for problem in check_document(document, path.parent.resolve())]
    if environ is not None and not problems:
        try:
            load_config(path, environ)
        except ConfigError as error:
            problems.append(str(error))
    if not problems:
        return True, f"{path}: valid"
    return False, "\n".join(problems)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return json.dumps(str(value))


def _rule_lines(rule: Rule) -> list[str]:
    lines = [
        "[[rules]]",
        f"prefix = {_value(rule.prefix)}",
        f"url = {_value(rule.url)}",
    ]
    if rule.upstream_prefix:
        lines.append(f"upstream_prefix = {_value(rule.upstream_prefix)}")
    lines.append(f"namespace = {_value(rule.mirror_namespace)}")
    if rule.credentials is not None:
        lines.append(f"username = {_value(rule.credentials.username)}")
        lines.append("# password: set (redacted); give it with password_env or password_file")
    if rule.token_hosts:
        lines.append(f"token_hosts = {_value(rule.token_hosts)}")
    for name in ("tag_ttl", "referrers_ttl", "connect_timeout", "read_timeout", "max_retry_after", "referrers_wait"):
        lines.append(f"{name} = {_value(format_duration(getattr(rule, name)))}")
    for name in ("max_connections", "retries", "referrers_depth"):
        lines.append(f"{name} = {getattr(rule, name)}")
    lines.append(f"upstream_tag_deleted = {_value(rule.upstream_tag_deleted)}")
    lines.append(f"library_prefix = {_value(rule.library_prefix)}")
    for name in ("referrers_include", "referrers_exclude", "require_referrers"):
        if getattr(rule, name):
            lines.append(f"{name} = {_value(getattr(rule, name))}")
    if rule.referrers_max_size is not None:
        lines.append(f"referrers_max_size = {rule.referrers_max_size}")
    return lines


def show(config: Config) -> str:
    """Render the effective configuration as TOML, with every rule and no secrets."""
    lines = [
        "# Effective configuration: file, environment and flags combined; passwords redacted.",
        f"listen = {_value(str(config.listen))}",
        f"data_dir = {_value(str(config.data_dir))}",
        f"log_level = {_value(config.log_level)}",
        f"log_format = {_value(config.log_format)}",
        f"workers = {config.workers}",
        f"remote_admin = {_value(config.remote_admin)}",
        "",
        "[registry]",
        f"max_manifest_size = {config.registry.max_manifest_size}",
        f"max_page_size = {config.registry.max_page_size}",
        f"manifest_cache_size = {config.registry.manifest_cache_size}",
        f"automatic_mount = {_value(config.registry.automatic_mount)}",
        "",
        "[cache]",
        f"tag_ttl = {_value(format_duration(config.cache.tag_ttl))}",
        f"referrers_ttl = {_value(format_duration(config.cache.referrers_ttl))}",
        f"embedded_rules = {_value(config.cache.embedded_rules)}",
    ]
    if config.cache.default_rule:
        lines.append(f"default_rule = {_value(config.cache.default_rule)}")
    for section, values in config.extra_sections():
        lines += ["", f"[{section}]", *(f"{key} = {_value(value)}" for key, value in values.items())]
    for rule in sorted(build_rules(config).rules, key=lambda rule: rule.prefix):
        lines += ["", *_rule_lines(rule)]
    return "\n".join(lines)
