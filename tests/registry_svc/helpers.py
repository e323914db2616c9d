from __future__ import annotations

from mlaas.v1 import types_pb2


def describe(name: str, task: int = types_pb2.TASK_CLASSIFICATION, **fields) -> types_pb2.ModelDescription:
    return types_pb2.ModelDescription(name=name, task=task, **fields)


def stored_blobs(data_dir) -> list:
    root = data_dir / "artifacts"
    return sorted(p for p in root.glob("??/*")) if root.exists() else []


def staging_files(data_dir) -> list:
    root = data_dir / "staging"
    return sorted(root.iterdir()) if root.exists() else []
