"""The JSON API against a real app and catalog (SQLite and PostgreSQL): the same documents as
the CLI's --json, previews decoded and cached, originals, and writes behind the token.

Archiving the test images is what takes the time here, so each test checks a group of routes
on one archive.
"""

from __future__ import annotations

import io
import json
import stat

import pytest
from PIL import Image

from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.jobs.parameters import CompressParameters, RecompressParameters
from aic_worker.web import api
from tests.conftest import write_photos
from tests.web.conftest import Web, client_for


def cli_json(web: Web, *argv: str) -> object:
    code, out = web.env.admin(*argv, "--json")
    assert code == 0
    return json.loads(out)


def test_reads_answer_with_the_clis_json_documents(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    client = web.client
    assert client.get("/api/v1/stats").json() == cli_json(web, "stats")
    assert client.get("/api/v1/quarantine").json() == cli_json(web, "quarantine")
    paged = client.get("/api/v1/quarantine", params={"limit": 1, "after": "0:0"}).json()
    assert paged == cli_json(web, "quarantine", "--limit", "1", "--after", "0:0") and paged["job_count"] == 1
    assert client.get("/api/v1/quarantine", params={"after": "x"}).status_code == 422
    assert "(1; given up on" in client.get("/quarantine", params={"after": "0:0"}).text
    assert client.get(f"/api/v1/sources/{web.ids[0]}").json() == cli_json(web, "show", str(web.ids[0]))
    page = client.get("/api/v1/sources", params={"limit": 3}).json()
    assert page["items"] == cli_json(web, "ls")[:3] and page["next_offset"] == 3
    assert client.get("/api/v1/sources", params={"offset": 3}).json()["next_offset"] is None

    def listed(**params: object) -> list[int]:
        answer = client.get("/api/v1/sources", params=params)
        assert answer.status_code == 200, answer.text
        return [item["id"] for item in answer.json()["items"]]

    assert listed(state="quarantined") == [web.ids[3]]
    assert listed(folder=str(web.env.inbox / "sub")) == [web.ids[2]]
    assert listed(q="deep") == [web.ids[2]]
    assert listed(after=web.ids[1], limit=1) == [web.ids[2]]
    assert client.get("/api/v1/sources", params={"state": "lost"}).status_code == 422
    assert client.get("/api/v1/sources/999999").status_code == 404
    assert "/api/v1/sources/{source_id}/preview.png" in client.get("/api/v1/openapi.json").json()["paths"]
    rebound = {"Host": "attacker.example:8470"}  # DNS rebinding: another site's name for 127.0.0.1
    assert client.get("/api/v1/stats", headers=rebound).status_code == 421
    assert client.get("/healthz", headers=rebound).json() == {"status": "ok"}  # probes use any name

    def away() -> int:
        raise ConnectionError("no broker here")

    monkeypatch.setattr(api, "queue_depth", away)
    queue = client.get("/api/v1/queue").json()
    assert (
        queue["broker"].startswith("unreachable") and queue["workers"] == [] and queue["queue_depth"] is None
    )
    assert queue["jobs"]["quarantined"] == 1 and queue["jobs"]["done"] == 3


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # files, not SQL: one backend
def test_previews_are_decoded_scaled_and_cached_privately_and_originals_served(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = web.client
    source = client.get(f"/api/v1/sources/{web.ids[0]}").json()
    full = client.get(f"/api/v1/sources/{web.ids[0]}/preview.png")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(full.content)).size == (source["width"], source["height"])
    assert full.headers["content-security-policy"] == "sandbox"  # a file, never a page
    small = client.get(f"/api/v1/sources/{web.ids[0]}/preview.png", params={"width": 32})
    assert Image.open(io.BytesIO(small.content)).size == (96, 96)  # rounded up to 160: never enlarged

    cache = web.env.root / "home" / "previews"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = sorted(cache.iterdir())
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    (web.env.archive / "img00.png.aic").unlink()  # served from the cache from now on
    assert (
        client.get(f"/api/v1/sources/{web.ids[0]}/preview.png", params={"width": 32}).content == small.content
    )

    altered = web.env.archive / "img01.png.aic"
    altered.write_bytes(altered.read_bytes()[:-7] + b"garbage")
    answer = client.get(f"/api/v1/sources/{web.ids[1]}/preview.png")
    assert answer.status_code == 409 and "sha256" in answer.json()["detail"]
    assert client.get(f"/api/v1/sources/{web.ids[3]}/preview.png").status_code == 404  # never archived
    assert client.get(f"/api/v1/sources/{web.ids[0]}/preview.png?width=5").status_code == 422

    previews = client.app.state.previews
    monkeypatch.setattr(previews, "max_bytes", len(small.content) + 10)  # room for one small preview
    client.get(f"/api/v1/sources/{web.ids[2]}/preview.png", params={"width": 16})
    assert [p.name.endswith("-160.png") for p in cache.glob("*.png")] == [True]  # the least recent went

    original = client.get(f"/api/v1/sources/{web.ids[0]}/original")
    assert original.status_code == 200 and original.content == web.photos[0].read_bytes()
    assert original.headers["content-type"] == "image/png" and "content-disposition" not in original.headers
    web.photos[0].write_bytes(web.photos[1].read_bytes())  # replaced: not the recorded content
    assert client.get(f"/api/v1/sources/{web.ids[0]}/original").status_code == 404
    web.photos[2].unlink()
    assert client.get(f"/api/v1/sources/{web.ids[2]}/original").status_code == 404


def test_writes_need_the_token_retry_and_recompress_queue_jobs(web: Web) -> None:
    client = web.client
    quarantined = client.get("/api/v1/quarantine").json()["jobs"][0]["job_id"]
    body = {"job_ids": [quarantined], "quarantined": True}
    assert client.post("/api/v1/retry", json=body).status_code == 401
    wrong = client.post("/api/v1/retry", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "AIC_API_TOKEN" in wrong.json()["detail"]
    with client_for(web.env.engine, None, web.env.root / "home") as read_only:
        refused = read_only.post("/api/v1/retry", json=body, headers=web.auth)
        assert refused.status_code == 403 and "disabled" in refused.json()["detail"]
        assert read_only.get("/api/v1/stats").status_code == 200

    assert client.post("/api/v1/retry", json={**body, "limit": 1001}, headers=web.auth).status_code == 422
    answer = client.post("/api/v1/retry", json=body, headers=web.auth)
    assert answer.status_code == 200 and answer.json() == {
        "retried": [quarantined], "published": 1, "retried_count": 1, "limit": 100, "retried_left_out": 0
    }
    assert web.published == [quarantined]
    with session_factory(web.env.engine)() as session:
        job = session.get(Job, quarantined)
        assert job.state is JobState.PENDING and job.attempts == 0 and job.quarantine_reason is None
    assert client.get("/api/v1/quarantine").json()["jobs"] == []
    by_source = client.post(f"/api/v1/sources/{web.ids[0]}/retry", headers=web.auth).json()
    assert by_source["retried"] == [] and by_source["retried_count"] == 0  # nothing failed there

    plan = {"ratio": 48, "all": True, "dry_run": True}
    assert client.post("/api/v1/recompress", json=plan).status_code == 401  # every POST needs the token
    answer = client.post("/api/v1/recompress", json=plan, headers=web.auth)
    assert answer.status_code == 200
    listed = {"limit": 100, "items_left_out": 0}  # the CLI's document, and how much of it is listed
    assert answer.json() == {**cli_json(web, "recompress", "--ratio", "48", "--all", "--dry-run"), **listed}
    assert answer.json()["to_encode"] == 3
    truncating = client.post("/api/v1/recompress", json={**plan, "method": "truncate"}, headers=web.auth)
    assert truncating.json() == {
        **cli_json(web, "recompress", "--ratio", "48", "--all", "--dry-run", "--method", "truncate"),
        **listed,
    }
    assert client.post("/api/v1/recompress", json={**plan, "dry_run": False}).status_code == 401
    assert client.post("/api/v1/recompress", json={"ratio": 48}, headers=web.auth).status_code == 422
    assert (
        client.post("/api/v1/recompress", json={**plan, "older_than": "soon"}, headers=web.auth).status_code
        == 422
    )
    assert (
        client.post("/api/v1/recompress", json={**plan, "limit": 1001}, headers=web.auth).status_code == 422
    )
    one = {**plan, "dry_run": False, "all": False, "ids": [web.ids[0]]}
    done = client.post("/api/v1/recompress", json=one, headers=web.auth)
    assert done.status_code == 200, done.text
    queued = done.json()["queued"]
    assert done.json()["queued_count"] == 1 and done.json()["queued_left_out"] == 0
    assert [q["id"] for q in queued] == [web.ids[0]] and web.published[-1] == queued[0]["job_id"]
    with session_factory(web.env.engine)() as session:
        job = session.get(Job, queued[0]["job_id"])
        assert job.kind is JobKind.RECOMPRESS and job.state is JobState.PENDING and job.target_ratio == 48
        assert job.parameters == RecompressParameters().to_json()  # as the CLI's: the same work is one job


def test_restore_and_add_queue_jobs_for_the_workers(web: Web) -> None:
    client = web.client
    out = web.env.root / "restored"
    answer = client.post(f"/api/v1/sources/{web.ids[2]}/restore", json={"output": str(out)}, headers=web.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == str(out / "sub" / "deep00.png")
    unarchived = client.post(
        f"/api/v1/sources/{web.ids[3]}/restore", json={"output": str(out)}, headers=web.auth
    )
    assert unarchived.status_code == 409
    relative = client.post(f"/api/v1/sources/{web.ids[2]}/restore", json={"output": "here"}, headers=web.auth)
    assert relative.status_code == 422

    new = web.env.inbox / "new"
    files = write_photos(new, 2, size=80, prefix="fresh")  # other content than the archived ones
    missing = str(web.env.inbox / "no-such")
    paths = [str(new), str(web.photos[0]), missing]
    added = client.post("/api/v1/add", json={"paths": paths, "ratio": 24}, headers=web.auth).json()
    assert [a["path"] for a in added["queued"]] == list(map(str, files)), added
    assert [k["path"] for k in added["known"]] == [str(web.photos[0])]
    assert [f["path"] for f in added["failed"]] == [missing]
    assert web.published[1:] == [a["job_id"] for a in added["queued"]]


def test_add_takes_nothing_back_from_the_archive_it_names(web: Web) -> None:
    """A folder given to add that holds the archive root: the archive's files are AIC's, skipped
    by the watcher's rule as `aic-admin add` skips them."""
    top = web.env.inbox / "with-archive"
    files = write_photos(top, 1, size=72, prefix="kept")
    write_photos(top / "archive", 1, size=72, prefix="ours")  # as if a stored file were there
    body = {"paths": [str(top)], "ratio": 24, "archive": str(top / "archive")}
    added = web.client.post("/api/v1/add", json=body, headers=web.auth)
    assert added.status_code == 200, added.text
    assert [a["path"] for a in added.json()["queued"]] == list(map(str, files))


def test_add_carries_a_folders_settings_into_its_jobs(web: Web) -> None:
    """keep_versions, if_bigger and min_psnr, as `aic-admin add --keep-versions/--if-bigger/--min-psnr`."""
    files = write_photos(web.env.inbox / "settings", 1, size=72, prefix="set")
    body = {"paths": [str(files[0])], "ratio": 24, "keep_versions": 3, "if_bigger": "leave", "min_psnr": 31}
    added = web.client.post("/api/v1/add", json=body, headers=web.auth)
    assert added.status_code == 200, added.text
    with session_factory(web.env.engine)() as session:
        job = session.get(Job, added.json()["queued"][0]["job_id"])
        params = CompressParameters.from_json(job.parameters)
    assert (params.keep_versions, params.if_bigger.value, params.min_psnr) == (3, "leave", 31)
    refused = web.client.post("/api/v1/add", json={**body, "keep_versions": 0}, headers=web.auth)
    assert refused.status_code == 422
