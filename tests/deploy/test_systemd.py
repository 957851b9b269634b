"""deploy/systemd: hardened units that start real commands, clean under `systemd-analyze verify`."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, check_variables, check_watch_config, parse_command

UNITS = DEPLOY / "systemd"
HARDENING = {"User": "aic", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}


def unit_settings(path: Path) -> dict[str, list[str]]:
    """key -> values of a unit file (systemd allows a key more than once; sections don't matter here)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exec_start(path: Path, instance: str = "0") -> list[str]:
    (command,) = unit_settings(path)["ExecStart"]
    return shlex.split(command.replace("%i", instance).replace("%H", "host"))


@pytest.mark.parametrize("name", ["aic-watch.service", "aic-worker@.service", "aic-web.service"])
def test_units_are_hardened_and_start_commands_that_exist(name: str) -> None:
    settings = unit_settings(UNITS / name)
    for key, value in HARDENING.items():
        assert settings.get(key) == [value], key
    assert settings["EnvironmentFile"] == ["/etc/aic/aic.env"]
    parse_command(exec_start(UNITS / name))
    check_variables(line.partition("=")[0] for line in settings.get("Environment", []))


def test_each_worker_instance_has_its_gpu_its_port_and_writes_only_the_data() -> None:
    settings = unit_settings(UNITS / "aic-worker@.service")
    assert {"AIC_DEVICE=cuda:%i", "AIC_METRICS_PORT=931%i"} <= set(settings["Environment"])
    assert settings["ReadWritePaths"] == ["/srv/aic/inbox /srv/aic/done /srv/aic/archive"]
    assert settings["KillMode"] == ["mixed"]  # SIGTERM to Celery's main process: a warm shutdown
    assert "ReadWritePaths" not in unit_settings(UNITS / "aic-watch.service")  # it only reads


def test_the_dashboard_listens_on_loopback_and_writes_nothing_but_its_state() -> None:
    arguments = parse_command(exec_start(UNITS / "aic-web.service"))
    assert arguments.func.__module__ == "aic_worker.admin.serve_command"
    assert arguments.host == "127.0.0.1"
    settings = unit_settings(UNITS / "aic-web.service")
    assert "ReadWritePaths" not in settings and settings["StateDirectory"] == ["aic"]


def test_the_environment_file_and_the_watch_config_are_what_the_code_reads() -> None:
    lines = (UNITS / "aic.env").read_text().splitlines()
    check_variables(line.partition("=")[0] for line in lines if line and not line.startswith("#"))
    config = check_watch_config((UNITS / "watch.toml").read_text())
    (folder,) = config.folders
    paths = unit_settings(UNITS / "aic-worker@.service")["ReadWritePaths"][0].split()
    assert {str(folder.path), str(folder.archive), str(folder.done_dir)} == set(paths)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """With the commands pointed at this environment's (verify checks that they are executables)."""
    bin_dir = str(Path(sys.executable).parent)
    copies = {
        "aic-watch.service": "aic-watch.service",
        "aic-worker@.service": "aic-worker@0.service",
        "aic-web.service": "aic-web.service",
    }
    for name, copy in copies.items():
        (tmp_path / copy).write_text((UNITS / name).read_text().replace("/opt/aic/venv/bin", bin_dir))
    result = subprocess.run(
        ["systemd-analyze", "verify", *copies.values()],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
