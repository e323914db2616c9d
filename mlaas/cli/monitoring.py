"""`mlaas drift | feedback | retrainings | policy | demo drift`: what the Monitor sees, labels for
it, a deployment's monitoring policy, and the drift demo."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from mlaas.cli.connect import tls_of
from mlaas.cli.output import print_json, print_table
from mlaas.client import MonitorClient, SchedulerClient
from mlaas.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from mlaas.retraining.stages import durations
from mlaas.v1 import monitor_pb2, scheduler_pb2

M = monitor_pb2


def _monitor(args) -> MonitorClient:
    return MonitorClient(args.monitor, args.token, tls=tls_of(args))


def _kind(value: int) -> str:
    return M.DriftKind.Name(value).removeprefix("DRIFT_KIND_").lower()


def _describe(event: monitor_pb2.DriftEvent) -> str:
    return (
        f"{event.time.ToDatetime():%H:%M:%S}  {_kind(event.kind):10} {','.join(event.features):16} "
        f"{event.statistic} {event.value:.2f} > {event.threshold:.2f}  samples "
        f"{event.window_start_sample}-{event.window_end_sample}  (version {event.model_version})"
    )


def cmd_drift(args) -> None:
    with _monitor(args) as monitor:
        if args.watch or args.events:
            found = monitor.watch_drift(args.deployment) if args.watch else monitor.drift_events(args.deployment)
            for event in found:
                print_json(event) if args.json else print(_describe(event), flush=True)
            return
        report = monitor.report(args.deployment)
    if args.json:
        print_json(report)
        return
    print(f"deployment {report.deployment_id}, version {report.model_version}: {report.samples_seen} samples, "
          f"{report.labels_seen} labels, recent accuracy {report.recent_performance:.3f}")  # fmt: skip
    if report.samples_waiting:
        print(f"{report.samples_waiting} of them wait for the new version's drift thresholds (being calibrated)")
    if report.drift_scans_unavailable_reason:
        print(f"no data or prediction drift is tested: {report.drift_scans_unavailable_reason}")
    if report.feedback_dropped:
        print(f"{report.feedback_dropped} feedback records dropped by the runtimes (their buffer was full)")
    if report.retraining_unavailable_reason:
        print(f"retraining unavailable: {report.retraining_unavailable_reason}")
    print_table(
        ["FEATURE", "STATISTIC", "VALUE", "THRESHOLD", "DRIFTED"],
        [[f.feature, f.statistic, f"{f.value:.2f}" if math.isfinite(f.value) else "- (too few samples)",
          f"{f.threshold:.2f}", f"since sample {f.first_seen_sample}" if f.drifted and f.first_seen_sample
          else "yes" if f.drifted else "-"]
         for f in report.features],
    )  # fmt: skip
    if report.recent_events:
        print("\nrecent events:")
        for event in report.recent_events:
            print("  " + _describe(event))


def read_labels(path: Path) -> list[tuple[str, str | float]]:
    """A CSV (request_id,label) or JSON ({"request_id": label} or [[request_id, label], ...]).
    Numbers in JSON are regression targets; everything in a CSV is a class label."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        pairs = data.items() if isinstance(data, dict) else data
        return [(str(k), v if isinstance(v, int | float) and not isinstance(v, bool) else str(v)) for k, v in pairs]
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
        if rows and rows[0][0] == "request_id":
            rows = rows[1:]
        for number, row in enumerate(rows, start=1):
            if len(row) != 2 or not row[0]:
                raise InvalidArgument(f"{path}: row {number} should be request_id,label; got {row}")
        return [(row[0], row[1]) for row in rows]
    raise InvalidArgument(f"{path}: use .csv (request_id,label) or .json")


def _strict(args, scheduler: SchedulerClient) -> bool:
    """Whether the deployment is STRICT, if the scheduler can say (a mesh without one: no)."""
    try:
        return scheduler.get(args.deployment).mode == scheduler_pb2.PLACEMENT_MODE_STRICT
    except (NotFound, Unavailable, DeadlineExceeded):
        return False


def cmd_feedback(args) -> None:
    """Labels to the Monitor; a STRICT deployment's to one of its replicas, on its node."""
    labels = read_labels(Path(args.labels))
    with SchedulerClient(args.scheduler, args.token, timeout=5, tls=tls_of(args)) as scheduler:
        if _strict(args, scheduler):
            from mlaas.inference_client import DeploymentInference  # loads the inference stubs only here

            with DeploymentInference(scheduler, args.deployment, args.token, tls=tls_of(args)) as runtime:
                reply = runtime.report_labels(labels)
        else:
            with _monitor(args) as monitor:
                reply = monitor.report_labels(args.deployment, labels)
    if args.json:
        print_json(reply)
    else:
        print(f"{reply.accepted} labels stored; {reply.unmatched} wait for their prediction")


