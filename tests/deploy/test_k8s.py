"""deploy/k8s: manifests that hang together (names, ports, variables), run real commands, and build.

`kubectl kustomize` (offline) renders the whole set where kubectl is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aic_worker.jobs.queue import QUEUE
from tests.deploy.conftest import DEPLOY, check_variables, check_watch_config, parse_command

K8S = DEPLOY / "k8s"
Manifests = dict[tuple[str, str], dict[str, Any]]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    """(kind, name) -> manifest, for every resource the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for resource in kustomization["resources"]:
        for doc in documents(K8S / resource):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def test_every_name_a_pod_refers_to_is_defined(manifests: Manifests) -> None:
    config = manifests[("ConfigMap", "aic-config")]
    check_variables(config["data"])
    check_variables(manifests[("Secret", "aic-secrets")]["stringData"])
    pods = [m for (kind, _), m in manifests.items() if kind in ("Deployment", "Job")]
    assert len(pods) == 4
    for manifest in pods:
        spec = pod_spec(manifest)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for volume in spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in manifests
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in manifests
        for container in spec["containers"]:
            parse_command(container["command"])
            refs = [ref.get("configMapRef") or ref["secretRef"] for ref in container["envFrom"]]
            assert [ref["name"] for ref in refs] == ["aic-config", "aic-secrets"]
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec["volumes"]}
            probe = container.get("livenessProbe")
            if probe and container["name"] != "web":  # the long-running ones (the dashboard: below)
                assert probe["httpGet"]["path"] == "/healthz"
                (port,) = container["ports"]
                assert port["containerPort"] == int(config["data"]["AIC_METRICS_PORT"])


def test_workers_request_a_gpu_and_the_migration_is_a_job(
    manifests: Manifests,
) -> None:
    (worker,) = pod_spec(manifests[("Deployment", "aic-worker")])["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert parse_command(worker["command"]).device == "cuda:0"
    (migrate,) = pod_spec(manifests[("Job", "aic-migrate")])["containers"]
    assert migrate["command"] == ["aic-admin", "db", "upgrade"]
    assert manifests[("Deployment", "aic-watch")]["spec"]["strategy"]["type"] == "Recreate"


def test_the_watch_config_in_the_configmap_passes_the_watchers_checks(
    manifests: Manifests,
) -> None:
    (folder,) = check_watch_config(manifests[("ConfigMap", "aic-config")]["data"]["watch.toml"]).folders
    (worker,) = pod_spec(manifests[("Deployment", "aic-worker")])["containers"]
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert {str(folder.path), str(folder.archive), str(folder.done_dir)} <= mounts


def test_the_dashboard_is_a_cluster_service_with_its_token_in_the_secret(manifests: Manifests) -> None:
    (web,) = pod_spec(manifests[("Deployment", "aic-web")])["containers"]
    arguments = parse_command(web["command"])
    assert arguments.func.__module__ == "aic_worker.admin.serve_command"
    (port,) = web["ports"]
    assert port["containerPort"] == arguments.port
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    check_variables(variable["name"] for variable in web["env"])
    service = manifests[("Service", "aic-web")]
    assert service["spec"]["type"] == "ClusterIP"  # no node port or load balancer: port-forward or an Ingress
    selector = manifests[("Deployment", "aic-web")]["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert "AIC_API_TOKEN" in manifests[("Secret", "aic-secrets")]["stringData"]
    assert all(m.get("readOnly") for m in web["volumeMounts"] if m["mountPath"].startswith("/srv/aic"))


def test_only_pods_labelled_as_clients_may_reach_the_dashboard(manifests: Manifests) -> None:
    """Reads need no token: the NetworkPolicy is what keeps every other pod of the cluster out."""
    deployment = manifests[("Deployment", "aic-web")]
    (web,) = pod_spec(deployment)["containers"]
    policy = manifests[("NetworkPolicy", "aic-web")]["spec"]
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"aic.archive/web-client": "allowed"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": web["ports"][0]["containerPort"]}]
    assert "aic.archive/web-client" in (K8S / "web.yaml").read_text().split("apiVersion")[0]  # documented
    roots = {v["name"]: v["value"] for v in web["env"]}["AIC_API_ROOTS"].split(":")
    mounted = {m["mountPath"] for m in web["volumeMounts"]}
    assert roots and set(roots) <= mounted  # add and restore reach the archive's folders, nothing else


def test_workers_scale_on_the_length_of_the_queue_they_consume() -> None:
    (scaler,) = documents(K8S / "autoscaling" / "keda-scaledobject.yaml")
    assert scaler["spec"]["scaleTargetRef"]["name"] == "aic-worker"
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == QUEUE
    assert scaler["spec"]["minReplicaCount"] >= 1  # a worker must live to run the reaper


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_it() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = list(yaml.safe_load_all(result.stdout))
    assert {doc["metadata"].get("namespace") for doc in rendered if doc["kind"] != "Namespace"} == {"aic"}
