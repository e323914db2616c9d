"""The contract between the scheduler and what it starts, the same on every backend: a runtime's
command line and environment, and a training job's command line. A backend adds only where it
runs them (a child process, a container, a pod) and how it reaches them."""

from __future__ import annotations

from scheduler_svc.backends import JobSpec, ReplicaSpec, credential


def runtime_args(spec: ReplicaSpec, port: int, http_port: int, bulk_port: int, metrics_port: int = -1) -> list[str]:
    """The arguments of `python -m inference_svc` (the image's `inference`): one worker process
    per whole CPU the replica was given."""
    workers = max(1, spec.cpu_millicores // 1000)
    return [
        "--model", spec.model_ref, "--port", str(port), "--http-port", str(http_port), "--bulk-port", str(bulk_port),
        "--workers", str(workers), "--metrics-port", str(metrics_port),
    ]  # fmt: skip


def runtime_env(spec: ReplicaSpec) -> dict[str, str]:
    """What a runtime is told of its deployment: which one, whether its rows may leave its node
    (STRICT: it sends summaries only), and its own credential."""
    return {
        "MLAAS_DEPLOYMENT_ID": spec.deployment_id,
        "MLAAS_FEEDBACK_MODE": "summaries" if spec.strict else "records",
        **credential(spec.token),
    }


def job_args(spec: JobSpec, registry: str) -> list[str]:
    """The arguments of `python -m mlaas.retraining.train_job` (the image's `train`): a fit of the
    model's recipe on its input, or a round on a STRICT deployment's node from the data there."""
    arguments = ["--registry", registry, "--model", spec.model_ref]
    if spec.node_store:
        return [*arguments, "--round", spec.input_path, "--node-store", spec.node_store, "--result", spec.result_path,
                "--output", spec.output_path]  # fmt: skip
    return [*arguments, "--input", spec.input_path, "--output", spec.output_path]