def cmd_retrainings(args) -> None:
    with _monitor(args) as monitor:
        found = monitor.retrainings(args.deployment)
    if args.json:
        print_json(found)
        return
    print_table(
        ["ID", "STATE", "FROM", "TO", "TRAINED ON", "SAMPLES", "EPSILON", "CHAMPION", "CHALLENGER", "TOOK", "REASON"],
        [[r.id, M.RetrainingState.Name(r.state).removeprefix("RETRAINING_STATE_"), r.parent_version,
          r.challenger_version or "-", r.trained_on or "-", r.training_samples or "-",
          f"{r.epsilon_spent:g}" if r.epsilon_spent else "-",
          f"{r.champion_metrics[0].value:.4f}" if r.champion_metrics else "-",
          f"{r.challenger_metrics[0].value:.4f}" if r.challenger_metrics else "-",
          f"{sum(s for _, s in durations(r.stages)):.2f}s" if len(r.stages) > 1 else "-", r.reason or "-"]
         for r in found],
    )  # fmt: skip
    if args.stages:
        for r in found:
            print(f"\n{r.id}: " + ", ".join(f"{stage} +{seconds:.2f}s" for stage, seconds in durations(r.stages)))


def cmd_demo(args) -> None:
    from mlaas.demos.drift_demo import run_drift_demo  # loads the inference stubs only here

    say = (lambda _: None) if args.json else (lambda line: print(line, flush=True))
    outcome = run_drift_demo(args.registry, args.scheduler, args.monitor, args.token, say, tls_of(args), args.strict)
    if args.json:
        print_json(outcome)


# --option -> MonitorPolicy field (numbers; 0 is "unchanged" on the wire, so it cannot be set,
# except for the privacy fields: --privacy-epsilon 0 turns differential privacy off)
POLICY_NUMBERS = {
    "window_size": int, "false_alarms_per_100k": float, "min_labels": int, "first_round_labels": int,
    "cooldown_labels": int, "challenger_confidence": float, "performance_expected_run_length": int,
    "privacy_epsilon": float, "privacy_budget": float, "trial_labels": int,
}  # fmt: skip
POLICY_SWITCHES = ("auto_retrain", "shadow_retrained")  # --option on|off


def cmd_policy(args) -> None:
    """Shows the policy; with options, changes those fields only (the others stay)."""
    change = M.MonitorPolicy(**{f: getattr(args, f) for f in POLICY_NUMBERS if getattr(args, f) is not None})
    for switch in POLICY_SWITCHES:
        if getattr(args, switch) is not None:
            setattr(change, switch, getattr(args, switch) == "on")
    with _monitor(args) as monitor:
        changing = change.ListFields()
        policy = monitor.set_policy(args.deployment, change) if changing else monitor.policy(args.deployment)
    if args.json:
        print_json(policy)
        return
    for field in (*POLICY_SWITCHES, *POLICY_NUMBERS):
        print(f"{field:32} {getattr(policy, field)}")


def add_parsers(commands, common: argparse.ArgumentParser) -> None:
    policy = commands.add_parser("policy", parents=[common], help="show or change a deployment's monitoring policy")
    policy.add_argument("deployment")
    for switch in POLICY_SWITCHES:
        policy.add_argument(f"--{switch.replace('_', '-')}", dest=switch, choices=["on", "off"])
    for field, kind in POLICY_NUMBERS.items():
        policy.add_argument(f"--{field.replace('_', '-')}", dest=field, type=kind)
    policy.set_defaults(run=cmd_policy)

    drift = commands.add_parser("drift", parents=[common], help="a deployment's drift report or events")
    drift.add_argument("deployment")
    drift.add_argument("--watch", action="store_true", help="follow drift events as they happen")
    drift.add_argument("--events", action="store_true", help="every drift event so far, oldest first")
    drift.set_defaults(run=cmd_drift)

    feedback = commands.add_parser("feedback", parents=[common], help="report true labels for predictions")
    feedback.add_argument("deployment")
    feedback.add_argument("--labels", required=True, help=".csv (request_id,label) or .json")
    feedback.set_defaults(run=cmd_feedback)

    retrainings = commands.add_parser("retrainings", parents=[common], help="a deployment's retrainings")
    retrainings.add_argument("deployment")
    retrainings.add_argument(
        "--stages", action="store_true", help="each stage of each round, in seconds after the one before"
    )
    retrainings.set_defaults(run=cmd_retrainings)

    demo = commands.add_parser("demo", parents=[common], help="run a scenario against a running mesh")
    demo.add_argument("scenario", choices=["drift"], help="drift: SEA concept change, detected and retrained")
    demo.add_argument(
        "--strict", nargs="?", const="", metavar="NODE",
        help="deploy STRICT on NODE (default: the first node): labels and retraining stay on it",
    )  # fmt: skip
    demo.set_defaults(run=cmd_demo)
