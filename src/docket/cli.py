"""The `docket` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from docket import __version__
from docket.config import Config, ConfigError, build_rules, load_config, parse_listen
from docket.units import parse_duration


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docket", description="An OCI registry that caches upstream images together with their referrers."
    )
    parser.add_argument("--version", action="version", version=f"docket {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the registry server")
    serve.add_argument("--config", type=Path, help="TOML configuration file (see docs/configuration.md)")
    serve.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--data-dir", type=Path, help="directory for content and metadata (default ./docket-data)")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="minimum level of log messages (default info)",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="PREFIX=URL",
        help="cache repositories under PREFIX from the registry at URL (repeatable)",
    )
    serve.add_argument(
        "--upstream-credentials",
        action="append",
        default=[],
        metavar="PREFIX=USER:PASSWORD",
        help="credentials for the rule with PREFIX; visible in process listings, so prefer the config file",
    )
    serve.add_argument(
        "--require-referrers",
        metavar="TYPE[,TYPE...]",
        help="serve cached images only if a referrer of one of these artifact types (or a cosign .sig tag) exists",
    )
    serve.add_argument(
        "--tag-ttl", metavar="DURATION", help="default time a cached tag is served unchecked (default 5m)"
    )
    serve.add_argument(
        "--referrers-ttl", metavar="DURATION", help="default time cached referrers are served unchecked (default 1h)"
    )
    refresh = commands.add_parser("refresh", help="revalidate a cached tag against its upstream now")
    refresh.add_argument("reference", metavar="REPOSITORY:TAG", help="for example docker.io/library/alpine:3")
    refresh.add_argument(
        "--server", default="http://127.0.0.1:5000", help="URL of the running Docket (default http://127.0.0.1:5000)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        return _serve(arguments)
    if arguments.command == "refresh":
        return _refresh(arguments)
    return 2


def _refresh(arguments: argparse.Namespace) -> int:
    url = f"{arguments.server.rstrip('/')}/_docket/refresh?" + urlencode({"reference": arguments.reference})
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        print(f"docket refresh: {arguments.reference}: HTTP {error.code}: {body}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        print(f"docket refresh: cannot reach {arguments.server}: {error}", file=sys.stderr)
        return 1
    print(f"{result['reference']} -> {result['digest']} ({result['result']})")
    return 0


def _split_pair(value: str, separator: str, flag: str, form: str) -> tuple[str, str]:
    left, found, right = value.partition(separator)
    if not found or not left or not right:
        raise ConfigError(f"{flag}: invalid value; expected {form}")
    return left, right


def _apply_flags(config: Config, arguments: argparse.Namespace) -> Config:
    if arguments.listen is not None:
        config = replace(config, listen=parse_listen(arguments.listen, "--listen"))
    if arguments.data_dir is not None:
        config = replace(config, data_dir=arguments.data_dir)
    if arguments.log_level is not None:
        config = replace(config, log_level=arguments.log_level)
    cache = config.cache
    for flag, name in (("--tag-ttl", "tag_ttl"), ("--referrers-ttl", "referrers_ttl")):
        value = getattr(arguments, name)
        if value is not None:
            try:
                durations: dict[str, Any] = {name: parse_duration(value)}
                cache = replace(cache, **durations)
            except ValueError as error:
                raise ConfigError(f"{flag}: {error}") from None
    rules = tuple(_split_pair(value, "=", "--upstream", "PREFIX=URL") for value in arguments.upstream)
    credentials = []
    for value in arguments.upstream_credentials:
        prefix, secret = _split_pair(value, "=", "--upstream-credentials", "PREFIX=USER:PASSWORD")
        username, password = _split_pair(secret, ":", "--upstream-credentials", "PREFIX=USER:PASSWORD")
        credentials.append((prefix, username, password))
    required: tuple[str, ...] = ()
    if arguments.require_referrers:
        required = tuple(value.strip() for value in arguments.require_referrers.split(",") if value.strip())
    config = replace(
        config, cache=cache, cli_rules=rules, cli_credentials=tuple(credentials), cli_require_referrers=required
    )
    build_rules(config)
    return config


def _serve(arguments: argparse.Namespace) -> int:
    try:
        config = _apply_flags(load_config(arguments.config), arguments)
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Alembic reports every plugin and migration step at INFO; only problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from docket.server import serve

    serve(config)
    return 0
