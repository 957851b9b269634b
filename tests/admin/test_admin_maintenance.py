"""`aic-admin verify`, `repair`, `prune` and `models` against a real catalog and real archive files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from aic_worker.admin.job_batch import run_batch
from aic_worker.admin.maintenance_commands import _resolve
from aic_worker.admin.output import CommandError
from aic_worker.catalog import lease
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, utcnow
from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import save_model
from aic_worker.jobs.parameters import RecompressParameters
from aic_worker.model_choice import SHIPPED_MODEL, shipped_models
from aic_worker.store.archive import file_sha256
from tests.admin.conftest import ArchiveEnv
from tests.conftest import session_on, write_photos


def flip_a_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_catches_a_flipped_byte(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 3)
    ids = env.archived(photos)
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
    assert _versions(env, ids[1])[0].damaged_at is not None

    flip_a_byte(damaged)  # the byte put back: it checks again, and the mark goes
    assert env.admin("verify", "--local")[0] == 0
    assert _versions(env, ids[1])[0].damaged_at is None


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



def test_set_default_adopts_a_shipped_model_the_catalog_never_met(archive_env: ArchiveEnv) -> None:
    """After an upgrade the catalog keeps its old default; `set-default <new id>` adopts the
    package's new model without an import. Prefixes must be unique across both sets."""
    env = archive_env
    env.archived(write_photos(env.inbox, 1))
    [used] = json.loads(env.admin("models", "--json")[1])
    shipped = shipped_models()
    package_default = file_sha256(SHIPPED_MODEL)
    assert used["id"] not in shipped and shipped[package_default] == SHIPPED_MODEL
    assert env.admin("models", "set-default", package_default[:10].upper())[0] == 0
    listed = {m["id"]: m for m in json.loads(env.admin("models", "--json")[1])}
    assert listed[package_default]["default"] and not listed[used["id"]]["default"]
    assert Path(listed[package_default]["path"]) == SHIPPED_MODEL and listed[package_default]["file_present"]
    for prefix in ("", "%", "_" * 4, "0" * 12):      # nothing, LIKE wildcards, no such model
        assert env.admin("models", "set-default", prefix)[0] == 1
    assert {m["id"] for m in json.loads(env.admin("models", "--json")[1])} == {used["id"], package_default}
    with session_on(env.engine) as session:            # a prefix of a catalog model and a shipped one
        twin = {used["id"][:6] + "f" * 58: SHIPPED_MODEL}
        with pytest.raises(CommandError, match="names 2 models"):
            _resolve(session, used["id"][:6], twin)
        assert _resolve(session, used["id"][:6]) == used["id"]

def _versions(env: ArchiveEnv, source_id: int) -> list[ArchiveVersion]:
    with session_on(env.engine) as session:
        return list(session.scalars(
            select(ArchiveVersion).where(ArchiveVersion.source_id == source_id).order_by(ArchiveVersion.id)
        ))


def _recompress(env: ArchiveEnv, source_ids: list[int], ratio: float, keep_versions: int) -> None:
    """RECOMPRESS jobs run here, as `aic-admin recompress --local` runs them."""
    sessions = session_factory(env.engine)
    with sessions() as session, session.begin():
        model = session.scalars(select(ArchiveVersion.model_id)).first()
        jobs = [
            enqueue_job(session, JobKind.RECOMPRESS, s, target_ratio=ratio, model_id=model,
                        parameters=RecompressParameters(keep_versions=keep_versions).to_json())[0].id
            for s in source_ids
        ]
    states = run_batch(sessions, jobs, JobKind.RECOMPRESS, local=True, device="cpu")
    assert set(states.values()) == {JobState.DONE}


def _forget_keep_versions(env: ArchiveEnv) -> None:
    with session_on(env.engine) as session, session.begin():
        for job in session.scalars(select(Job).where(Job.kind == JobKind.RECOMPRESS)):
            job.parameters = {**job.parameters, "keep_versions": None}


def test_prune_never_removes_the_only_intact_version(archive_env: ArchiveEnv) -> None:
    """A run's --keep-versions lasts (a plain prune kept 1 until 0.4.0's review); a damaged
    current version keeps every older one, whatever --keep-versions prune is given."""
    env = archive_env
    [photo] = write_photos(env.inbox, 1)
    [source] = env.archived([photo])  # the folder keeps 1 version
    photo.unlink()  # the delete policy's doing: the archive is all there is
    _recompress(env, [source], 48, keep_versions=2)
    first, current = _versions(env, source)

    code, out = env.admin("prune", "--json")  # the source keeps 2: what its recompress asked for
    assert code == 0 and json.loads(out)["version_files"] == 0 and Path(first.path).exists()

    flip_a_byte(Path(current.path))
    assert env.admin("verify", "--local")[0] == 1
    for argv in (("prune", "--json"), ("prune", "--keep-versions", "1", "--json")):
        code, out = env.admin(*argv)
        report = json.loads(out)
        assert code == 0 and report["version_files"] == 0 and report["current_damaged"] == [current.path]
    first, current = _versions(env, source)
    assert first.removed_at is None and Path(first.path).exists()
    code, out = env.admin("restore", str(source), "-o", str(env.root / "restored"))
    assert code == 0 and "restored 1 image(s)" in out


