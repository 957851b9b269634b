"""A restore asked over the API and run by the worker's pipeline writes a format that holds
the image's mode, as `aic-admin restore` does: a CMYK source comes back as a CMYK TIFF (before
0.4.0's fix the job wrote PNG and failed with "cannot write mode CMYK as PNG")."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from aic_worker.admin.job_batch import run_batch
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import JobKind, JobState
from tests.admin.conftest import ArchiveEnv
from tests.admin.test_codec_commands import write_mode_files
from tests.web.conftest import TOKEN, client_for


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # files, not SQL: one backend
def test_a_cmyk_source_restored_through_the_api_and_worker_is_a_cmyk_tiff(archive_env: ArchiveEnv) -> None:
    env = archive_env
    cmyk = write_mode_files(env.inbox, ["CMYK"])["CMYK"]
    [source_id] = env.archived([cmyk], ratio=8)
    out = env.root / "restored"
    with client_for(env.engine, TOKEN, env.root / "home", roots=[out]) as client:
        client.app.state.publish = lambda job_id, kind: True  # run below, in this process
        answer = client.post(
            f"/api/v1/sources/{source_id}/restore",
            json={"output": str(out)},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    states = run_batch(session_factory(env.engine), [job_id], JobKind.RESTORE, local=True, device="cpu")
    assert states == {job_id: JobState.DONE}
    [restored] = out.iterdir()
    assert restored == Path(answer.json()["output"]) and restored.suffix == ".tif"  # the API says where
    with Image.open(restored) as image:
        assert image.format == "TIFF" and image.mode == "CMYK" and image.size == (32, 32)
