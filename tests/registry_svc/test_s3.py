"""Artifacts in S3 (MLAAS_ARTIFACT_STORE=s3://bucket/prefix), against moto's standalone S3
server on a free loopback port: a real HTTP S3 API, not an in-process mock."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mlaas import errors
from mlaas.services.net import free_port
from tests.conftest import tiny_onnx
from tests.registry_svc.helpers import describe, stored_blobs


@pytest.fixture
def s3_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_artifacts_live_in_s3(start_registry, registry_settings, s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="models")
    settings = dataclasses.replace(
        registry_settings, artifact_store="s3://models/mesh/artifacts", s3_endpoint_url=s3_endpoint
    )
    server = start_registry(settings)
    from mlaas.client import RegistryClient

    def keys():
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models").get("Contents", []))

    with RegistryClient(f"127.0.0.1:{server.port}") as client:
        artifact = tiny_onnx(seed=21)
        model = client.register(artifact, describe("in-s3")).model
        sha = model.artifact.sha256
        assert keys() == [f"mesh/artifacts/{sha[:2]}/{sha}"]
        assert stored_blobs(settings.data_dir) == []
        client.download("in-s3", tmp_path / "m.onnx")
        assert (tmp_path / "m.onnx").read_bytes() == artifact

        with pytest.raises(errors.InvalidArgument):
            client.register(artifact[:-9], describe("in-s3"))
        assert len(keys()) == 1

        client.delete("in-s3", 1)
        assert keys() == []
