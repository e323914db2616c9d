"""Typed Python client for the mesh services (what an application imports).

    from mlaas.client import RegistryClient
    with RegistryClient("127.0.0.1:50051") as registry:
        for result in registry.find(task="classification", max_memory="512Mi"):
            print(result.model.description.name, result.model.version)

Every failed call raises a subclass of mlaas.errors.MlaasError carrying the server's message.
"""

from __future__ import annotations

import builtins
import copy
import io
import ipaddress
import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import grpc
import numpy as np

from mlaas import addresses
from mlaas.env import env_bool
from mlaas.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    MlaasError,
    ResourceExhausted,
    Unavailable,
    from_rpc_error,
)
from mlaas.message_limits import MAX_MESSAGE_BYTES
from mlaas.quantities import parse_cpu, parse_memory
from mlaas.refs import enum_value, job_state_name, parse_ref, state_name
from mlaas.tls import ClientTLS, channel, client_tls
from mlaas.v1 import (
    monitor_pb2,
    monitor_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    types_pb2,
)

CHUNK_BYTES = 1 << 20
# Deployment states whose ready replicas take inference (CACHED ones are still warm).
SERVING = (
    scheduler_pb2.DEPLOYMENT_STATE_READY,
    scheduler_pb2.DEPLOYMENT_STATE_UPDATING,
    scheduler_pb2.DEPLOYMENT_STATE_CACHED,
)
READ_PREFIXES = ("Get", "List", "Find")


def read_retries() -> str:
    """gRPC's service config retrying, on UNAVAILABLE (a service restarting, a replica moving),
    the mesh's rpcs that only read (Get*, List*, Find*), as KServe's client retries its reads;
    anything that writes is left to the caller, who knows whether a second try is safe."""
    from mlaas.v1 import monitor_pb2, registry_pb2, scheduler_pb2

    names = [
        {"service": service.full_name, "method": method.name}
        for module in (registry_pb2, scheduler_pb2, monitor_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if method.name.startswith(READ_PREFIXES) and not method.client_streaming
    ]
    policy = {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}  # fmt: skip
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", read_retries()),
]
Progress = Callable[[int, int], None]


class _PagedRequest(Protocol):
    page_token: str


def open_channel(address: str, connection: int | None = None, tls: ClientTLS | None = None) -> grpc.Channel:
    """`address` is host:port, or several IPv4 host:port endpoints separated by commas (a
    deployment's replicas), over which calls are balanced round robin. Channels with different
    `connection` numbers never share a TCP connection (gRPC otherwise shares one per address).
    TLS with `tls`, else as the environment says (MLAAS_TLS_CA...), else plaintext."""
    options = list(CHANNEL_OPTIONS)
    if connection is not None:
        options += [("grpc.use_local_subchannel_pool", 1), ("mlaas.connection", connection)]
    endpoints = address.split(",")
    if len(endpoints) > 1 and all(_is_ipv4(e.rsplit(":", 1)[0]) for e in endpoints):
        return channel("ipv4:" + address, [*options, ("grpc.lb_policy_name", "round_robin")], tls)
    return channel(endpoints[0], options, tls)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _as_ref(ref: str | types_pb2.ModelRef) -> types_pb2.ModelRef:
    return parse_ref(ref) if isinstance(ref, str) else ref


