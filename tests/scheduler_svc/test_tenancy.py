"""Tenancy on the scheduler: with a tokens file, a tenant sees only its own deployments (and
those it holds a lease on), while the mesh's own identity (`mlaas.auth.MESH_TENANT`: the
registry's deletion guard, the monitor) sees every tenant's and rolls a deployment to a retrained
version on its owner's behalf."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression

from mlaas import errors
from mlaas.auth import MESH_TENANT
from mlaas.client import RegistryClient, SchedulerClient
from mlaas.export import register_sklearn
from mlaas.settings import ServerSettings
from mlaas.v1 import scheduler_pb2 as S
from tests.scheduler_svc.conftest import ONE_CPU


def test_tenants_see_their_own_deployments_and_the_mesh_sees_all(parts, tmp_path, iris_model):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"token-alpha: alpha\ntoken-beta: beta\ntoken-mesh: {MESH_TENANT}\n")
    server = ServerSettings(port=0, metrics_port=-1, shutdown_grace_seconds=2, auth_tokens_file=str(tokens))
    address = f"127.0.0.1:{parts.start(server=server).server.port}"
    with (
        SchedulerClient(address, "token-alpha") as alpha,
        SchedulerClient(address, "token-beta") as beta,
        SchedulerClient(address, "token-mesh") as mesh,
    ):
        deployment = alpha.wait_ready(alpha.deploy("iris").id)
        assert deployment.state == S.DEPLOYMENT_STATE_READY and deployment.tenant == "alpha"
        assert [d.id for d in alpha.list()] == [deployment.id]

        assert beta.list() == []
        with pytest.raises(errors.NotFound, match="not found"):
            beta.get(deployment.id)
        with pytest.raises(errors.NotFound):
            beta.decommission(deployment.id)

        assert [d.id for d in mesh.list()] == [deployment.id]
        assert mesh.get(deployment.id).tenant == "alpha"
        assert [d.id for d in mesh.list(model_name="iris", model_version=1)] == [deployment.id]  # the guard's question

        # The Monitor rolls a retrained version out on the owner's behalf; another tenant cannot.
        _, X, y = iris_model
        with RegistryClient(parts.registry_address) as registry:
            register_sklearn(registry, LogisticRegression(C=0.05, max_iter=300).fit(X, y), "iris", X,
                             run_resources=ONE_CPU)  # fmt: skip
        with pytest.raises(errors.NotFound):
            beta.update(deployment.id, "iris:2")
        assert mesh.update(deployment.id, "iris:2").state == S.DEPLOYMENT_STATE_UPDATING
        assert alpha.wait_settled(deployment.id).model.version == 2
