"""What the runtime says about itself and its models (metadata, Triton's configuration,
statistics, the repository index) and the changes to its repository (load, unload), free of any
transport: the gRPC servicer and the REST adapter both answer from here, as protobuf messages
(REST writes them as JSON)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from inference_svc.credentials import RuntimeCredentials
from inference_svc.node_labels import NodeLabels
from inference_svc.repository import CANARY, SHADOW, ModelRepository
from inference_svc.settings import RuntimeSettings
from inference_svc.signature import TensorInfo
from mlaas.errors import InvalidArgument, NotFound, PermissionDenied, from_rpc_error
from mlaas.oip import open_inference_v2_pb2 as oip
from mlaas.oip import open_inference_v2_pb2_grpc as oip_grpc
from mlaas.refs import parse_ref
from mlaas.services.repository_parameters import CANARY_PERCENT, CREDENTIAL, RENEW, TRIAL

SERVER_NAME = "mlaas-inference"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data", "parameters", "data_uri"]
PLATFORM = "onnxruntime_onnx"
# Set on repository changes repeated between the workers of one runtime, so they are not repeated again.
LOCAL_ONLY = "mlaas_local_only"

_TRITON_TYPES = {
    "BOOL": oip.TYPE_BOOL, "UINT8": oip.TYPE_UINT8, "UINT16": oip.TYPE_UINT16, "UINT32": oip.TYPE_UINT32,
    "UINT64": oip.TYPE_UINT64, "INT8": oip.TYPE_INT8, "INT16": oip.TYPE_INT16, "INT32": oip.TYPE_INT32,
    "INT64": oip.TYPE_INT64, "FP16": oip.TYPE_FP16, "FP32": oip.TYPE_FP32, "FP64": oip.TYPE_FP64,
    "BYTES": oip.TYPE_STRING,
}  # fmt: skip


@dataclass(frozen=True)
class LoadOptions:
    """A RepositoryModelLoad's parameters: `uri` (a standalone runtime's), and those only the
    scheduler sets on a deployment's runtime (mlaas/services/repository_parameters.py)."""

    uri: str = ""
    credential: str = ""
    trial: str = ""  # SHADOW or CANARY: load as the challenger of a trial
    canary_percent: float = 0.0
    renew: bool = False  # only a fresh credential for what is served: load nothing

    @classmethod
    def read(cls, parameters) -> LoadOptions:
        """From a request's parameters (a protobuf map of InferParameter)."""

        def text(name: str) -> str:
            return parameters[name].string_param if name in parameters else ""

        try:
            percent = float(text(CANARY_PERCENT) or 0)
        except ValueError:
            raise InvalidArgument(f"{CANARY_PERCENT} is a number of percent, not {text(CANARY_PERCENT)!r}") from None
        renew = RENEW in parameters and parameters[RENEW].bool_param
        return cls(text("uri"), text(CREDENTIAL), text(TRIAL), percent, renew)

    def write(self, parameters) -> None:
        for name, value in (("uri", self.uri), (CREDENTIAL, self.credential), (TRIAL, self.trial)):
            if value:
                parameters[name].string_param = value
        if self.canary_percent:
            parameters[CANARY_PERCENT].string_param = repr(self.canary_percent)
        if self.renew:
            parameters[RENEW].bool_param = True

    def check(self, managed: bool) -> None:
        """InvalidArgument or PermissionDenied for options that make no sense here."""
        if self.uri and managed:
            raise PermissionDenied("a deployment's runtime loads models from the registry only, not by uri")
        if (self.credential or self.trial) and not managed:
            raise InvalidArgument(f"{CREDENTIAL} and {TRIAL} are for a deployment's runtime, which this one is not")
        if self.renew and (not self.credential or not managed or self.trial or self.uri):
            raise InvalidArgument(f"{RENEW} goes with {CREDENTIAL} alone, on a deployment's runtime")
        if self.trial not in ("", SHADOW, CANARY):
            raise InvalidArgument(f"{TRIAL} is {SHADOW!r} or {CANARY!r}, not {self.trial!r}")
        if self.trial == CANARY and not (math.isfinite(self.canary_percent) and 0 < self.canary_percent < 100):
            raise InvalidArgument(
                f"a canary takes more than 0 and less than 100 percent of the requests, not {self.canary_percent}"
            )


