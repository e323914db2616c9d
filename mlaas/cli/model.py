"""`mlaas model ...`: register, find, list, show, alias and delete model versions."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from google.protobuf import json_format

from mlaas.cli.connect import tls_of
from mlaas.cli.output import ProgressBar, print_json, print_table
from mlaas.client import RegistryClient, find_request
from mlaas.errors import InvalidArgument
from mlaas.quantities import format_cpu, format_memory, parse_cpu, parse_memory
from mlaas.refs import enum_label, enum_name, enum_value, parse_ref
from mlaas.v1 import types_pb2

ENUM_FIELDS: dict[str, tuple[type[int], str]] = {
    "task": (types_pb2.Task, "TASK_"),
    "visibility": (types_pb2.Visibility, "VISIBILITY_"),
}


def _resources(data: dict) -> dict:
    """Accepts cpu: 500m / memory: 256Mi as well as the proto's own field names."""
    out = dict(data)
    if "cpu" in out:
        out["cpu_millicores"] = parse_cpu(out.pop("cpu"))
    if "memory" in out:
        out["memory_bytes"] = parse_memory(out.pop("memory"))
    if isinstance(out.get("memory_bytes"), str):
        out["memory_bytes"] = parse_memory(out["memory_bytes"])
    return out


def load_description(path: Path) -> types_pb2.ModelDescription:
    """A ModelDescription from YAML or JSON with friendly enum names and quantities."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: expected a mapping of description fields")
    for key, (enum, prefix) in ENUM_FIELDS.items():
        if isinstance(data.get(key), str):
            data[key] = enum_name(enum, enum_value(enum, prefix, data[key]))
    explain = data.get("explainability")
    if isinstance(explain, dict) and isinstance(explain.get("level"), str):
        explain["level"] = types_pb2.ExplainabilityLevel.Name(
            enum_value(types_pb2.ExplainabilityLevel, "EXPLAINABILITY_LEVEL_", explain["level"])
        )
    for key in ("run_resources", "train_resources"):
        if isinstance(data.get(key), dict):
            data[key] = _resources(data[key])
    try:
        return json_format.ParseDict(data, types_pb2.ModelDescription())
    except json_format.ParseError as err:
        raise InvalidArgument(f"{path}: {err}") from None


def _client(args) -> RegistryClient:
    return RegistryClient(args.registry, args.token, tls=tls_of(args))


def _summary_row(model: types_pb2.ModelVersion, metric: str = "") -> list[object]:
    desc = model.description
    metric_name = metric or (desc.metrics[0].name if desc.metrics else "")
    value = next((m.value for m in desc.metrics if m.name == metric_name), None)
    return [
        desc.name,
        model.version,
        enum_label(types_pb2.Task, "TASK_", desc.task),
        desc.family or "-",
        f"{metric_name}={value:.3f}" if value is not None else "-",
        format_cpu(desc.run_resources.cpu_millicores),
        format_memory(desc.run_resources.memory_bytes),
        enum_label(types_pb2.ExplainabilityLevel, "EXPLAINABILITY_LEVEL_", desc.explainability.level),
        ",".join(model.aliases) or "-",
    ]


SUMMARY_HEADERS = ["NAME", "VERSION", "TASK", "FAMILY", "METRIC", "CPU", "MEMORY", "EXPLAIN", "ALIASES"]


def cmd_register(args) -> None:
    desc = load_description(Path(args.description)) if args.description else types_pb2.ModelDescription()
    desc.name = args.name
    if args.task:
        desc.task = enum_value(types_pb2.Task, "TASK_", args.task)
    if args.family:
        desc.family = args.family
    desc.tags.extend(args.tag or [])
    with _client(args) as client:
        response = client.register(
            Path(args.file),
            desc,
            reference_data=args.reference_data,
            progress=ProgressBar(f"uploading {args.name}"),
        )
    if args.json:
        print_json(response)
        return
    model = response.model
    verb = "registered" if response.created else "already registered as"
    print(
        f"{verb} {model.description.name}:{model.version} (sha256 {model.artifact.sha256[:12]}, "
        f"{model.artifact.size_bytes} bytes)"
    )


def cmd_find(args) -> None:
    metrics = {}
    for item in args.min_metric or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--min-metric {item!r}: expected NAME=VALUE, e.g. accuracy=0.9")
        metrics[name] = float(value)
    request = find_request(
        task=args.task,
        families=args.family or [],
        framework=args.framework or "",
        feature_count=args.features or 0,
        datatype=args.dtype or "",
        max_cpu=args.max_cpu,
        max_memory=args.max_memory,
        max_gpus=args.max_gpus or 0,
        max_train_cpu=args.max_train_cpu,
        max_train_memory=args.max_train_memory,
        min_explainability=args.min_explainability,
        metrics=metrics,
        tags=args.tag or [],
        rank_by=args.rank_by or "",
        latest_only=args.latest_only,
    )
    with _client(args) as client:
        results = client.find(request, limit=args.limit)
    if args.json:
        print_json(results)
        return
    rank_metric = request.rank_by_metric or (request.metrics[0].name if request.metrics else "")
    print_table(["RANK", *SUMMARY_HEADERS], [[r.rank, *_summary_row(r.model, rank_metric)] for r in results])


def cmd_list(args) -> None:
    with _client(args) as client:
        models = list(client.list(args.name or ""))
    if args.json:
        print_json(models)
        return
    print_table(SUMMARY_HEADERS, [_summary_row(m) for m in models])


def cmd_show(args) -> None:
    with _client(args) as client:
        model = client.get(parse_ref(args.ref))
    if args.json:
        print_json(model)
        return
    desc = model.description
    print(f"{desc.name}:{model.version}  ({enum_label(types_pb2.Task, 'TASK_', desc.task)}, {desc.family})")
    if desc.summary:
        print(f"  {desc.summary}")
    print(f"  framework      {desc.framework or '-'}")
    print(f"  aliases        {', '.join(model.aliases) or '-'}")
    print(
        f"  owner          {model.owner or '(open)'}  visibility "
        f"{enum_label(types_pb2.Visibility, 'VISIBILITY_', desc.visibility)}"
    )
    print(f"  artifact       sha256 {model.artifact.sha256}  {model.artifact.size_bytes} bytes")
    print(f"  reference data {model.reference_rows} rows" if model.reference_rows else "  reference data -")
    run, train = desc.run_resources, desc.train_resources
    print(
        f"  run            cpu {format_cpu(run.cpu_millicores)}  memory {format_memory(run.memory_bytes)}"
        f"  gpus {run.gpus}"
    )
    print(
        f"  train          cpu {format_cpu(train.cpu_millicores)}  memory {format_memory(train.memory_bytes)}"
        f"  gpus {train.gpus}"
    )
    level = enum_label(types_pb2.ExplainabilityLevel, "EXPLAINABILITY_LEVEL_", desc.explainability.level)
    print(f"  explainability {level} ({', '.join(desc.explainability.methods) or '-'})")
    for metric in desc.metrics:
        print(f"  metric         {metric.name} = {metric.value:.4f}  [{metric.dataset or '-'}]")
    for kind, specs in (("input ", model.signature.inputs), ("output", model.signature.outputs)):
        for spec in specs:
            print(f"  {kind}         {spec.name} {spec.datatype or spec.onnx_type} {list(spec.shape)}")
    if desc.recipe.steps:
        print(f"  recipe         {' -> '.join(s.estimator.rsplit('.', 1)[1] for s in desc.recipe.steps)}")
    if desc.tags:
        print(f"  tags           {', '.join(desc.tags)}")


def cmd_alias(args) -> None:
    with _client(args) as client:
        model = client.set_alias(args.name, args.alias, args.version)
    if args.json:
        print_json(model)
    else:
        print(f"{args.name}@{args.alias} -> {args.name}:{model.version}")


def cmd_delete(args) -> None:
    ref = parse_ref(args.ref)
    if ref.WhichOneof("selector") != "version":
        raise InvalidArgument("delete takes an explicit NAME:VERSION")
    with _client(args) as client:
        client.delete(ref.name, ref.version)
    if args.json:
        print_json({"deleted": f"{ref.name}:{ref.version}"})
    else:
        print(f"deleted {ref.name}:{ref.version}")


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    model = commands.add_parser("model", help="register, discover and manage models")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    register = sub.add_parser("register", parents=[common], help="upload an ONNX model with its description")
    register.add_argument("file", help="the .onnx file")
    register.add_argument("--name", required=True)
    register.add_argument("--description", help="YAML or JSON model description")
    register.add_argument("--reference-data", help=".npy sample of training inputs (for drift detection)")
    register.add_argument("--task", help="classification, regression, ... (overrides the description)")
    register.add_argument("--family", help="e.g. random_forest (overrides the description)")
    register.add_argument("--tag", action="append", help="repeatable")
    register.set_defaults(run=cmd_register)

    find = sub.add_parser("find", parents=[common], help="discover models that meet constraints, ranked")
    find.add_argument("--task")
    find.add_argument("--family", action="append", help="repeatable: any of these families")
    find.add_argument("--framework", help="prefix, e.g. scikit-learn")
    find.add_argument("--features", type=int, help="input feature count")
    find.add_argument("--dtype", help="input datatype, e.g. FP32")
    find.add_argument("--max-cpu", help="run CPU limit, e.g. 500m")
    find.add_argument("--max-memory", help="run memory limit, e.g. 256Mi")
    find.add_argument("--max-gpus", type=int)
    find.add_argument("--max-train-cpu")
    find.add_argument("--max-train-memory")
    find.add_argument("--min-explainability", help="none, post_hoc or intrinsic")
    find.add_argument("--min-metric", action="append", help="NAME=VALUE, repeatable, e.g. accuracy=0.9")
    find.add_argument("--tag", action="append", help="repeatable: every tag must be present")
    find.add_argument("--rank-by", help="metric to rank by (default: the first --min-metric)")
    find.add_argument("--latest-only", action="store_true", help="only the newest matching version per name")
    find.add_argument("--limit", type=int, default=50)
    find.set_defaults(run=cmd_find)

    listing = sub.add_parser("list", parents=[common], help="list model versions")
    listing.add_argument("--name")
    listing.set_defaults(run=cmd_list)

    show = sub.add_parser("show", parents=[common], help="show one version: NAME, NAME:VERSION or NAME@ALIAS")
    show.add_argument("ref")
    show.set_defaults(run=cmd_show)

    alias = sub.add_parser("alias", parents=[common], help="point NAME@ALIAS at a version")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int)
    alias.set_defaults(run=cmd_alias)

    delete = sub.add_parser("delete", parents=[common], help="delete NAME:VERSION")
    delete.add_argument("ref")
    delete.set_defaults(run=cmd_delete)