def find_request(
    *,
    task: str | int | None = None,
    families: Iterable[str] = (),
    framework: str = "",
    feature_count: int = 0,
    datatype: str = "",
    max_cpu: str | int | float | None = None,
    max_memory: str | int | None = None,
    max_gpus: int = 0,
    max_train_cpu: str | int | float | None = None,
    max_train_memory: str | int | None = None,
    max_train_gpus: int = 0,
    min_explainability: str | int | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Iterable[str] = (),
    rank_by: str = "",
    latest_only: bool = False,
    name: str = "",
    page_size: int = 0,
) -> registry_pb2.FindModelsRequest:
    """A FindModelsRequest from friendly values ("classification", "256Mi", "500m", ...)."""
    request = registry_pb2.FindModelsRequest(
        families=list(families),
        framework=framework,
        input=registry_pb2.InputRequirement(feature_count=feature_count, datatype=datatype.upper()),
        tags=list(tags),
        rank_by_metric=rank_by,
        latest_only=latest_only,
        name=name,
        page_size=page_size,
    )
    if task is not None:
        request.task = enum_value(types_pb2.Task, "TASK_", task)
    if min_explainability is not None:
        request.min_explainability = enum_value(
            types_pb2.ExplainabilityLevel, "EXPLAINABILITY_LEVEL_", min_explainability
        )
    for target, cpu, memory, gpus in (
        (request.max_run_resources, max_cpu, max_memory, max_gpus),
        (request.max_train_resources, max_train_cpu, max_train_memory, max_train_gpus),
    ):
        if cpu is not None:
            target.cpu_millicores = parse_cpu(cpu)
        if memory is not None:
            target.memory_bytes = parse_memory(memory)
        target.gpus = gpus
    for metric, minimum in (metrics or {}).items():
        request.metrics.add(name=metric, min_value=minimum)
    return request


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The header a mesh call carries to name its caller (none without a token)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def refuse_token_in_clear(address: str) -> None:
    """A bearer token crosses the network only over TLS: beyond loopback, a client without a CA
    refuses to send one (as servers with tokens refuse to listen there in clear), unless
    MLAAS_ALLOW_PLAINTEXT=true says the network is trusted."""
    hosts = [endpoint.rsplit(":", 1)[0].strip("[]") for endpoint in address.split(",")]
    remote = [h for h in hosts if h != "localhost" and not _is_loopback(h)]
    if remote and not env_bool(os.environ, "MLAAS_ALLOW_PLAINTEXT", False):
        raise ValueError(
            f"refusing to send a bearer token in clear to {remote[0]}: give a CA (MLAAS_TLS_CA, --tls-ca "
            "or tls=ClientTLS(...)), or set MLAAS_ALLOW_PLAINTEXT=true on a trusted network"
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GrpcClient:
    """A channel with the caller's bearer token and the error mapping every mesh client shares."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 60.0, tls: ClientTLS | None = None):
        self.address = address
        # TLS with `tls`, else as the environment says (MLAAS_TLS_CA...), else plaintext.
        self.tls = client_tls(tls)
        self._calling_as(token)
        self._channel = open_channel(address, tls=self.tls)
        self._owns_channel = True
        self._timeout = timeout

    def _calling_as(self, token: str | None) -> None:
        if token and self.tls is None:
            refuse_token_in_clear(self.address)
        self._metadata = bearer_metadata(token)

    def with_token(self, token: str | None) -> Self:
        """This client on the same channel, calling as `token`: a service forwarding each of its
        callers' tokens keeps one connection. Closing it leaves the channel to this client."""
        twin = copy.copy(self)
        twin._owns_channel = False
        twin._calling_as(token)
        return twin

    def _paged(self, method: Callable[..., Any], request: _PagedRequest, field: str) -> Iterator[Any]:
        """Every item of a paged list rpc (its `field`), page after page."""
        while True:
            page = self._call(method, request)
            yield from getattr(page, field)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def close(self) -> None:
        """Closes the channel (a client made by with_token leaves it to its original)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The generated gRPC stubs have no types: an rpc answers Any, whose message each caller names.
    def _call(self, method: Callable[..., Any], request: object, timeout: float | None = None) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self._timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def _stream(
        self, method: Callable[..., Iterable[Any]], request: object, timeout: float | None = None
    ) -> Iterator[Any]:
        try:
            yield from method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None


class RegistryClient(GrpcClient):
    def __init__(
        self,
        address: str = addresses.REGISTRY,
        token: str | None = None,
        timeout: float = 60.0,
        tls: ClientTLS | None = None,
    ):
        super().__init__(address, token, timeout, tls)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)

    def register(
        self,
        artifact: str | Path | bytes,
        description: types_pb2.ModelDescription,
        reference_data: np.ndarray | str | Path | None = None,
        progress: Progress | None = None,
        timeout: float = 3600.0,
    ) -> registry_pb2.RegisterModelResponse:
        """Uploads an ONNX model (a path or its bytes) with its description.

        `reference_data` is a sample of training inputs (rows x features) used for drift
        detection; `progress(sent, total)` is called after each chunk.
        """
        total = len(artifact) if isinstance(artifact, bytes) else Path(artifact).stat().st_size
        reference: bytes | None = None
        if isinstance(reference_data, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, reference_data, allow_pickle=False)
            reference = buffer.getvalue()
        elif reference_data is not None:
            reference = Path(reference_data).read_bytes()

        def artifact_chunks() -> Iterator[bytes]:
            if isinstance(artifact, bytes):
                yield from (artifact[i : i + CHUNK_BYTES] for i in range(0, len(artifact), CHUNK_BYTES))
                return
            with open(artifact, "rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    yield chunk

        def messages() -> Iterator[registry_pb2.RegisterModelRequest]:
            yield registry_pb2.RegisterModelRequest(description=description)
            sent = 0
            for chunk in artifact_chunks():
                sent += len(chunk)
                yield registry_pb2.RegisterModelRequest(artifact_chunk=chunk)
                if progress:
                    progress(sent, total)
            if reference:
                for start in range(0, len(reference), CHUNK_BYTES):
                    yield registry_pb2.RegisterModelRequest(reference_data_chunk=reference[start : start + CHUNK_BYTES])

        response: registry_pb2.RegisterModelResponse = self._call(self._stub.RegisterModel, messages(), timeout)
        return response

    def find_page(self, request: registry_pb2.FindModelsRequest) -> registry_pb2.FindModelsResponse:
        """One page of FindModels: (the ranked matches, the token of the next page or "")."""
        response: registry_pb2.FindModelsResponse = self._call(self._stub.FindModels, request)
        return response

    def find(
        self, request: registry_pb2.FindModelsRequest | None = None, *, limit: int | None = None, **filters: Any
    ) -> list[registry_pb2.FindModelsResult]:
        """Every ranked match (all pages, up to `limit`); filters as for `find_request`."""
        request = request or find_request(**filters)
        return list(itertools.islice(self._paged(self._stub.FindModels, request, "results"), limit))

    def get(self, ref: str | types_pb2.ModelRef) -> types_pb2.ModelVersion:
        """The model version a reference names (NAME, NAME:VERSION or NAME@ALIAS); NotFound if none."""
        request = registry_pb2.GetModelRequest(ref=_as_ref(ref))
        response: registry_pb2.GetModelResponse = self._call(self._stub.GetModel, request)
        return response.model

    def list(self, name: str = "", page_size: int = 0) -> Iterator[types_pb2.ModelVersion]:
        """Every version the caller may read, of one model or of all, by name and then version."""
        yield from self._paged(
            self._stub.ListModels, registry_pb2.ListModelsRequest(name=name, page_size=page_size), "models"
        )

    def set_alias(self, name: str, alias: str, version: int) -> types_pb2.ModelVersion:
        """Points `alias` of model `name` at `version` (the champion alias moves this way)."""
        request = registry_pb2.SetAliasRequest(name=name, alias=alias, version=version)
        response: registry_pb2.SetAliasResponse = self._call(self._stub.SetAlias, request)
        return response.model

    def delete(self, name: str, version: int) -> None:
        """Deletes a version (FailedPrecondition while it is deployed)."""
        self._call(self._stub.DeleteModelVersion, registry_pb2.DeleteModelVersionRequest(name=name, version=version))

    def download(
        self,
        ref: str | types_pb2.ModelRef,
        dest: str | Path,
        kind: registry_pb2.ArtifactKind = registry_pb2.ARTIFACT_KIND_MODEL,
    ) -> types_pb2.ModelVersion:
        """Streams an artifact into `dest` (written atomically); returns the resolved version."""
        dest = Path(dest)
        # A name of its own, so that concurrent downloads of one artifact (say, by the workers of
        # one runtime) never write the same file; the last rename wins with identical bytes.
        partial = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.partial")
        model: types_pb2.ModelVersion | None = None
        request = registry_pb2.DownloadArtifactRequest(ref=_as_ref(ref), kind=kind)
        try:
            with open(partial, "wb") as out:
                for message in self._stream(self._stub.DownloadArtifact, request):
                    if message.HasField("model"):
                        model = message.model
                    out.write(message.chunk)
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
        if model is None:
            raise MlaasError("the registry sent no model header before the artifact")
        return model


class SchedulerClient(GrpcClient):
    """Deployments: `deploy` returns at once; `wait_ready` follows WatchDeployment."""

    def __init__(
        self,
        address: str = addresses.SCHEDULER,
        token: str | None = None,
        timeout: float = 60.0,
        tls: ClientTLS | None = None,
    ):
        super().__init__(address, token, timeout, tls)
        self._stub = scheduler_pb2_grpc.SchedulerServiceStub(self._channel)

    def deploy(
        self,
        model: str | types_pb2.ModelRef,
        replicas: int = 0,
        strict_node: str = "",
        idempotency_key: str = "",
        autoscaling: scheduler_pb2.AutoscalingPolicy | None = None,
    ) -> scheduler_pb2.Deployment:
        """Asks for a deployment of `model` (or a lease on the caller's existing one); returns it
        QUEUED. `replicas`: 0 for one, or the autoscaling policy's minimum. With `autoscaling` the
        scheduler sets its replicas from the load, starting from `replicas`."""
        request = scheduler_pb2.DeployRequest(
            model=_as_ref(model),
            replicas=replicas,
            mode=scheduler_pb2.PLACEMENT_MODE_STRICT if strict_node else scheduler_pb2.PLACEMENT_MODE_OPEN,
            node=strict_node,
            idempotency_key=idempotency_key,
            autoscaling=autoscaling,
        )
        response: scheduler_pb2.DeployResponse = self._call(self._stub.Deploy, request)
        return response.deployment

    def get(self, deployment_id: str) -> scheduler_pb2.Deployment:
        """The deployment, as the scheduler has it now."""
        request = scheduler_pb2.GetDeploymentRequest(deployment_id=deployment_id)
        response: scheduler_pb2.GetDeploymentResponse = self._call(self._stub.GetDeployment, request)
        return response.deployment

    def list(
        self, model_name: str = "", model_version: int = 0, states: Iterable[scheduler_pb2.DeploymentState] = ()
    ) -> list[scheduler_pb2.Deployment]:
        """Every deployment the caller may see that matches, oldest first (all the pages)."""
        request = scheduler_pb2.ListDeploymentsRequest(
            model_name=model_name, model_version=model_version, states=list(states)
        )
        return list(self._paged(self._stub.ListDeployments, request, "deployments"))

    def nodes(self) -> builtins.list[scheduler_pb2.Node]:  # `list` here is the method above
        """The nodes with their allocatable and free resources."""
        response: scheduler_pb2.ListNodesResponse = self._call(self._stub.ListNodes, scheduler_pb2.ListNodesRequest())
        return list(response.nodes)

    def decommission(self, deployment_id: str) -> scheduler_pb2.Deployment:
        """Drops the caller's lease; with none left the deployment stays warm (CACHED) for the cache TTL."""
        request = scheduler_pb2.DecommissionRequest(deployment_id=deployment_id)
        response: scheduler_pb2.DecommissionResponse = self._call(self._stub.Decommission, request)
        return response.deployment

    def scale(self, deployment_id: str, replicas: int) -> scheduler_pb2.Deployment:
        """Changes the deployment's replica count."""
        request = scheduler_pb2.ScaleRequest(deployment_id=deployment_id, replicas=replicas)
        response: scheduler_pb2.ScaleResponse = self._call(self._stub.Scale, request)
        return response.deployment

    def update(self, deployment_id: str, model: str | types_pb2.ModelRef) -> scheduler_pb2.Deployment:
        """Rolls the deployment to another version of its model (answers at once, UPDATING)."""
        request = scheduler_pb2.UpdateDeploymentRequest(deployment_id=deployment_id, model=_as_ref(model))
        response: scheduler_pb2.UpdateDeploymentResponse = self._call(self._stub.UpdateDeployment, request)
        return response.deployment

    def set_autoscaling(
        self, deployment_id: str, policy: scheduler_pb2.AutoscalingPolicy | None
    ) -> scheduler_pb2.Deployment:
        """Sets the deployment's autoscaling policy (None turns autoscaling off, keeping the
        replicas it has then); replicas outside the new bounds are brought within them."""
        request = scheduler_pb2.UpdateDeploymentRequest(
            deployment_id=deployment_id, autoscaling=policy, clear_autoscaling=policy is None
        )
        response: scheduler_pb2.UpdateDeploymentResponse = self._call(self._stub.UpdateDeployment, request)
        return response.deployment

    def set_privacy(self, deployment_id: str, epsilon: float, budget: float) -> scheduler_pb2.Deployment:
        """Sets a STRICT deployment's privacy terms: every round on its node then fits with
        differential privacy at an epsilon of at most `epsilon`, `budget` in all (epsilon 0 lifts them)."""
        terms = scheduler_pb2.PrivacyTerms(epsilon=epsilon, budget=budget)
        request = scheduler_pb2.UpdateDeploymentRequest(deployment_id=deployment_id, privacy=terms)
        response: scheduler_pb2.UpdateDeploymentResponse = self._call(self._stub.UpdateDeployment, request)
        return response.deployment

    def start_trial(
        self, deployment_id: str, model: str | types_pb2.ModelRef, canary_percent: float = 0.0
    ) -> scheduler_pb2.Deployment:
        """Tries another version beside the served one, in the running replicas: in shadow (it
        answers every request too, its answers kept for judging), or as a canary answering
        `canary_percent` of the requests. The Monitor judges it on the labels of rows both
        answered and promotes or drops it; `end_trial` does so by hand."""
        mode = scheduler_pb2.TRIAL_MODE_CANARY if canary_percent else scheduler_pb2.TRIAL_MODE_SHADOW
        request = scheduler_pb2.UpdateDeploymentRequest(
            deployment_id=deployment_id, model=_as_ref(model), trial_mode=mode, canary_percent=canary_percent
        )
        response: scheduler_pb2.UpdateDeploymentResponse = self._call(self._stub.UpdateDeployment, request)
        return response.deployment

    def end_trial(
        self, deployment_id: str, promote: bool, champion: int = 0, challenger: int = 0
    ) -> scheduler_pb2.Deployment:
        """Ends the deployment's trial: its challenger serves from then on (`promote`), or goes.
        `champion`, `challenger` (0: any): only if that is the trial running now."""
        end = scheduler_pb2.TRIAL_END_PROMOTE if promote else scheduler_pb2.TRIAL_END_ABORT
        request = scheduler_pb2.UpdateDeploymentRequest(
            deployment_id=deployment_id, end_trial=end, trial_champion_version=champion,
            trial_challenger_version=challenger,
        )  # fmt: skip
        response: scheduler_pb2.UpdateDeploymentResponse = self._call(self._stub.UpdateDeployment, request)
        return response.deployment

    def wait_settled(self, deployment_id: str, timeout: float = 300.0, poll: float = 0.2) -> scheduler_pb2.Deployment:
        """Waits until a Scale or UpdateDeployment is over; the outcome is in the events."""
        deadline = time.monotonic() + timeout
        while (deployment := self.get(deployment_id)).state == scheduler_pb2.DEPLOYMENT_STATE_UPDATING:
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"deployment {deployment_id} still UPDATING after {timeout:.0f}s")
            time.sleep(poll)
        return deployment

    def run_training_job(
        self, model: str | types_pb2.ModelRef, input_uri: str = "", input_data: bytes = b""
    ) -> scheduler_pb2.TrainingJob:
        """Starts a training job fitting `model`'s recipe on an .npz (X, y): its bytes
        (`input_data`), or a file in the caller's inputs directory (`input_uri`)."""
        request = scheduler_pb2.RunTrainingJobRequest(model=_as_ref(model), input_uri=input_uri, input_data=input_data)
        response: scheduler_pb2.RunTrainingJobResponse = self._call(self._stub.RunTrainingJob, request)
        return response.job

    def run_node_round(
        self, model: str | types_pb2.ModelRef, node_round: scheduler_pb2.NodeRound, candidate: bytes = b""
    ) -> scheduler_pb2.TrainingJob:
        """Starts a retraining round on a STRICT deployment's node, from the data kept there
        (it may wait there, PENDING, for room); `candidate`: a federated judging step's model."""
        request = scheduler_pb2.RunTrainingJobRequest(model=_as_ref(model), node_round=node_round, input_data=candidate)
        response: scheduler_pb2.RunTrainingJobResponse = self._call(self._stub.RunTrainingJob, request)
        return response.job

    def training_job_output(
        self, job_id: str, output: scheduler_pb2.TrainingOutput = scheduler_pb2.TRAINING_OUTPUT_MODEL
    ) -> bytes:
        """What a succeeded job wrote: its model (ONNX), or with TRAINING_OUTPUT_PARAMETERS a
        federated step's parameters (.npz), or with TRAINING_OUTPUT_PREDICTIONS a cross-validated
        fit's predictions (.npy)."""
        request = scheduler_pb2.ReadTrainingJobOutputRequest(job_id=job_id, output=output)
        return b"".join(r.chunk for r in self._stream(self._stub.ReadTrainingJobOutput, request, self._timeout))

    def delete_training_job(self, job_id: str) -> scheduler_pb2.TrainingJob:
        """Removes a training job and its files now (a running one is stopped first)."""
        request = scheduler_pb2.DeleteTrainingJobRequest(job_id=job_id)
        response: scheduler_pb2.DeleteTrainingJobResponse = self._call(self._stub.DeleteTrainingJob, request)
        return response.job

    def cancel_training_job(self, job_id: str) -> scheduler_pb2.TrainingJob:
        """Stops a training job; it ends CANCELLED."""
        request = scheduler_pb2.CancelTrainingJobRequest(job_id=job_id)
        response: scheduler_pb2.CancelTrainingJobResponse = self._call(self._stub.CancelTrainingJob, request)
        return response.job

    def training_job(self, job_id: str) -> scheduler_pb2.TrainingJob:
        """A training job as the scheduler has it now."""
        request = scheduler_pb2.GetTrainingJobRequest(job_id=job_id)
        response: scheduler_pb2.GetTrainingJobResponse = self._call(self._stub.GetTrainingJob, request)
        return response.job

    def wait_training_job(self, job_id: str, timeout: float = 3600.0, poll: float = 0.2) -> scheduler_pb2.TrainingJob:
        """Waits until the job ends; FailedPrecondition with its reason if it failed or was cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.training_job(job_id)
            if job.state == scheduler_pb2.JOB_STATE_SUCCEEDED:
                return job
            if job.state in (scheduler_pb2.JOB_STATE_FAILED, scheduler_pb2.JOB_STATE_CANCELLED):
                state = job_state_name(job.state).lower()
                raise FailedPrecondition(f"training job {job_id} {state}: {job.reason}")
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"training job {job_id} still running after {timeout:.0f}s")
            time.sleep(poll)

    def watch(self, deployment_id: str) -> Iterator[scheduler_pb2.WatchDeploymentResponse]:
        """The deployment's events, its history first, then as they happen."""
        yield from self._stream(
            self._stub.WatchDeployment, scheduler_pb2.WatchDeploymentRequest(deployment_id=deployment_id)
        )

    def wait_ready(
        self, deployment_id: str, on_event: Callable[[scheduler_pb2.DeploymentEvent], None] | None = None
    ) -> scheduler_pb2.Deployment:
        """Follows the deployment until READY; raises FailedPrecondition with the reason if it fails."""
        for update in self.watch(deployment_id):
            if on_event:
                on_event(update.event)
            if update.event.state == scheduler_pb2.DEPLOYMENT_STATE_READY:
                return update.deployment
            if update.event.state in (scheduler_pb2.DEPLOYMENT_STATE_FAILED, scheduler_pb2.DEPLOYMENT_STATE_DESTROYED):
                raise FailedPrecondition(f"deployment {deployment_id} {update.event.detail}")
        raise FailedPrecondition(f"deployment {deployment_id}: the watch ended before it was ready")

    def activate(self, deployment_id: str, timeout: float | None = None) -> scheduler_pb2.Deployment:
        """The deployment once a replica of it serves: one that scaled to zero (an autoscaling
        policy with min_replicas 0) gets one back. DeadlineExceeded after `timeout` seconds."""
        request = scheduler_pb2.ActivateDeploymentRequest(deployment_id=deployment_id)
        response: scheduler_pb2.ActivateDeploymentResponse = self._call(self._stub.ActivateDeployment, request, timeout)
        return response.deployment

    def endpoints(self, deployment_id: str, bulk: bool = False, activate_seconds: float = 0.0) -> tuple[str, str]:
        """(the ready replicas' endpoints joined by commas, model name): an address for
        `InferenceClient`, balanced over the replicas; with `bulk`, their bulk endpoints (for
        requests over BULK_THRESHOLD_BYTES) where they have them. A deployment that may scale to
        zero and has no replica now is activated, waiting up to `activate_seconds` for it;
        otherwise FailedPrecondition while none serves."""
        deployment = self.get(deployment_id)
        scales_to_zero = deployment.HasField("autoscaling") and deployment.autoscaling.min_replicas == 0
        if not deployment.endpoints and scales_to_zero and activate_seconds > 0:
            try:
                deployment = self.activate(deployment_id, activate_seconds)
            except ResourceExhausted:  # the scheduler holds enough of our waits: it wakes anyway
                raise FailedPrecondition(f"deployment {deployment_id} is waking up; ask again shortly") from None
        if deployment.state not in SERVING or not deployment.endpoints:
            state = state_name(deployment.state)
            detail = f" ({deployment.reason})" if deployment.reason else ""
            raise FailedPrecondition(f"deployment {deployment_id} is {state} with no ready replica{detail}")
        endpoints = (bulk and deployment.bulk_endpoints) or deployment.endpoints
        return ",".join(endpoints), deployment.model.name


def label_batches(labels: Iterable[tuple[str, str | float]], batch: int) -> Iterator[list[monitor_pb2.Label]]:
    """(request id, true label) pairs as Label messages, `batch` at a time: a string is a class
    label, a number a regression target."""
    chunk: list[monitor_pb2.Label] = []
    for request_id, value in labels:
        label = monitor_pb2.Label(request_id=request_id)
        if isinstance(value, str):
            label.class_label = value
        else:
            label.target = float(value)
        chunk.append(label)
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class MonitorClient(GrpcClient):
    """Labels in; drift reports, drift events, policies and retrainings out."""

    def __init__(
        self,
        address: str = addresses.MONITOR,
        token: str | None = None,
        timeout: float = 60.0,
        tls: ClientTLS | None = None,
    ):
        super().__init__(address, token, timeout, tls)
        self._stub = monitor_pb2_grpc.MonitorServiceStub(self._channel)

    def report_labels(
        self,
        deployment_id: str,
        labels: Iterable[tuple[str, str | float]],
        batch: int = 1000,
        retry_seconds: float = 30.0,
    ) -> monitor_pb2.ReportLabelsResponse:
        """(request id, true label) pairs: a string is a class label, a number a regression
        target. Returns once every label is on the Monitor's disk. While the Monitor is away
        (UNAVAILABLE: restarting) the labels are sent again for up to `retry_seconds`; a label
        sent twice is stored once. One batch goes in one unary call (ReportLabelBatch: no stream
        to open, for an application labelling as it goes), more in one stream."""
        messages = [
            monitor_pb2.ReportLabelsRequest(deployment_id=deployment_id, labels=chunk)
            for chunk in label_batches(labels, batch)
        ]
        deadline, pause = time.monotonic() + retry_seconds, 0.05
        while True:
            try:
                if len(messages) != 1:
                    response: monitor_pb2.ReportLabelsResponse = self._call(self._stub.ReportLabels, iter(messages))
                    return response
                one = monitor_pb2.ReportLabelBatchRequest(deployment_id=deployment_id, labels=messages[0].labels)
                stored = self._call(self._stub.ReportLabelBatch, one)
                return monitor_pb2.ReportLabelsResponse(accepted=stored.accepted, unmatched=stored.unmatched)
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def report(self, deployment_id: str) -> monitor_pb2.DriftReport:
        """The deployment's drift report: per-feature statistics and drift state, recent events."""
        request = monitor_pb2.GetDriftReportRequest(deployment_id=deployment_id)
        response: monitor_pb2.GetDriftReportResponse = self._call(self._stub.GetDriftReport, request)
        return response.report

    def drift_events(self, deployment_id: str) -> Iterator[monitor_pb2.DriftEvent]:
        """Every drift event of the deployment, oldest first (page after page)."""
        request = monitor_pb2.ListDriftEventsRequest(deployment_id=deployment_id)
        yield from self._paged(self._stub.ListDriftEvents, request, "events")

    def watch_drift(self, deployment_id: str) -> Iterator[monitor_pb2.DriftEvent]:
        """Drift events of the deployment from now on."""
        for reply in self._stream(self._stub.WatchDrift, monitor_pb2.WatchDriftRequest(deployment_id=deployment_id)):
            yield reply.event

    def set_policy(self, deployment_id: str, policy: monitor_pb2.MonitorPolicy) -> monitor_pb2.MonitorPolicy:
        """Changes the fields `policy` sets (the others keep their values); returns the policy now."""
        request = monitor_pb2.SetPolicyRequest(deployment_id=deployment_id, policy=policy)
        response: monitor_pb2.SetPolicyResponse = self._call(self._stub.SetPolicy, request)
        return response.policy

    def policy(self, deployment_id: str) -> monitor_pb2.MonitorPolicy:
        """The deployment's monitoring policy."""
        request = monitor_pb2.GetPolicyRequest(deployment_id=deployment_id)
        response: monitor_pb2.GetPolicyResponse = self._call(self._stub.GetPolicy, request)
        return response.policy

    def retrainings(self, deployment_id: str) -> list[monitor_pb2.Retraining]:
        """Every retraining of the deployment, with its steps and outcome."""
        request = monitor_pb2.ListRetrainingsRequest(deployment_id=deployment_id)
        response: monitor_pb2.ListRetrainingsResponse = self._call(self._stub.ListRetrainings, request)
        return list(response.retrainings)

    def watch_retraining(self, deployment_id: str) -> Iterator[monitor_pb2.Retraining]:
        """A retraining's changes as they happen, until it ends."""
        request = monitor_pb2.WatchRetrainingRequest(deployment_id=deployment_id)
        for reply in self._stream(self._stub.WatchRetraining, request):
            yield reply.retraining
