"""The `mlaas` command line."""

from __future__ import annotations

import argparse
import os
import sys

from mlaas import addresses
from mlaas.cli import deployments, model, monitoring, up
from mlaas.errors import MlaasError, Unavailable


def common_options(after_command: bool = False) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. After it they default to nothing
    (argparse.SUPPRESS): a command's parser would otherwise put its defaults over what was given
    before the command's name."""
    common = argparse.ArgumentParser(add_help=False)

    def option(name: str, default, help_text: str, **kwargs) -> None:
        common.add_argument(name, default=argparse.SUPPRESS if after_command else default, help=help_text, **kwargs)

    env = os.environ.get
    option(
        "--registry",
        env("MLAAS_REGISTRY_ADDR", addresses.REGISTRY),
        f"registry address (env MLAAS_REGISTRY_ADDR; default {addresses.REGISTRY})",
    )
    option(
        "--scheduler",
        env("MLAAS_SCHEDULER_ADDR", addresses.SCHEDULER),
        f"scheduler address (env MLAAS_SCHEDULER_ADDR; default {addresses.SCHEDULER})",
    )
    option(
        "--monitor",
        env("MLAAS_MONITOR_ADDR", addresses.MONITOR),
        f"monitor address (env MLAAS_MONITOR_ADDR; default {addresses.MONITOR})",
    )
    option("--token", env("MLAAS_TOKEN"), "bearer token (env MLAAS_TOKEN)")
    option(
        "--tls-ca", env("MLAAS_TLS_CA"), "CA file the servers' certificates chain to; turns TLS on (env MLAAS_TLS_CA)"
    )
    option(
        "--tls-cert",
        env("MLAAS_TLS_CLIENT_CERT"),
        "client certificate, for servers that require one (env MLAAS_TLS_CLIENT_CERT)",
    )
    option("--tls-key", env("MLAAS_TLS_CLIENT_KEY"), "its key (env MLAAS_TLS_CLIENT_KEY)")
    option("--json", False, "machine-readable JSON output", action="store_true")
    return common  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from mlaas import __version__

    common = common_options(after_command=True)
    # No abbreviations: the options before the command would otherwise claim a command's own
    # (`mlaas up --tls` was "ambiguous: --tls-ca, --tls-cert, --tls-key").
    parser = argparse.ArgumentParser(
        prog="mlaas", description="MLaaS mesh command line", parents=[common_options()], allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"mlaas {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up.add_parser(commands, common)
    model.add_parser(commands, common)
    deployments.add_parsers(commands, common)
    monitoring.add_parsers(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except Unavailable as err:
        print(f"error: UNAVAILABLE: {err.message}", file=sys.stderr)
        print(
            "is the mesh running? Start one with `mlaas up`, or point at it with --registry, --scheduler and "
            "--monitor (or MLAAS_REGISTRY_ADDR, MLAAS_SCHEDULER_ADDR, MLAAS_MONITOR_ADDR)",
            file=sys.stderr,
        )
        return 1
    except MlaasError as err:
        print(f"error: {err.code.name}: {err.message}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `mlaas model list --json | head`
        return 0
