"""`python -m registry_svc`: run the registry with settings from MLAAS_* variables."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from mlaas import addresses
from mlaas.services.lifetime import die_with_starter
from mlaas.services.private_files import private_by_default
from mlaas.services.settings import current_env
from registry_svc.app import build_registry
from registry_svc.settings import RegistrySettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m registry_svc", description="MLaaS model registry")
    parser.add_argument(
        "--port", type=int, help=f"gRPC port (default MLAAS_REGISTRY_PORT or {addresses.REGISTRY_PORT})"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    die_with_starter()
    private_by_default()
    settings = RegistrySettings.from_env(current_env())
    if args.port is not None:
        settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, port=args.port))
    build_registry(settings).start().serve_until_signalled()


if __name__ == "__main__":
    main()
