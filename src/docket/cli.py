"""The `docket` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from docket import __version__
from docket.commands.http import DEFAULT_SERVER, CommandError, report, server_url
from docket.config import Config, ConfigError, build_rules, load_config, parse_listen
from docket.logs import setup_logging
from docket.units import parse_duration


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docket", description="An OCI registry that caches upstream images together with their referrers."
    )
    parser.add_argument("--version", action="version", version=f"docket {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the registry server")
    config_help = "TOML configuration file (default: $DOCKET_CONFIG; see docs/configuration.md)"
    serve.add_argument("--config", type=Path, help=config_help)
    serve.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--data-dir", type=Path, help="directory for content and metadata (default ./docket-data)")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="minimum level of log messages (default info)",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="worker processes sharing the data directory (default 1)"
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as readable text or one JSON object each (default text)",
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
    server_help = f"URL of the running Docket (default {DEFAULT_SERVER})"

    config_command = commands.add_parser("config", help="validate or print configuration")
    config_actions = config_command.add_subparsers(dest="action", required=True)
    config_check = config_actions.add_parser("check", help="validate a configuration file without starting")
    config_check.add_argument("file", type=Path, nargs="?", help="TOML configuration file")
    config_check.add_argument("--config", type=Path, help="the same file, as the other commands take it")
    config_show = config_actions.add_parser("show", help="print the effective configuration, secrets redacted")
    config_show.add_argument("--config", type=Path, help=config_help)

    rules = commands.add_parser("rules", help="list pull-through rules or check their upstreams")
    rules_actions = rules.add_subparsers(dest="action", required=True)
    rules_list = rules_actions.add_parser("list", help="print every rule")
    rules_list.add_argument("--config", type=Path, help=config_help)
    rules_check = rules_actions.add_parser("check", help="contact each rule's upstream: reachability, auth, referrers")
    rules_check.add_argument("prefix", nargs="?", help="check only the rule with this prefix")
    rules_check.add_argument("--config", type=Path, help=config_help)
    rules_check.add_argument("--repository", help="upstream repository for the referrers API probe")

    gc = commands.add_parser("gc", help="delete unreferenced blobs and expired upload sessions")
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    gc.add_argument("--server", default=DEFAULT_SERVER, help=server_help + "; GC runs inside it")
    gc.add_argument(
        "--offline",
        action="store_true",
        help="collect in the data directory of --config/--data-dir directly; no server may be using it",
    )
    gc.add_argument("--config", type=Path, help=config_help)
    gc.add_argument("--data-dir", type=Path, help="data directory for --offline")

    status = commands.add_parser("status", help="print cache size, hit ratio, upstream health and recent problems")
    status.add_argument("--server", default=DEFAULT_SERVER, help=server_help)
    refresh = commands.add_parser("refresh", help="revalidate a cached tag against its upstream now")
    refresh.add_argument("reference", metavar="REPOSITORY:TAG", help="for example docker.io/library/alpine:3")
    refresh.add_argument("--server", default=DEFAULT_SERVER, help=server_help)

    warm = commands.add_parser("warm", help="pull images and all their referrers into the cache")
    warm.add_argument("references", nargs="+", metavar="REFERENCE", help="REPOSITORY:TAG or REPOSITORY@DIGEST")
    warm.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="only this platform of a multi-platform index")
    warm.add_argument("--server", default=DEFAULT_SERVER, help=server_help)

    inspect = commands.add_parser("inspect", help="print an image's cached tree with its referrers")
    inspect.add_argument("reference", metavar="REFERENCE", help="REPOSITORY:TAG or REPOSITORY@DIGEST")
    inspect.add_argument("--server", default=DEFAULT_SERVER, help=server_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader of our output went away (`docket status | head`); that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if getattr(arguments, "server", None):
        arguments.server = server_url(arguments.server)
    if arguments.command == "serve":
        return _serve(arguments)
    if arguments.command in ("refresh", "warm", "inspect", "status"):
        return _run_client_command(arguments)
    if arguments.command == "gc":
        return _gc_command(arguments)
    if arguments.command == "config":
        return _config_command(arguments)
    if arguments.command == "rules":
        return _rules_command(arguments)
    return 2


def _config_path(arguments: argparse.Namespace) -> Path | None:
    if arguments.config is not None:
        return Path(arguments.config)
    from_environment = os.environ.get("DOCKET_CONFIG")
    return Path(from_environment) if from_environment else None


def _effective_config(arguments: argparse.Namespace) -> Config:
    return load_config(_config_path(arguments), os.environ)


def _gc_command(arguments: argparse.Namespace) -> int:
    from docket.commands import gc

    try:
        if arguments.offline:
            config = _effective_config(arguments)
            if arguments.data_dir is not None:
                config = replace(config, data_dir=arguments.data_dir)
            output = asyncio.run(gc.gc_offline(config, arguments.dry_run))
        else:
            output = asyncio.run(gc.gc_on_server(arguments.server, arguments.dry_run))
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    except CommandError as error:
        return report(error, "gc")
    except aiohttp.ClientError as error:
        return report(CommandError(f"cannot reach {arguments.server}: {error}"), "gc")
    print(output)
    return 0


def _config_command(arguments: argparse.Namespace) -> int:
    from docket.commands import config_cmd

    if arguments.action == "check":
        path = arguments.file or _config_path(arguments)
        if path is None:
            print("docket config check: name a file (or set DOCKET_CONFIG)", file=sys.stderr)
            return 2
        valid, report_text = config_cmd.check(path, os.environ)
        print(report_text, file=sys.stdout if valid else sys.stderr)
        return 0 if valid else 2
    try:
        print(config_cmd.show(_effective_config(arguments)))
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    return 0


def _rules_command(arguments: argparse.Namespace) -> int:
    from docket.commands import rules_cmd

    try:
        rules = build_rules(_effective_config(arguments))
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    if arguments.action == "list":
        print(rules_cmd.list_rules(rules))
        return 0
    selected = [rule for rule in rules.rules if arguments.prefix in (None, rule.prefix)]
    if not selected:
        print(f"docket rules check: no rule has the prefix {arguments.prefix!r}", file=sys.stderr)
        return 2

    async def check_all() -> bool:
        all_ok = True
        for rule in sorted(selected, key=lambda rule: rule.prefix):
            ok, lines = await rules_cmd.check_rule(rule, arguments.repository)
            print("\n".join(lines), flush=True)
            all_ok &= ok
        return all_ok

    return 0 if asyncio.run(check_all()) else 1


def _run_client_command(arguments: argparse.Namespace) -> int:
    from docket.commands import inspect, refresh, status, warm

    command = arguments.command
    try:
        if command == "refresh":
            output = asyncio.run(refresh.refresh(arguments.server, arguments.reference))
        elif command == "status":
            output = asyncio.run(status.status(arguments.server))
        elif command == "warm":
            output = asyncio.run(warm.warm(arguments.server, arguments.references, arguments.platform))
        else:
            output = asyncio.run(inspect.inspect(arguments.server, arguments.reference))
    except CommandError as error:
        return report(error, command)
    except aiohttp.ClientError as error:
        return report(CommandError(f"cannot reach {arguments.server}: {error}"), command)
    print(output)
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
    if arguments.log_format is not None:
        config = replace(config, log_format=arguments.log_format)
    if arguments.workers is not None:
        if not 1 <= arguments.workers <= 64:
            raise ConfigError(f"--workers: invalid value {arguments.workers}; expected 1 to 64")
        config = replace(config, workers=arguments.workers)
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
    if arguments.require_referrers is not None:
        required = tuple(value.strip() for value in arguments.require_referrers.split(",") if value.strip())
        if not required:
            raise ConfigError("--require-referrers: expected at least one artifact type")
    config = replace(
        config, cache=cache, cli_rules=rules, cli_credentials=tuple(credentials), cli_require_referrers=required
    )
    build_rules(config)
    return config


def _serve(arguments: argparse.Namespace) -> int:
    try:
        config = _apply_flags(_effective_config(arguments), arguments)
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    from docket import multiprocess_metrics
    from docket.storage.lock import SERVER, DataDirectoryBusy, hold

    # One server per data directory: the lock comes before anything in the directory changes.
    try:
        lock = hold(config.data_dir, SERVER)
    except DataDirectoryBusy as error:
        print(f"docket: cannot serve: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"docket: cannot serve: cannot use data directory {config.data_dir}: {error}", file=sys.stderr)
        return 1
    try:
        if config.workers > 1 or multiprocess_metrics.enabled():
            multiprocess_metrics.enable(config.data_dir)
        from docket.server import StartupFailed, serve

        try:
            serve(config)
        except StartupFailed as error:
            print(f"docket: cannot serve: {error}", file=sys.stderr)
            return 1
    finally:
        os.close(lock)
    return 0
