"""`aic-admin verify` and `aic-admin models` against a real catalog and real archive files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import save_model
from tests.admin.conftest import ArchiveEnv
from tests.conftest import write_photos


def flip_a_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_catches_a_flipped_byte(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 3)
    env.archived(photos)
    code, out = env.admin("verify", "--local", "--json")
    assert code == 0 and json.loads(out) == {"checked": 3, "decoded": 3, "ok": 3, "failed": []}
    code, out = env.admin("verify", "--local", "--json")
    assert code == 0 and json.loads(out) == {"checked": 3, "decoded": 0, "ok": 3, "failed": []}

    damaged = env.archive / "img01.png.aic"
    flip_a_byte(damaged)
    code, out = env.admin("verify", "--local", "--json")  # checksums catch it; it is decoded again
    report = json.loads(out)
    assert code == 1 and report["checked"] == 3 and report["decoded"] == 1 and report["ok"] == 2
    [failure] = report["failed"]
    assert failure["archive_path"] == str(damaged) and "sha256" in failure["reason"]
    code, out = env.admin("verify", "--local", "--all")
    assert code == 1 and "decoded 3" in out and "1 failed" in out and str(damaged) in out
    code, out = env.admin("verify", "--local", "--folder", str(env.inbox), "--id", "1", "--json")
    assert code == 0 and json.loads(out)["checked"] == 1
    code, out = env.admin("quarantine", "--json")
    assert {j["kind"] for j in json.loads(out)["jobs"]} == {"verify"}  # the catalog remembers


@pytest.fixture
def other_model(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    path = tmp_path / "other.safetensors"
    save_model(Autoencoder(ModelConfig(channels=16, latent_channels=32, group_size=8)), path)
    return path


def test_models_list_import_default_and_remove(archive_env: ArchiveEnv, other_model: Path) -> None:
    env = archive_env
    env.archived(write_photos(env.inbox, 1))
    code, out = env.admin("models", "--json")
    [used] = json.loads(out)
    assert code == 0 and used["default"] and used["archive_versions"] == 1 and used["file_present"]

    code, out = env.admin("models", "import", str(other_model))
    assert code == 0
    code, out = env.admin("models", "list", "--json")
    other = next(m for m in json.loads(out) if m["id"] != used["id"])
    assert not other["default"] and other["archive_versions"] == 0
    kept = Path(other["path"])
    assert kept.parent == Path(env.root / "home" / "models") and kept.read_bytes() == other_model.read_bytes()

    assert env.admin("models", "set-default", other["id"][:12])[0] == 0
    code, out = env.admin("models", "--json")
    assert {m["id"]: m["default"] for m in json.loads(out)} == {used["id"]: False, other["id"]: True}
    code, out = env.admin("models")
    assert code == 0 and other["id"][:16] in out

    assert env.admin("models", "remove", used["id"])[0] == 1  # an archive needs it
    assert env.admin("models", "set-default", "ffff")[0] == 1  # names no model
    assert env.admin("models", "remove", other["id"])[0] == 0
    assert not kept.exists()
    code, out = env.admin("models", "--json")
    assert [m["id"] for m in json.loads(out)] == [used["id"]]

    not_weights = env.root / "not.safetensors"
    not_weights.write_bytes(b"nonsense")
    assert env.admin("models", "import", str(not_weights))[0] == 1