class Catalog:
    def __init__(
        self, settings: RuntimeSettings, repository: ModelRepository, siblings: Sequence[str] = (),
        credentials: RuntimeCredentials | None = None, node_labels: NodeLabels | None = None,
    ):  # fmt: skip
        self._settings = settings
        self._repo = repository
        self._credentials = credentials
        self._node_labels = node_labels  # a STRICT deployment's: it counts the served version's labels
        self._siblings = list(siblings)  # the other workers' control addresses
        self._sibling_channels: dict[str, grpc.aio.Channel] = {}  # opened at first use, on the worker's loop
        self.draining = False

    async def close(self) -> None:
        for channel in self._sibling_channels.values():
            await channel.close()
        self._sibling_channels.clear()

    # -- health and metadata --------------------------------------------------------------------

    def server_ready(self) -> bool:
        # A model that failed to load is listed by the repository index; it does not make the
        # models that serve unready.
        return not self.draining and bool(self._repo.all())

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._repo.get(name, version)
        except NotFound:
            return False
        return not self.draining

    @staticmethod
    def server_metadata() -> oip.ServerMetadataResponse:
        from mlaas import __version__

        return oip.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> oip.ModelMetadataResponse:
        loaded = self._repo.get(name, version)
        signature = loaded.model.signature

        def tensors(infos):
            return [
                oip.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                for t in infos
                if t.datatype
            ]

        return oip.ModelMetadataResponse(
            name=loaded.name,
            versions=[loaded.version],
            platform=PLATFORM,
            inputs=tensors(signature.inputs),
            outputs=tensors(signature.outputs),
        )

    def model_config(self, name: str, version: str = "") -> oip.ModelConfigResponse:
        loaded = self._repo.get(name, version)
        signature = loaded.model.signature
        batched = loaded.policy.batchable

        # Triton's convention: with max_batch_size > 0, dims leave out the batch dimension.
        def dims(info: TensorInfo) -> list[int]:
            return list(info.shape[1:] if batched else info.shape)

        config = oip.ModelConfig(
            name=loaded.name,
            platform=PLATFORM,
            backend="onnxruntime",
            runtime=SERVER_NAME,
            max_batch_size=loaded.policy.max_batch_size if batched else 0,
            input=[oip.ModelInput(name=t.name, data_type=_TRITON_TYPES[t.datatype], dims=dims(t))
                   for t in signature.inputs],
            output=[oip.ModelOutput(name=t.name, data_type=_TRITON_TYPES[t.datatype], dims=dims(t))
                    for t in signature.outputs if t.datatype],
            instance_group=[oip.ModelInstanceGroup(count=self._settings.workers, kind=oip.ModelInstanceGroup.KIND_CPU)],
            parameters={"sha256": oip.ModelParameter(string_value=loaded.sha256),
                        "source": oip.ModelParameter(string_value=loaded.source)},
        )  # fmt: skip
        if batched:
            config.dynamic_batching.max_queue_delay_microseconds = loaded.policy.max_queue_delay_us
        return oip.ModelConfigResponse(config=config)

    def statistics(self, name: str = "", version: str = "") -> oip.ModelStatisticsResponse:
        models = [self._repo.get(name, version)] if name else self._repo.all()
        return oip.ModelStatisticsResponse(model_stats=[m.stats.proto(m.name, m.version) for m in models])

    def repository_index(self, ready_only: bool) -> oip.RepositoryIndexResponse:
        models = [
            oip.RepositoryIndexResponse.ModelIndex(name=m.name, version=m.version, state="READY")
            for m in self._repo.all()
        ]
        if not ready_only:
            models += [
                oip.RepositoryIndexResponse.ModelIndex(name=name, state="UNAVAILABLE", reason=reason)
                for name, reason in self._repo.unavailable().items()
            ]
        return oip.RepositoryIndexResponse(models=models)

    # -- repository changes ---------------------------------------------------------------------

    async def load(
        self, name: str, options: LoadOptions, caller: Sequence[tuple[str, str]], from_sibling: bool = False
    ) -> None:
        """Loads a registry reference `name` (or, on a standalone runtime, `options.uri` as `name`)
        on every worker. `caller`: the caller's authorization metadata, which each worker checks
        again; `from_sibling`: the change is a sibling worker's repeat, done here only.

        On a deployment's runtime this is the scheduler's: a hot version swap, with the
        credential minted for `name` (NAME:VERSION), which is fetched with it, loaded and warmed
        beside the old version, then takes the requests that arrive from then on, while those the
        old one holds finish on it (repository.py); or with `options.trial`, the challenger of a
        trial beside the served version."""
        if not name:
            raise InvalidArgument("model_name is required: a registry reference NAME[:VERSION|@ALIAS]")
        options.check(self._settings.managed)
        if options.renew:
            if self._credentials is not None:
                self._credentials.renew(options.credential)
        elif options.credential and self._credentials is not None:
            ref = parse_ref(name)
            if options.trial:  # one credential names the served version and its challenger
                self._credentials.start_trial(int(self._repo.get(ref.name).version), ref.version, options.credential)
            else:
                self._credentials.add(ref.version, options.credential)
        if options.renew:
            pass  # the models stay as they are
        elif options.trial:
            await self._repo.load_trial(name, options.trial, options.canary_percent / 100)
        elif options.uri:
            await self._repo.load_uri(name, options.uri, confined=True)
        else:
            loaded = await self._repo.load_ref(name)
            if self._node_labels is not None:
                self._node_labels.serve(int(loaded.version))
        if not from_sibling:
            request = oip.RepositoryModelLoadRequest(model_name=name)
            options.write(request.parameters)
            await self._repeat_on_siblings("RepositoryModelLoad", request, caller)

    async def unload(
        self, name: str, caller: Sequence[tuple[str, str]], from_sibling: bool = False, trial_only: bool = False,
        credential: str = "",
    ) -> None:  # fmt: skip
        """Unloads the model, or with `trial_only` ends its trial (the scheduler's, with the fresh
        `credential` of the served version alone), on every worker."""
        if trial_only:
            trial = self._repo.trial(name)
            if trial is not None and self._credentials is not None:
                served, challenger = int(self._repo.get(name).version), int(trial.challenger.version)
                self._credentials.end_trial(served, challenger, credential)
            await self._repo.end_trial(name)
        else:
            await self._repo.unload(name)
        if not from_sibling:
            request = oip.RepositoryModelUnloadRequest(model_name=name)
            if trial_only:
                request.parameters[TRIAL].bool_param = True
            if credential:
                request.parameters[CREDENTIAL].string_param = credential
            await self._repeat_on_siblings("RepositoryModelUnload", request, caller)

    async def _repeat_on_siblings(self, method: str, forwarded, caller: Sequence[tuple[str, str]]) -> None:
        """Repeats a repository change on the other workers of this runtime, as the same caller
        (marked as a repeat, so that they do not repeat it in turn). A sibling that is still
        starting is waited for (wait_for_ready): the runtime answers health as soon as one worker
        listens, so a change can arrive before the others do."""
        if not self._siblings:
            return
        forwarded.parameters[LOCAL_ONLY].bool_param = True
        metadata = [(k, v) for k, v in caller if k == "authorization"]

        async def repeat_on(address: str) -> None:
            channel = self._sibling_channels.get(address)
            if channel is None:  # the siblings' loopback control ports are plaintext by design (app.py)
                channel = self._sibling_channels[address] = grpc.aio.insecure_channel(address)
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            try:
                await getattr(stub, method)(forwarded, metadata=metadata, timeout=300, wait_for_ready=True)
            except grpc.aio.AioRpcError as error:
                failure = from_rpc_error(error)
                failure.message = f"{method} failed on the worker at {address}: {failure.message}"
                raise failure from None

        await asyncio.gather(*(repeat_on(address) for address in self._siblings))
