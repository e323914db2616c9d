"""`mlaas deploy | deployments | nodes | decommission | scale | autoscale | update | infer`."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import numpy as np

from mlaas.cli.connect import tls_of
from mlaas.cli.output import print_json, print_table
from mlaas.client import SchedulerClient
from mlaas.datatypes import OIP_TO_NUMPY
from mlaas.errors import InvalidArgument
from mlaas.quantities import format_cpu, format_memory
from mlaas.refs import format_ref, job_state_name, parse_ref, state_name
from mlaas.v1 import scheduler_pb2


def _scheduler(args) -> SchedulerClient:
    return SchedulerClient(args.scheduler, args.token, tls=tls_of(args))


def autoscaling_policy(args) -> scheduler_pb2.AutoscalingPolicy | None:
    """The policy the autoscaling options ask for (None without --max-replicas); the scheduler
    checks it (INVALID_ARGUMENT with what is wrong)."""
    if args.max_replicas is None:
        if args.target_inflight is not None or args.target_p99_ms is not None:
            raise InvalidArgument("--target-inflight and --target-p99-ms need --max-replicas")
        return None
    return scheduler_pb2.AutoscalingPolicy(
        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        target_inflight=args.target_inflight or 0.0, target_p99_ms=args.target_p99_ms or 0.0,
        scale_down_window_seconds=args.scale_down_window or 0.0,
    )  # fmt: skip


def add_autoscaling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("autoscaling (the scheduler sets the replicas from the load)")
    group.add_argument(
        "--min-replicas",
        type=int,
        default=1,
        help="the fewest replicas (default 1; 0: none while idle, the next request starts one)",
    )
    group.add_argument("--max-replicas", type=int, help="the most replicas: turns autoscaling on")
    target = group.add_mutually_exclusive_group()
    target.add_argument("--target-inflight", type=float, help="requests in flight per replica to hold")
    target.add_argument("--target-p99-ms", type=float, help="the 99th percentile latency to stay under")
    group.add_argument("--scale-down-window", type=float, metavar="SECONDS", help="how long the load must need "
                       "fewer replicas before they go (default 60)")  # fmt: skip


def cmd_deploy(args) -> None:
    with _scheduler(args) as scheduler:
        deployment = scheduler.deploy(
            parse_ref(args.model), args.replicas or 0, args.strict or "", args.idempotency_key or "",
            autoscaling_policy(args),
        )  # fmt: skip
        if args.wait:
            say = (lambda e: None) if args.json else (lambda e: print(f"  {state_name(e.state):10} {e.detail}"))
            deployment = scheduler.wait_ready(deployment.id, say)
    if args.json:
        print_json(deployment)
    else:
        where = ", ".join(deployment.endpoints) or "-"
        rest = f"  REST: {', '.join(deployment.http_endpoints)}" if deployment.http_endpoints else ""
        bulk = f"  bulk: {', '.join(deployment.bulk_endpoints)}" if deployment.bulk_endpoints else ""
        state = state_name(deployment.state)
        print(f"{deployment.id}  {format_ref(deployment.model)}  {state}  endpoints: {where}{rest}{bulk}")


def cmd_deployments(args) -> None:
    with _scheduler(args) as scheduler:
        found = scheduler.list()
    if args.json:
        print_json(found)
        return
    print_table(
        ["ID", "MODEL", "STATE", "MODE", "REPLICAS", "NODES", "ENDPOINTS", "REST", "BULK", "REASON"],
        [
            [
                d.id,
                format_ref(d.model),
                state_name(d.state),
                scheduler_pb2.PlacementMode.Name(d.mode).removeprefix("PLACEMENT_MODE_"),
                replicas_text(d),
                ",".join(r.node for r in d.replica_status) or "-",
                ",".join(d.endpoints) or "-",
                ",".join(d.http_endpoints) or "-",
                ",".join(d.bulk_endpoints) or "-",
                d.reason or "-",
            ]
            for d in found
        ],
    )


def replicas_text(deployment: scheduler_pb2.Deployment) -> str:
    """Its replicas, and its autoscaling bounds when it has them (`2 (1-4)`)."""
    policy = deployment.autoscaling
    bounds = f" ({policy.min_replicas}-{policy.max_replicas})" if deployment.HasField("autoscaling") else ""
    return f"{deployment.replicas}{bounds}"


def cmd_nodes(args) -> None:
    with _scheduler(args) as scheduler:
        nodes = scheduler.nodes()
    if args.json:
        print_json(nodes)
        return
    print_table(
        ["NODE", "CPU FREE/ALL", "MEMORY FREE/ALL", "GPUS FREE/ALL"],
        [
            [
                n.name,
                f"{format_cpu(n.free.cpu_millicores)}/{format_cpu(n.allocatable.cpu_millicores)}",
                f"{format_memory(n.free.memory_bytes)}/{format_memory(n.allocatable.memory_bytes)}",
                f"{n.free.gpus}/{n.allocatable.gpus}",
            ]
            for n in nodes
        ],
    )


def _print_state(args, deployment: scheduler_pb2.Deployment) -> None:
    if args.json:
        print_json(deployment)
    else:
        state = state_name(deployment.state)
        trial = deployment.trial
        mode = scheduler_pb2.TrialMode.Name(trial.mode).removeprefix("TRIAL_MODE_").lower()
        beside = f"  trial: version {trial.version} ({mode})" if trial.version else ""
        replicas = replicas_text(deployment)
        print(f"{deployment.id}  {format_ref(deployment.model)}  {state}  replicas: {replicas}{beside}")


def cmd_decommission(args) -> None:
    with _scheduler(args) as scheduler:
        _print_state(args, scheduler.decommission(args.deployment))


def cmd_scale(args) -> None:
    with _scheduler(args) as scheduler:
        deployment = scheduler.scale(args.deployment, args.replicas)
        _print_state(args, scheduler.wait_settled(deployment.id) if args.wait else deployment)


def cmd_autoscale(args) -> None:
    with _scheduler(args) as scheduler:
        if args.off:
            if args.max_replicas is not None or args.target_inflight is not None or args.target_p99_ms is not None:
                raise InvalidArgument("--off goes alone: it keeps the replicas the deployment has now")
            deployment = scheduler.set_autoscaling(args.deployment, None)
        elif (policy := autoscaling_policy(args)) is None:
            raise InvalidArgument("say --max-replicas (and a target), or --off")
        else:
            deployment = scheduler.set_autoscaling(args.deployment, policy)
        _print_state(args, scheduler.wait_settled(deployment.id) if args.wait else deployment)


def cmd_update(args) -> None:
    with _scheduler(args) as scheduler:
        deployment = scheduler.update(args.deployment, parse_ref(args.model))
        _print_state(args, scheduler.wait_settled(deployment.id) if args.wait else deployment)


def cmd_rollout(args) -> None:
    """A trial of another version beside the served one, or its end."""
    with _scheduler(args) as scheduler:
        if args.promote or args.abort:
            deployment = scheduler.end_trial(args.deployment, promote=args.promote)
        else:
            version = parse_ref(args.shadow or args.canary)
            deployment = scheduler.start_trial(args.deployment, version, args.percent if args.canary else 0.0)
        _print_state(args, scheduler.wait_settled(deployment.id) if args.wait else deployment)


def load_input(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".csv":
        return np.loadtxt(path, delimiter=",", ndmin=2)
    if suffix == ".json":
        return np.asarray(json.loads(path.read_text()))
    raise InvalidArgument(f"{path}: use .npy, .csv or .json (a list of rows)")


def cmd_job(args) -> None:
    with _scheduler(args) as scheduler:
        job = (
            scheduler.training_job(args.job_id) if args.action == "show" else scheduler.cancel_training_job(args.job_id)
        )
    if args.json:
        print_json(job)
        return
    state = job_state_name(job.state)
    print(f"{job.id}  {format_ref(job.model)}  {state}  on {job.node or '-'}  {job.reason}".rstrip())


def cmd_infer(args) -> None:
    from mlaas.inference_client import DeploymentInference, label_ids  # loads the inference.* stubs only here

    request_id = args.request_id or f"r-{uuid.uuid4().hex[:12]}"
    with (
        _scheduler(args) as scheduler,
        DeploymentInference(scheduler, args.deployment, args.token, tls=tls_of(args)) as runtime,
    ):
        first = runtime.metadata().inputs[0]
        if args.ref:
            outputs = runtime.infer_reference(first.name, first.datatype, args.ref, request_id)
            shaped = next(iter(outputs.values()), np.zeros(1))  # the rows the runtime read
        else:
            shaped = load_input(Path(args.input)).astype(OIP_TO_NUMPY[first.datatype])
            outputs = runtime.infer({first.name: shaped}, request_id=request_id)
    as_lists = {name: value.tolist() for name, value in outputs.items()}
    ids = label_ids(request_id, shaped.shape[0] if shaped.ndim else 1)  # what `mlaas feedback` quotes
    if args.json:
        print_json({**as_lists, "request_ids": ids})
    else:
        for name, value in as_lists.items():
            print(f"{name}: {value}")
        print(f"request ids (for mlaas feedback): {', '.join(ids)}")


def add_parsers(commands, common: argparse.ArgumentParser) -> None:
    deploy = commands.add_parser("deploy", parents=[common], help="deploy NAME[:VERSION|@ALIAS]")
    deploy.add_argument("model")
    deploy.add_argument("--strict", metavar="NODE", help="only on this node (privacy)")
    deploy.add_argument("--replicas", type=int, help="how many (default 1, or --min-replicas)")
    deploy.add_argument("--idempotency-key")
    deploy.add_argument("--wait", action="store_true", help="follow progress until READY")
    add_autoscaling_options(deploy)
    deploy.set_defaults(run=cmd_deploy)

    listing = commands.add_parser("deployments", parents=[common], help="list deployments")
    listing.set_defaults(run=cmd_deployments)

    nodes = commands.add_parser("nodes", parents=[common], help="nodes with free and total capacity")
    nodes.set_defaults(run=cmd_nodes)

    decommission = commands.add_parser("decommission", parents=[common], help="stop a deployment")
    decommission.add_argument("deployment")
    decommission.set_defaults(run=cmd_decommission)

    scale = commands.add_parser("scale", parents=[common], help="change a deployment's replica count")
    scale.add_argument("deployment")
    scale.add_argument("replicas", type=int)
    scale.add_argument("--wait", action="store_true", help="until the change is over")
    scale.set_defaults(run=cmd_scale)

    autoscale = commands.add_parser(
        "autoscale", parents=[common], help="set a deployment's autoscaling policy, or turn it off"
    )
    autoscale.add_argument("deployment")
    autoscale.add_argument("--off", action="store_true", help="keep the replicas it has now; Scale sets them")
    autoscale.add_argument("--wait", action="store_true", help="until the change is over")
    add_autoscaling_options(autoscale)
    autoscale.set_defaults(run=cmd_autoscale)

    update = commands.add_parser("update", parents=[common], help="roll a deployment to another version")
    update.add_argument("deployment")
    update.add_argument("model", help="NAME:VERSION or NAME@ALIAS")
    update.add_argument("--wait", action="store_true", help="until the change is over")
    update.set_defaults(run=cmd_update)

    rollout = commands.add_parser(
        "rollout", parents=[common], help="try another version beside the served one (shadow, canary), or end the trial"
    )
    rollout.add_argument("deployment")
    trial = rollout.add_mutually_exclusive_group(required=True)
    trial.add_argument("--shadow", metavar="MODEL", help="NAME:VERSION answering every request too, unseen")
    trial.add_argument("--canary", metavar="MODEL", help="NAME:VERSION answering --percent of the requests")
    trial.add_argument("--promote", action="store_true", help="the trial's version serves from now on")
    trial.add_argument("--abort", action="store_true", help="the trial's version goes")
    rollout.add_argument("--percent", type=float, default=10.0, help="a canary's share of the requests (default 10)")
    rollout.add_argument("--wait", action="store_true", help="until the change is over")
    rollout.set_defaults(run=cmd_rollout)

    job = commands.add_parser("job", parents=[common], help="a training job: show or cancel it")
    job.add_argument("action", choices=["show", "cancel"])
    job.add_argument("job_id")
    job.set_defaults(run=cmd_job)

    infer = commands.add_parser("infer", parents=[common], help="send one input to a deployment")
    infer.add_argument("deployment")
    infer.add_argument("--request-id", help="the request's id, for its labels (default: a new one, printed)")
    source = infer.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help=".npy, .csv or .json rows")
    source.add_argument("--ref", help="a file://, s3:// or https:// input the runtime reads")
    infer.set_defaults(run=cmd_infer)
