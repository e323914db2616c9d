"""`python -m scheduler_svc`: run the scheduler with settings from MLAAS_* variables."""

from __future__ import annotations

import logging
import os

from mlaas.env import env_bool
from mlaas.services.lifetime import die_with_starter
from mlaas.services.private_files import private_by_default
from mlaas.services.settings import current_env
from scheduler_svc.app import build_scheduler
from scheduler_svc.settings import SchedulerSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    die_with_starter()
    private_by_default()
    env = current_env()
    settings = SchedulerSettings.from_env(env)
    scheduler = build_scheduler(settings, dict(os.environ)).start()
    scheduler.server.serve_until_signalled()
    # Replicas normally outlive a scheduler restart; `mlaas up` asks for them to go too.
    scheduler.stop(0, stop_replicas=env_bool(env, "MLAAS_STOP_REPLICAS_ON_EXIT", False))


if __name__ == "__main__":
    main()
