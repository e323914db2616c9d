"""A deployment through the scheduler on the Docker backend, end to end on a real engine:
deploy, infer, decommission, and the container is gone; plus a training job in a warm job
container of its node, with the job's limits."""

from __future__ import annotations

import io
import time
import uuid
from collections import Counter

import docker
import numpy as np
import onnxruntime
from sklearn.linear_model import LogisticRegression

from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.inference_client import DeploymentInference
from mlaas.local.redis_embedded import EmbeddedRedis
from mlaas.services.settings import ServerSettings
from mlaas.v1 import scheduler_pb2, types_pb2
from scheduler_svc.app import build_scheduler
from scheduler_svc.backends import JobSpec
from scheduler_svc.backends.docker import DockerBackend
from scheduler_svc.backends.docker_warm import PER_NODE, READY
from scheduler_svc.backends.k8s_manifests import object_name
from scheduler_svc.settings import SchedulerSettings, parse_nodes

S = scheduler_pb2


def ready_warm_containers(engine, mesh: str, nodes: set[str]) -> list:
    """The mesh's warm job containers on `nodes`, once each of them has its PER_NODE ready."""
    deadline = time.monotonic() + 120
    while True:
        waiting = engine.containers.list(filters={"label": [f"mlaas.io/mesh={mesh}", "mlaas.io/warm=true"]})
        ready = [c for c in waiting if c.name.startswith("mlaas-warm-") and READY in c.logs()]
        per_node = Counter(c.labels["mlaas.io/node"] for c in ready)
        if all(per_node[node] == PER_NODE for node in nodes):
            return ready
        assert time.monotonic() < deadline, [(c.name, c.logs()[-500:]) for c in waiting]
        time.sleep(0.2)


def test_a_deployment_runs_as_a_container_and_goes_away(image, registry, iris_model, tmp_path):
    model, X, y = iris_model
    registry_address = f"127.0.0.1:{registry.port}"
    with RegistryClient(registry_address) as client:
        register_sklearn(client, model, "iris", X, run_resources=types_pb2.Resources(cpu_millicores=1000,
                         memory_bytes=512 * 2**20))  # fmt: skip
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    jobs = tmp_path / "jobs"
    settings = SchedulerSettings(
        server=ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=2),
        redis_url=redis_server.url, registry_address=registry_address, data_dir=tmp_path / "scheduler",
        # "edge" names its engine explicitly (the same one here: there is one engine on this machine).
        nodes=parse_nodes("docker-host:cpu=2,memory=4Gi;edge:cpu=1,memory=1Gi,docker=unix:///var/run/docker.sock"),
        start_timeout_seconds=120, placement_timeout_seconds=30, backend="docker",
        runtime_image=image, jobs_dir=jobs, activator_port=0, activator_http_port=0,
    )  # fmt: skip
    run = f"test-{uuid.uuid4().hex[:8]}"
    env = {"MLAAS_REGISTRY_ADDR": registry_address}
    backend = DockerBackend(image, env, str(jobs), {"edge": "unix:///var/run/docker.sock"}, mesh=run)
    scheduler = build_scheduler(settings, env, backend=backend)
    scheduler.start()
    engine = docker.from_env()
    try:
        with SchedulerClient(f"127.0.0.1:{scheduler.server.port}") as client:
            private = client.wait_ready(client.deploy("iris", strict_node="edge").id)  # fills edge
            assert private.replica_status[0].handle.startswith("edge/")
            [pinned] = engine.containers.list(filters={"label": f"mlaas.io/deployment={private.id}"})
            assert pinned.labels["mlaas.io/node"] == "edge"
            assert dict(e.split("=", 1) for e in pinned.attrs["Config"]["Env"])["MLAAS_FEEDBACK_MODE"] == "summaries"

            deployment = client.wait_ready(client.deploy("iris").id)  # OPEN: never shares a STRICT one
            assert deployment.id != private.id and deployment.replica_status[0].node == "docker-host"
            assert deployment.backend == "docker"
            [container] = engine.containers.list(filters={"label": f"mlaas.io/deployment={deployment.id}"})
            host = container.attrs["HostConfig"]
            assert host["NanoCpus"] == 1_000_000_000 and host["Memory"] == 512 * 2**20
            assert container.labels["mlaas.io/model"] == "iris" and container.labels["mlaas.io/version"] == "1"
            assert container.labels["mlaas.io/mesh"] == run
            assert container.labels["mlaas.io/node"] == deployment.replica_status[0].node
            assert container.attrs["Config"]["User"] == "10001:10001"  # the image runs as non-root
            with DeploymentInference(client, deployment.id) as runtime:
                assert np.array_equal(runtime.infer({"X": X[:5]})["label"], model.predict(X[:5]))

            # A new version swaps into the running container: no new container, the same endpoint.
            with RegistryClient(registry_address) as registry:
                one_cpu = types_pb2.Resources(cpu_millicores=1000, memory_bytes=512 * 2**20)
                register_sklearn(registry, LogisticRegression(C=0.05, max_iter=300).fit(X, y), "iris", X,
                                 run_resources=one_cpu)  # fmt: skip
            client.update(deployment.id, "iris:2")
            swapped = client.wait_settled(deployment.id, timeout=120)
            assert swapped.model.version == 2 and swapped.endpoints == deployment.endpoints
            assert [r.handle for r in swapped.replica_status] == [r.handle for r in deployment.replica_status]
            with DeploymentInference(client, deployment.id) as runtime:
                assert [r.model_version for r in runtime.stream([{"X": X[:1]}])] == ["2"]

            # Each node with a replica has a warm job container; a job placed there takes it.
            nodes = {"docker-host", "edge"}
            warm = {(c.labels["mlaas.io/node"], c.id) for c in ready_warm_containers(engine, run, nodes)}
            data = io.BytesIO()
            np.savez(data, X=X, y=y)
            job = client.run_training_job("iris", input_data=data.getvalue())  # as the Monitor sends it
            done = client.wait_training_job(job.id, timeout=300)
            assert done.state == S.JOB_STATE_SUCCEEDED
            session = onnxruntime.InferenceSession(client.training_job_output(done.id))  # read back over gRPC
            assert np.mean(session.run(None, {session.get_inputs()[0].name: X})[0] == y) > 0.9
            taken = tuple(done.handle.split("/"))
            assert taken in warm  # one of the node's warm containers ran it
            assert taken[1] not in {c.id for c in ready_warm_containers(engine, run, {done.node})}  # a new one

            client.decommission(deployment.id)
        scheduler.stop(0, stop_replicas=True)
        assert engine.containers.list(all=True, filters={"label": f"mlaas.io/mesh={run}"}) == []  # all gone
    finally:
        scheduler.stop(0, stop_replicas=True)
        redis_server.stop()
        for leftover in engine.containers.list(all=True, filters={"label": f"mlaas.io/mesh={run}"}):
            leftover.remove(force=True)  # only this test's: other meshes may share the engine


