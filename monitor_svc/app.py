"""Wires the Monitor together: its store, the registry context loader, the retrainer thread and
the gRPC service."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.errors import DeadlineExceeded, FailedPrecondition, MlaasError, Unavailable
from mlaas.services.auth import MONITOR, Authenticator
from mlaas.services.live_scopes import LiveScopes
from mlaas.services.server import MeshServer, Service
from mlaas.v1 import monitor_pb2, monitor_pb2_grpc
from monitor_svc.access import DeploymentAccess, scheduler_lookup
from monitor_svc.background import warm_up_judging
from monitor_svc.changes import Changes
from monitor_svc.context import ContextLoader
from monitor_svc.deployments import DeploymentMonitors
from monitor_svc.ingest import Ingest
from monitor_svc.policies import Policies
from monitor_svc.privacy import SchedulerPrivacy
from monitor_svc.retrainer import Retrainer
from monitor_svc.servicer import MonitorServicer
from monitor_svc.settings import MonitorSettings
from monitor_svc.store import MonitorStore
from monitor_svc.trials import EndTrial, Trials
from monitor_svc.views import Views

log = logging.getLogger(__name__)
SERVICE_NAME = monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


@dataclass
class Monitor:
    server: MeshServer
    servicer: MonitorServicer
    deployments: DeploymentMonitors
    retrainer: Retrainer
    store: MonitorStore

    def start(self) -> Monitor:
        self.retrainer.recover()
        self.retrainer.start()
        self.deployments.trials.resume()
        self.server.start()
        warm_up_judging()
        return self

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace)
        self.retrainer.stop()
        self.store.close()


def ender(scheduler: SchedulerClient, token: str | None, attempts: int = 60, pause: float = 5.0) -> EndTrial:
    """Ends a trial the Monitor decided, at the scheduler, as the Monitor; tried again while the
    scheduler is away or the deployment busy (another change under way), for five minutes. True
    once there is nothing left to end; False if it gave up (the Monitor's next start tries again)."""
    as_monitor = scheduler.with_token(token)

    def end(deployment_id: str, promote: bool, champion: int, challenger: int, why: str) -> bool:
        for attempt in range(attempts):
            try:
                as_monitor.end_trial(deployment_id, promote, champion, challenger)
                log.info("trial of %s ended: %s", deployment_id, why)
                return True
            except (Unavailable, DeadlineExceeded, FailedPrecondition) as err:
                if isinstance(err, FailedPrecondition) and (
                    "no trial" in err.message or "not the trial" in err.message
                ):
                    return True  # its owner ended it first, or another trial runs now
                if attempt + 1 == attempts:
                    log.warning("trial of %s decided (%s) but not ended: %s", deployment_id, why, err)
                    return False
                time.sleep(pause)
            except MlaasError as err:  # the deployment is gone, or the Monitor may not
                log.warning("trial of %s decided (%s) but not ended: %s", deployment_id, why, err)
                return True
        return False

    return end


def build_monitor(settings: MonitorSettings) -> Monitor:
    authenticator = Authenticator.for_server(settings.server, MONITOR)
    store = MonitorStore(settings.database_path, settings.keep_predictions, settings.unmatched_label_seconds)
    # The clients of the other services, built once: the Monitor's own calls as its role, and
    # the scheduler's also with each caller's token (with_token) where it asks for a caller.
    registry = RegistryClient(settings.registry_address, settings.token)
    scheduler = SchedulerClient(settings.scheduler_address, timeout=10)
    as_monitor = scheduler.with_token(settings.token)
    contexts = ContextLoader(registry, settings.data_dir / "monitor-models")
    changes = Changes()
    metrics = CollectorRegistry()
    stage_seconds = Histogram(
        "mlaas_retraining_stage_seconds", "Seconds each stage of a rolled-out retraining took, after the one before",
        ["stage"], registry=metrics, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300),
    )  # fmt: skip
    retrainer = Retrainer(store, registry, as_monitor, changes, contexts, stage_seconds)
    scopes = LiveScopes(as_monitor)
    access = DeploymentAccess(authenticator, scheduler_lookup(scheduler), own_token=settings.token, scopes=scopes)
    privacy = SchedulerPrivacy(scheduler, settings.token)
    deployments = DeploymentMonitors(
        store, contexts, retrainer, changes, Trials(store, ender(scheduler, settings.token)), privacy.spent
    )
    ingest = Ingest(store, deployments, access.is_strict)
    policies, views = Policies(store, deployments, privacy, access.is_strict), Views(store, deployments, changes)
    servicer = MonitorServicer(access, ingest, policies, views)
    service = Service(SERVICE_NAME, servicer, monitor_pb2_grpc.add_MonitorServiceServicer_to_server)
    server = MeshServer("monitor", settings.server, [service], authenticator, metrics_registry=metrics)
    return Monitor(server, servicer, deployments, retrainer, store)
