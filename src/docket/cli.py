"""The `docket` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from docket import __version__
from docket.config import ConfigError, load_config, parse_listen


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
        "--log-level", choices=("debug", "info", "warning", "error"), help="minimum level of log messages (default info)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        return _serve(arguments)
    return 2


def _serve(arguments: argparse.Namespace) -> int:
    try:
        config = load_config(arguments.config)
        if arguments.listen is not None:
            config = replace(config, listen=parse_listen(arguments.listen, "--listen"))
    except ConfigError as error:
        print(f"docket: invalid configuration: {error}", file=sys.stderr)
        return 2
    if arguments.data_dir is not None:
        config = replace(config, data_dir=arguments.data_dir)
    if arguments.log_level is not None:
        config = replace(config, log_level=arguments.log_level)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Alembic reports every plugin and migration step at INFO; only problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from docket.server import serve

    serve(config)
    return 0
