"""The drift demo, against a running mesh (`make up`): a SEA classifier is registered and
deployed, serves concept 0 with its labels reported, then the concept changes (SEA 0 -> 3); the
Monitor sees the error rate rise, retrains the recipe on the recent labels and the scheduler
rolls the deployment to the new version, while this client keeps streaming.

With `strict_node` the deployment is STRICT on that node: labels are reported to its replica
there and stay on the node, the Monitor sees only counts of wrong predictions, and the round is
a training job on that node, which sends back only its verdict, counts and the model."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable

import numpy as np

from mlaas.client import MonitorClient, RegistryClient, SchedulerClient
from mlaas.demos.scenarios import paced, sea, sea_classifier
from mlaas.errors import MlaasError, NotFound
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.tls import ClientTLS
from mlaas.v1 import monitor_pb2

M = monitor_pb2
MODEL = "sea-demo"
DEMO_CONFIDENCE = 0.5
FINAL = (M.RETRAINING_STATE_ROLLED_OUT, M.RETRAINING_STATE_REJECTED, M.RETRAINING_STATE_FAILED)
# What an application sends while the Monitor retrains and rolls out. A stream as fast as the
# machine allows took both cores from the training job it was waiting for.
LIVE_REQUESTS_PER_SECOND = 200


def _phase(runtime, report_labels, concept, rows, prefix, rng) -> float:
    """Streams `rows` samples of a SEA concept, reports their labels; returns the accuracy."""
    X, y = sea(rows, concept, rng)
    ids = [f"{prefix}-{i}" for i in range(rows)]
    results = runtime.stream(({"X": X[i : i + 1]} for i in range(rows)), ids)
    answers = {r.request_id: r.outputs["label"][0] for r in results}
    report_labels(zip(ids, map(str, y), strict=True))
    return float(np.mean([answers[i] == label for i, label in zip(ids, y, strict=True)]))


def _collect(monitors: MonitorClient, deployment_id: str, seen: list) -> None:
    """Appends the deployment's drift events as they come, until the demo closes its client."""
    with contextlib.suppress(MlaasError, ValueError):
        for event in monitors.watch_drift(deployment_id):
            seen.append(event)


def run_drift_demo(
    registry: str, scheduler: str, monitor: str, token: str | None, say: Callable[[str], None],
    tls: ClientTLS | None = None, strict_node: str | None = None,
) -> dict:  # fmt: skip
    """`strict_node`: deploy STRICT there ("" for the first node), else OPEN."""
    rng = np.random.default_rng(42)
    with RegistryClient(registry, token, tls=tls) as client:
        try:
            client.get(MODEL)
        except NotFound:
            X, _ = sea(2_000, 0, np.random.default_rng(0))
            say(f"registering {MODEL}: degree-2 polynomial + logistic regression on SEA concept 0")
            register_sklearn(client, sea_classifier(), MODEL, X, reference_data=X[:1000],
                             summary="SEA concept 0 classifier for the drift demo")  # fmt: skip
    with SchedulerClient(scheduler, token, tls=tls) as schedulers, MonitorClient(monitor, token, tls=tls) as monitors:
        if strict_node == "":
            strict_node = schedulers.nodes()[0].name
        deployment = schedulers.wait_ready(schedulers.deploy(MODEL, strict_node=strict_node or "").id)
        where = f"STRICT on node {strict_node}" if strict_node else "OPEN"
        say(f"deployed {MODEL}:{deployment.model.version} as {deployment.id} ({where})")
        # SEA's change costs about 10 points of accuracy; a challenger fitted on a few hundred
        # labels wins back about 3, which a first round's few hundred labels may show only
        # below the default 95% confidence (the bench's river streams clear it at once).
        monitors.set_policy(deployment.id, monitor_pb2.MonitorPolicy(challenger_confidence=DEMO_CONFIDENCE))
        say(f"policy: a challenger rolls out when a paired test says it is better at {DEMO_CONFIDENCE:.0%} confidence")
        runtime = DeploymentInference(schedulers, deployment.id, token)
        if strict_node:  # to the replica on the node, where they stay
            report_labels = runtime.report_labels
            say(f"labels go to the replica on {strict_node} and stay there; the Monitor gets counts of errors")
        else:
            report_labels = functools.partial(monitors.report_labels, deployment.id)
        tag = deployment.id[-6:]
        before = _phase(runtime, report_labels, 0, 2_000, f"{tag}-c0", rng)
        say(f"concept 0: 2,000 requests streamed and labeled, accuracy {before:.3f}")
        # Every drift event from the change on (the report keeps only the latest 20, which a
        # retrained version's own events can push the one that caused it out of).
        seen: list[monitor_pb2.DriftEvent] = []
        watcher = threading.Thread(target=_collect, args=(monitors, deployment.id, seen), daemon=True)
        watcher.start()
        after = _phase(runtime, report_labels, 3, 1_500, f"{tag}-c3", rng)
        say(f"concept 3 (the drift): 1,500 requests streamed and labeled, accuracy {after:.3f}")
        stop, served = threading.Event(), []

        def keep_streaming() -> None:
            X, _ = sea(100_000, 3, rng)
            rows = paced(({"X": X[i : i + 1]} for i in range(len(X))), LIVE_REQUESTS_PER_SECOND, stop)
            for result in runtime.stream(rows, (f"{tag}-live-{i}" for i in range(len(X)))):
                served.append(result.model_version)

        live = threading.Thread(target=keep_streaming, daemon=True)
        live.start()
        retraining = None
        for retraining in monitors.watch_retraining(deployment.id):
            state = M.RetrainingState.Name(retraining.state).removeprefix("RETRAINING_STATE_")
            trained_on = f" on {retraining.trained_on}" if retraining.trained_on else ""
            reason = f" ({retraining.reason})" if retraining.reason else ""
            say(f"retraining {retraining.id}: {state}{trained_on}{reason}")
            if retraining.state in FINAL:
                break
        stop.set()
        live.join(30)
        for event in list(seen):
            say(f"drift event: {M.DriftKind.Name(event.kind)} {event.statistic} {event.value:.2f} > "
                f"{event.threshold:.2f} on samples {event.window_start_sample}-{event.window_end_sample}")  # fmt: skip
        final = schedulers.get(deployment.id)
        if retraining is not None and retraining.training_samples:
            samples, site = retraining.training_samples, retraining.trained_on
            say(f"the challenger was fitted on {samples} labeled samples on {site}")
        say(f"{deployment.id} now serves {MODEL}:{final.model.version}; {len(served)} live requests, none failed")
    return {
        "deployment": deployment.id,
        "accuracy_before": before,
        "accuracy_after_drift": after,
        "retraining_state": M.RetrainingState.Name(retraining.state) if retraining else "",
        "trained_on": retraining.trained_on if retraining else "",
        "version_now": final.model.version,
        "drift_events": [M.DriftKind.Name(e.kind) for e in list(seen)],
        "live_requests": len(served),
    }