def test_verify_marks_damage_and_repair_makes_it_again(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 2)
    ids = env.archived(photos)
    Path(_versions(env, ids[0])[0].path).unlink()  # missing; its original is still there
    photos[1].unlink()  # its original gone: only an older version can repair it
    _recompress(env, [ids[1]], 48, keep_versions=2)
    flip_a_byte(Path(_versions(env, ids[1])[1].path))

    code, out = env.admin("verify", "--local", "--json")
    assert code == 1 and len(json.loads(out)["failed"]) == 2
    assert all(_versions(env, s)[-1].damaged_at is not None for s in ids)

    code, out = env.admin("repair", "--all", "--local", "--json")
    report = json.loads(out)
    assert code == 0 and sorted(r["id"] for r in report["repaired"]) == sorted(ids), report
    old, new = _versions(env, ids[0])  # from the original, at the damaged version's ratio
    assert old.damaged_at is not None and old.superseded_by == new.id and new.reference_version_id is None
    assert new.damaged_at is None and new.target_ratio == old.target_ratio and old.removed_at is not None
    first, damaged, third = _versions(env, ids[1])
    assert third.reference_version_id == first.id and third.target_ratio == 48
    assert damaged.removed_at is not None and not Path(damaged.path).exists()  # its altered copy is gone
    assert first.removed_at is None  # the source keeps 2 (its recompress asked): the damaged one went
    assert env.admin("verify", "--local", "--all")[0] == 0
    assert env.admin("prune", "--keep-versions", "1")[0] == 0 and not Path(first.path).exists()

    # Nothing left to repair from: the original gone and no older version kept.
    flip_a_byte(Path(third.path))
    code, out = env.admin("repair", str(ids[1]), "99", "--local", "--json")
    report = json.loads(out)
    assert code == 1 and report["repaired"] == []
    reasons = {u["id"]: u["reason"] for u in report["not_repaired"]}
    assert "no intact archive version" in reasons[ids[1]] and "no such source" in reasons[99]
    assert env.admin("repair", "--local")[0] == 2
    code, out = env.admin("repair", str(ids[0]), "--local", "--json")  # sound: nothing to do
    assert code == 0 and json.loads(out) == {"repaired": [], "not_repaired": [], "unmarked": []}


def test_repair_checks_a_marked_file_again_and_says_when_it_rebuilds_from_a_coarser_version(
    archive_env: ArchiveEnv,
) -> None:
    """A file verify marked while briefly missing is sound again: repair clears the mark and
    replaces nothing (until 0.4.0's review it deleted the file and re-encoded an older one)."""
    env = archive_env
    [photo] = write_photos(env.inbox, 1)
    [source] = env.archived([photo], ratio=48)
    _recompress(env, [source], 24, keep_versions=2)  # from the original: finer than the first
    photo.unlink()
    coarse, current = _versions(env, source)
    moved = Path(current.path).rename(env.root / "elsewhere.aic")  # a moment away
    assert env.admin("verify", "--local")[0] == 1
    moved.rename(current.path)

    code, out = env.admin("repair", "--all", "--local", "--json")
    report = json.loads(out)
    assert code == 0 and report["repaired"] == [] and [u["id"] for u in report["unmarked"]] == [source]
    assert [(v.id, v.damaged_at, v.removed_at) for v in _versions(env, source)] == [
        (coarse.id, None, None), (current.id, None, None)]
    assert Path(current.path).exists()

    flip_a_byte(Path(current.path))  # really damaged now: only the coarser version is left
    code, out = env.admin("repair", str(source), "--local")
    assert code == 0 and f"from version {coarse.id} at ratio" in out and "coarser than its own" in out
    assert "1 of them from a coarser one" in out
    *_, made = _versions(env, source)
    assert made.reference_version_id == coarse.id and made.target_ratio == current.target_ratio


def test_prune_frees_what_older_releases_and_crashes_left(archive_env: ArchiveEnv) -> None:
    env = archive_env
    ids = env.archived(write_photos(env.inbox, 2))
    _recompress(env, ids, 48, keep_versions=2)  # as release 0.3.0 did: the superseded file stays
    _forget_keep_versions(env)  # 0.3.0's recompress jobs asked for no keep-versions
    superseded = [v for s in ids for v in _versions(env, s) if v.superseded_by is not None]
    assert len(superseded) == 2 and all(Path(v.path).exists() for v in superseded)
    with session_on(env.engine) as session, session.begin():  # a crash after the mark, before the delete
        session.get(ArchiveVersion, superseded[0].id).removed_at = utcnow()
        running = enqueue_job(session, JobKind.VERIFY, ids[0])[0]
        assert lease.claim(session, lease.new_owner(), job_id=running.id) is not None
    stray = env.archive / f".img00.png.aic.job{running.id + 1}.0badf00d.tmp"
    held = env.archive / f".img00.png.aic.job{running.id}.0badf00d.tmp"
    for temp in (stray, held):
        temp.write_bytes(b"half a file")

    code, out = env.admin("prune", "--dry-run", "--json")
    planned = json.loads(out)
    assert code == 0 and planned["version_files"] == 2 and planned["temp_files"] == 1
    assert planned["bytes_freed"] == sum(v.bytes for v in superseded) + len(b"half a file")
    assert all(Path(v.path).exists() for v in superseded) and stray.exists()

    code, out = env.admin("prune", "--keep-versions", "2", "--json")
    assert code == 0 and json.loads(out)["version_files"] == 1  # the crash's; the other is kept
    code, out = env.admin("prune")  # each folder's keep-versions: 1
    assert code == 0 and "removed 1 superseded version file(s) and 0 temp file(s)" in out
    for source_id in ids:
        *old, current = _versions(env, source_id)
        assert all(v.removed_at is not None and not Path(v.path).exists() for v in old)
        assert current.removed_at is None and Path(current.path).exists()
    assert not stray.exists() and held.exists()  # a live lease's temp file is its job's
    assert sum(p.stat().st_size for p in env.archive.glob("*.aic")) == sum(
        _versions(env, s)[-1].bytes for s in ids
    )
    assert env.admin("prune", "--keep-versions", "0")[0] == 2
