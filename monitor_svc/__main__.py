"""`python -m monitor_svc`: run the Monitor with settings from MLAAS_* variables."""

from __future__ import annotations

import logging

from mlaas.services.lifetime import die_with_starter
from mlaas.services.private_files import private_by_default
from mlaas.services.settings import current_env
from monitor_svc.app import build_monitor
from monitor_svc.settings import MonitorSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    die_with_starter()
    private_by_default()
    monitor = build_monitor(MonitorSettings.from_env(current_env())).start()
    monitor.server.serve_until_signalled()
    monitor.stop(0)


if __name__ == "__main__":
    main()