def test_a_warm_job_container_takes_the_jobs_limits_name_and_credential(image, tmp_path):
    """The backend alone on a real engine: the first job of a node starts cold (no warm container
    is ready yet) and starts one; the next takes it, with the job's CPU and memory as its limits,
    the job's name, and the job's arguments and credential on its standard input (never in its
    configuration). A cold job's container mounts its own directory only. The job runs the
    request's arguments (here it fails at once: the registry they name does not answer)."""
    run = f"test-{uuid.uuid4().hex[:8]}"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    backend = DockerBackend(image, {"MLAAS_REGISTRY_ADDR": "127.0.0.1:1"}, str(jobs), mesh=run)
    engine = docker.from_env()

    def job(job_id: str) -> JobSpec:
        (jobs / job_id).mkdir()
        return JobSpec(job_id, "n1", "iris:1", str(jobs / job_id / "input.npz"), str(jobs / job_id / "model.onnx"),
                       cpu_millicores=500, memory_bytes=384 * 2**20, token=f"secret-{job_id}")  # fmt: skip

    try:
        cold = engine.containers.get(backend.start_job(job("j-cold")).handle.rpartition("/")[2])
        assert cold.labels.get("mlaas.io/warm") is None
        assert [m["Source"] for m in cold.attrs["Mounts"]] == [str(jobs / "j-cold")]  # no other job's files
        waiting = {c.id for c in ready_warm_containers(engine, run, {"n1"})}
        started = backend.start_job(job("j-warm"))
        taken = engine.containers.get(started.handle.rpartition("/")[2])
        assert taken.id in waiting and taken.name == object_name("j-warm")
        limits = taken.attrs["HostConfig"]
        assert (limits["CpuQuota"], limits["CpuPeriod"], limits["Memory"]) == (50_000, 100_000, 384 * 2**20), limits
        assert not any("secret-" in e for e in taken.attrs["Config"]["Env"])
        assert taken.wait(timeout=120)["StatusCode"] != 0
        said = taken.logs().decode()
        assert "ipv4:127.0.0.1:1" in said and "secret-" not in said, said
        assert taken.id not in {c.id for c in ready_warm_containers(engine, run, {"n1"})}  # the node's next one
    finally:
        backend.close()
        for leftover in engine.containers.list(all=True, filters={"label": f"mlaas.io/mesh={run}"}):
            leftover.remove(force=True)
