"""The k8s/ manifests for the mesh: every overlay renders with `kubectl kustomize` and every
object validates against the Kubernetes 1.30 schemas (kubernetes-validate --strict); and what a
demanding operator checks first holds: probes and resources on every container, non-root pods,
Redis with its append-only file on a volume, a least-privilege Role for the scheduler, and
default-deny network policies."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlaas.services.auth import MONITOR, REGISTRY, SCHEDULER, Authenticator
from scheduler_svc.backends import ReplicaSpec
from scheduler_svc.backends.k8s_manifests import replica_manifests

pytestmark = pytest.mark.spawns  # see pyproject.toml


K8S = Path(__file__).resolve().parent.parent / "k8s"
VERSION = "1.30.0"


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the overlays (its kustomize is the reference renderer)"
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_object_of_every_overlay_validates(overlay):
    objects = render(overlay)
    for manifest in objects:
        kubernetes_validate.validate(manifest, VERSION, strict=True)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("StatefulSet", "mlaas-registry"), ("Deployment", "mlaas-scheduler"), ("StatefulSet", "mlaas-monitor"),
            ("StatefulSet", "mlaas-redis"), ("Role", "mlaas-scheduler"), ("NetworkPolicy", "default-deny-ingress"),
            ("PersistentVolumeClaim", "mlaas-jobs")} <= kinds  # fmt: skip
    assert all(o["metadata"].get("namespace") == "mlaas" for o in objects if not o["kind"].startswith("Cluster"))
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["readinessProbe"] and container["livenessProbe"], container["name"]
            assert container["resources"]["requests"] and container["resources"]["limits"], container["name"]


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = by(render("dev"), "StatefulSet", "mlaas-redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--appendonly", "yes"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_scheduler_may_do_only_what_its_backend_needs():
    objects = render("prod")
    role = by(objects, "Role", "mlaas-scheduler")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    assert not any("*" in item for item in granted)
    assert ("apps", "deployments", "create") in granted and ("batch", "jobs", "create") in granted
    assert not any(resource == "secrets" for _, resource, _ in granted)
    nodes = by(objects, "ClusterRole", "mlaas-scheduler-nodes")
    assert nodes["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    assert by(objects, "Deployment", "mlaas-scheduler")["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in by(objects, "Deployment", "mlaas-scheduler")["spec"]["template"]
           ["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["MLAAS_BACKEND"] == "kubernetes" and env["MLAAS_REDIS_URL"] == "redis://mlaas-redis:6379/0"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_runtimes_run_the_image_of_the_mesh(overlay):
    scheduler = by(render(overlay), "Deployment", "mlaas-scheduler")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in scheduler["env"]}
    assert env["MLAAS_RUNTIME_IMAGE"] == scheduler["image"]


def test_dev_generates_its_token_secrets_and_prod_does_not(tmp_path):
    """Each component runs with its own role's token; the tokens file every runtime mounts names
    the roles by digest only, so a runtime cannot learn them."""
    dev = render("dev")
    tokens = yaml.safe_load(base64.b64decode(by(dev, "Secret", "mlaas-tokens")["data"]["tokens.yaml"]))
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(yaml.safe_dump(tokens))
    role_tokens = by(dev, "Secret", "mlaas-role-tokens")["data"]
    assert by(dev, "Secret", "mlaas-mesh-key")["data"]["mesh.key"]
    for kind, name, role in (("Deployment", "mlaas-scheduler", SCHEDULER), ("StatefulSet", "mlaas-monitor", MONITOR),
                             ("StatefulSet", "mlaas-registry", REGISTRY)):  # fmt: skip
        key = role.removeprefix("mlaas-")
        token = base64.b64decode(role_tokens[key]).decode()
        assert (
            token not in tokens
            and Authenticator.from_file(tokens_file).tenant([("authorization", f"Bearer {token}")]) == role
        )
        spec = by(dev, kind, name)["spec"]["template"]["spec"]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["MLAAS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlaas-role-tokens", "key": key}
        assert env["MLAAS_MESH_KEY_FILE"]["value"] == "/etc/mlaas-key/mesh.key"
        assert {"name": "mesh-key", "secret": {"secretName": "mlaas-mesh-key"}} in spec["volumes"]
    assert not [o for o in render("prod") if o["kind"] == "Secret"]  # the operator creates it


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_mesh_service_serves_tls_from_the_secret(overlay):
    objects = render(overlay)
    for kind, name, port in (("StatefulSet", "mlaas-registry", 50051), ("Deployment", "mlaas-scheduler", 50052),
                             ("StatefulSet", "mlaas-monitor", 50053)):  # fmt: skip
        pod = by(objects, kind, name)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        assert mount["readOnly"]
        volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert volume["secret"] == {"secretName": "mlaas-tls", "defaultMode": 0o440}
        env = {e["name"]: e.get("value") for e in container["env"]}
        files = {"MLAAS_TLS_CERT": "tls.crt", "MLAAS_TLS_KEY": "tls.key", "MLAAS_TLS_CA": "ca.crt",
                 "MLAAS_TLS_CLIENT_CERT": "tls.crt", "MLAAS_TLS_CLIENT_KEY": "tls.key"}  # fmt: skip
        assert {k: env[k] for k in files} == {k: f"{mount['mountPath']}/{f}" for k, f in files.items()}, name
        for probe in (container["readinessProbe"], container["livenessProbe"]):  # no TLS in the kubelet's grpc probe
            assert probe["exec"]["command"] == ["python", "-m", "mlaas.services.healthcheck", f"127.0.0.1:{port}"], name
    scheduler = by(objects, "Deployment", "mlaas-scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MLAAS_K8S_TLS_SECRET", "value": "mlaas-tls"} in scheduler["env"]


def test_dev_makes_its_tls_secret_in_the_cluster_and_prod_does_not():
    dev = render("dev")
    job = by(dev, "Job", "mlaas-tls-init")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["python", "-m", "mlaas.local.certs", "k8s-secret", "--name", "mlaas-tls"]
    assert pod["containers"][0]["image"] == by(dev, "Deployment", "mlaas-scheduler")["spec"]["template"]["spec"][
        "containers"][0]["image"]  # fmt: skip
    assert pod["serviceAccountName"] == "mlaas-tls-init" and pod["securityContext"]["runAsNonRoot"]
    assert by(dev, "Role", "mlaas-tls-init")["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}  # nothing to read, nothing else
    ]
    binding = by(dev, "RoleBinding", "mlaas-tls-init")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlaas-tls-init", "namespace": "mlaas"}]
    prod = render("prod")
    assert not [o for o in prod if o["metadata"]["name"] == "mlaas-tls-init"]  # cert-manager or the operator


def test_the_dev_secret_certificate_names_every_endpoint_of_the_mesh():
    """What the Job writes: a certificate for serving and for presenting as a client, valid for
    the services, the runtimes' per-replica Services and loopback (the probes), signed by ca.crt."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from mlaas.local.certs import k8s_secret_data

    data = k8s_secret_data("mlaas-e2e")
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    assert {"mlaas-registry", "mlaas-scheduler.mlaas-e2e.svc", "mlaas-monitor.mlaas-e2e", "*.mlaas-e2e.svc",
            "localhost"} <= names  # fmt: skip
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_network_policy_lets_clients_reach_every_port_a_runtime_serves(overlay):
    """The bulk port (and the REST one) were once served but denied by the policy: every request
    over 4 MiB then failed on Kubernetes."""
    policy = by(render(overlay), "NetworkPolicy", "runtimes")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    spec = ReplicaSpec("d-1-abc", "d-1", "node", "iris:1", 1000, 2**28)
    _, service = replica_manifests(spec, "mlaas/runtime:dev", "mlaas", {})
    served = {p["port"] for p in service["spec"]["ports"]}
    assert served == {8000, 8001, 8002} and served <= allowed
