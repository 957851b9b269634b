"""deploy/compose: the stack parses, its services run real commands, and the image runs as non-root.

`docker compose config` checks the file as Compose reads it, where the docker client has the
compose plugin; the rest reads the YAML itself, so it runs everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from aic_worker.jobs.queue import QUEUE
from tests.deploy.conftest import DEPLOY, ROOT, check_variables, check_watch_config, parse_command

COMPOSE = DEPLOY / "compose"
AIC_SERVICES = {"migrate", "watcher", "worker-0"}  # with metrics on 9310
WEB = "web"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_the_stack_has_every_part_and_aic_services_run_real_commands(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {"redis", "postgres", "flower", "prometheus", WEB} | AIC_SERVICES
    for name in AIC_SERVICES:
        parse_command(services[name]["command"])
        check_variables(services[name]["environment"])
    assert services["migrate"]["command"] == ["aic-admin", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in AIC_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "9310/healthz" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["environment"]["AIC_METRICS_PORT"] == "9310"


def test_the_dashboard_listens_on_the_hosts_loopback_only_with_its_token_from_the_environment(
    stack: dict[str, Any],
) -> None:
    web = stack["services"][WEB]
    arguments = parse_command(web["command"])
    assert arguments.func.__module__ == "aic_worker.admin.serve_command"
    assert web["ports"] == [f"127.0.0.1:{arguments.port}:{arguments.port}"]
    check_variables(web["environment"])
    assert web["environment"]["AIC_API_TOKEN"] == "${AIC_API_TOKEN:-}"  # never a default token
    assert f"{arguments.port}/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert set(web["volumes"]) == set(stack["services"]["worker-0"]["volumes"])  # the same paths


def test_redis_persists_and_workers_reserve_a_gpu(stack: dict[str, Any]) -> None:
    redis_command = stack["services"]["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    (device,) = stack["services"]["worker-0"]["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"], device["device_ids"]) == ("nvidia", ["gpu"], ["0"])
    assert "cuda:0" in stack["services"]["worker-0"]["command"]


def test_flower_and_prometheus_watch_the_same_broker_and_endpoints(stack: dict[str, Any]) -> None:
    broker = stack["services"]["worker-0"]["environment"]["AIC_BROKER_URL"]
    assert f"--broker={broker}" in stack["services"]["flower"]["command"]
    scrape = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:9310" for name in AIC_SERVICES - {"migrate"}}
    assert QUEUE == "aic"  # the queue Flower shows and the autoscalers count


def test_the_watch_config_passes_the_watchers_checks(stack: dict[str, Any]) -> None:
    (folder,) = check_watch_config((COMPOSE / stack["configs"]["watch"]["file"]).read_text()).folders
    mounted = {volume.rsplit(":", 1)[1] for volume in stack["services"]["worker-0"]["volumes"]}
    assert {str(folder.path), str(folder.archive), str(folder.done_dir)} == mounted


def test_the_image_builds_from_what_the_repository_has_and_runs_as_a_user() -> None:
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-", dockerfile, re.MULTILINE)
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for name in source.split():
            assert (ROOT / name).exists(), name
    (user,) = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user.split(":")[0] not in ("root", "0")
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")}
    assert not {"aic_worker", "aic_watch", "migrations", "pyproject.toml"} & ignored


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="the docker client here has no compose plugin")
def test_docker_compose_config_accepts_it() -> None:
    command = ["docker", "compose", "-f", str(COMPOSE / "docker-compose.yml"), "config", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
