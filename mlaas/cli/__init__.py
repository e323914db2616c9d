"""The `mlaas` command line."""

from __future__ import annotations

import argparse
import os
import sys

from mlaas.cli import deployments, model, monitoring, up
from mlaas.errors import MlaasError


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        default=os.environ.get("MLAAS_REGISTRY_ADDR", "127.0.0.1:50051"),
        help="registry address (env MLAAS_REGISTRY_ADDR; default 127.0.0.1:50051)",
    )
    common.add_argument(
        "--scheduler",
        default=os.environ.get("MLAAS_SCHEDULER_ADDR", "127.0.0.1:50052"),
        help="scheduler address (env MLAAS_SCHEDULER_ADDR; default 127.0.0.1:50052)",
    )
    common.add_argument(
        "--monitor",
        default=os.environ.get("MLAAS_MONITOR_ADDR", "127.0.0.1:50053"),
        help="monitor address (env MLAAS_MONITOR_ADDR; default 127.0.0.1:50053)",
    )
    common.add_argument("--token", default=os.environ.get("MLAAS_TOKEN"), help="bearer token (env MLAAS_TOKEN)")
    common.add_argument(
        "--tls-ca",
        default=os.environ.get("MLAAS_TLS_CA"),
        help="CA file the servers' certificates chain to; turns TLS on (env MLAAS_TLS_CA)",
    )
    common.add_argument(
        "--tls-cert",
        default=os.environ.get("MLAAS_TLS_CLIENT_CERT"),
        help="client certificate, for servers that require one (env MLAAS_TLS_CLIENT_CERT)",
    )
    common.add_argument(
        "--tls-key", default=os.environ.get("MLAAS_TLS_CLIENT_KEY"), help="its key (env MLAAS_TLS_CLIENT_KEY)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="mlaas", description="MLaaS mesh command line")
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
