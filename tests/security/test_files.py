"""The operator's view: the data dir of a running two-tenant mesh holds every tenant's private
models, inference inputs, labels and the deployments' state, so nothing in it is for other users
of the machine (a runtime's cache and logs included)."""

from __future__ import annotations

import os
import stat

import psutil
from sklearn.linear_model import LogisticRegression

from mlaas.export import register_sklearn
from mlaas.v1 import types_pb2


def test_nothing_in_the_data_dir_is_readable_by_other_users(mesh, deployed, iris_model):
    _, X, y = iris_model
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, LogisticRegression(max_iter=200).fit(X, y), "alpha-files", X,
                         visibility=types_pb2.VISIBILITY_PRIVATE)  # fmt: skip
    deployed("alpha", "alpha-files")  # its runtime caches the private model
    assert stat.S_IMODE(mesh.data_dir.stat().st_mode) == 0o700
    exposed = [
        f"{path.relative_to(mesh.data_dir)} {stat.S_IMODE(path.lstat().st_mode):o}"
        for path in mesh.data_dir.rglob("*")
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]
    assert exposed == []
    assert any(mesh.data_dir.glob("runtime-cache/*.onnx")) and any(mesh.data_dir.glob("redis/**/*.aof"))


def test_a_runtime_inherits_none_of_the_meshs_credentials(mesh, deployed, iris_model):
    """A compromised runtime must not be able to rewrite deployments in Redis, mint credentials
    or act as the scheduler. It is forked by the warm runtime, whose memory it inherits: that
    process's environment holds none of them, and the runtime's own credential reached it in a
    file that only it read, and deleted."""
    _, X, y = iris_model
    with mesh.registry_as("alpha") as alpha:
        register_sklearn(alpha, LogisticRegression(max_iter=200).fit(X, y), "alpha-env", X)
    port = deployed("alpha", "alpha-env").endpoints[0].rsplit(":", 1)[1]
    [runtime] = [  # the replica leads its process group; its workers show its command line too
        p for p in psutil.process_iter(["cmdline"])
        if "inference_svc" in " ".join(p.info["cmdline"] or ()) and port in " ".join(p.info["cmdline"] or ())
        and os.getpgid(p.pid) == p.pid
    ]  # fmt: skip
    server = runtime.parent()
    assert "inference_svc.warm" in " ".join(server.cmdline())
    assert not {"MLAAS_TOKEN", "MLAAS_REDIS_URL", "MLAAS_MESH_KEY_FILE"} & set(server.environ())
    assert not list(mesh.data_dir.rglob(".child-*.env"))
