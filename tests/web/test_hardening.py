"""What 0.4.0's review of the web server found, each checked against the real app and catalog:
originals served from the descriptor that was checked, as images only, never as pages; the
security headers; add and restore kept inside the server's roots; every POST behind the
token and recompress answers bounded; previews decoded once per size."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from aic_worker.admin.recompress_command import Item
from aic_worker.admin.worker_commands import record_file
from aic_worker.catalog.engine import session_factory
from aic_worker.jobs.parameters import CompressParameters
from aic_worker.web import api, originals
from aic_worker.web.headers import PAGE_POLICY
from tests.conftest import photo
from tests.web.conftest import TOKEN, Web, client_for

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # files, not SQL


def recorded(web: Web, path: Path) -> int:
    """`path` recorded as `aic-admin add` records it (no job run); its source id."""
    job, _ = record_file(
        session_factory(web.env.engine)(), CompressParameters(path, web.env.inbox, web.env.archive), 8
    )
    return job.source_id


def test_originals_are_served_from_the_checked_descriptor_as_images_only(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, inbox = web.client, web.env.inbox
    secret = web.env.root / "secret.txt"
    secret.write_bytes(b"the server's secret")
    checked = originals.open_original

    def swapped_after_the_check(path: Path, sha256: str, size: int) -> originals.OpenedOriginal | None:
        opened = checked(path, sha256, size)
        path.unlink()  # a user who can write the watched folder puts a link there meanwhile
        path.symlink_to(secret)
        return opened

    expected = web.photos[0].read_bytes()
    monkeypatch.setattr(api, "open_original", swapped_after_the_check)
    answer = client.get(f"/api/v1/sources/{web.ids[0]}/original")
    assert answer.status_code == 200 and answer.content == expected  # the checked file, not the link's
    monkeypatch.undo()
    assert client.get(f"/api/v1/sources/{web.ids[0]}/original").status_code == 404  # a link: never followed
    os.mkfifo(web.photos[1].with_suffix(".fifo"))
    web.photos[1].unlink()
    web.photos[1].with_suffix(".fifo").rename(web.photos[1])  # a FIFO can't hang the open
    assert client.get(f"/api/v1/sources/{web.ids[1]}/original").status_code == 404

    page = inbox / "page.html"
    page.write_text("<script>alert(sessionStorage.getItem('aic-api-token'))</script>")
    not_an_image = client.get(f"/api/v1/sources/{recorded(web, page)}/original")
    assert not_an_image.status_code == 404 and "not recorded as an image" in not_an_image.json()["detail"]
    disguised = inbox / "picture.html"  # an image whatever its name: served as what it is
    photo(24, seed=5).save(disguised, format="PNG")
    answer = client.get(f"/api/v1/sources/{recorded(web, disguised)}/original")
    assert (
        answer.headers["content-type"] == "image/png"
        and answer.headers["content-security-policy"] == "sandbox"
    )
    tiff = inbox / "scan.tif"  # not a type browsers show: a download
    photo(24, seed=6).save(tiff)
    answer = client.get(f"/api/v1/sources/{recorded(web, tiff)}/original")
    assert answer.status_code == 200 and answer.content == tiff.read_bytes()
    assert answer.headers["content-type"] == "image/tiff"
    assert answer.headers["content-disposition"].startswith('attachment; filename="scan.tif"')
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_every_response_carries_the_security_headers(web: Web) -> None:
    for url in ("/", "/sources", f"/sources/{web.ids[0]}", "/recompress", "/api/v1/stats", "/static/aic.js"):
        headers = web.client.get(url).headers
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", url
        assert (
            headers["referrer-policy"] == "no-referrer" and headers["content-security-policy"] == PAGE_POLICY
        )
    refused = web.client.get("/", headers={"Host": "attacker.example"})
    assert refused.status_code == 421 and refused.headers["x-frame-options"] == "DENY"


def test_add_and_restore_reach_only_the_servers_roots(web: Web) -> None:
    client, env = web.client, web.env
    restore = f"/api/v1/sources/{web.ids[0]}/restore"

    def refused(url: str, body: dict[str, object], *words: str) -> None:
        answer = client.post(url, json=body, headers=web.auth)
        assert answer.status_code == 403, answer.text
        assert all(word in answer.json()["detail"] for word in words), answer.json()

    refused(restore, {"output": "/etc"}, "/etc", "outside")
    refused(restore, {"output": str(env.root / "restored/../../../root/.ssh")}, "..")
    outside = env.root / "elsewhere"
    outside.mkdir()
    (env.inbox / "out-link").symlink_to(outside)  # inside a root, leading out of it
    refused(restore, {"output": str(env.inbox / "out-link" / "x")}, "out-link", "outside")
    assert (
        client.post(restore, json={"output": str(env.root / "restored")}, headers=web.auth).status_code == 200
    )

    stray = photo(24, seed=7)
    stray.save(outside / "stray.png")
    refused(
        "/api/v1/add", {"paths": [str(outside)], "ratio": 24, "policy": "delete"}, str(outside), "outside"
    )
    refused(
        "/api/v1/add", {"paths": [str(env.inbox / "out-link")], "ratio": 24, "policy": "delete"}, "outside"
    )
    inside = {"paths": [str(web.photos[0])], "ratio": 24}
    refused("/api/v1/add", {**inside, "archive": str(outside)}, "archive", "outside")
    refused("/api/v1/add", {**inside, "policy": "move", "done_dir": "/tmp"}, "done_dir", "outside")
    added = client.post("/api/v1/add", json={**inside, "policy": "delete"}, headers=web.auth)
    assert added.status_code == 200 and added.json()["known"][0]["path"] == str(web.photos[0])

    with client_for(env.engine, TOKEN, env.root / "home") as rootless:  # no roots: both refused
        answer = rootless.post(restore, json={"output": str(env.root / "restored")}, headers=web.auth)
        assert answer.status_code == 403 and "no roots" in answer.json()["detail"]
        answer = rootless.post("/api/v1/add", json=inside, headers=web.auth)
        assert answer.status_code == 403 and "AIC_API_ROOTS" in answer.json()["detail"]


def test_recompress_lists_at_most_limit_items_and_keeps_no_more(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded_items = 0
    record = Item.record

    def counted(item: Item) -> dict[str, object]:
        nonlocal recorded_items
        recorded_items += 1
        return record(item)

    monkeypatch.setattr(Item, "record", counted)
    body = {"ratio": 48, "all": True, "limit": 1}
    plan = web.client.post("/api/v1/recompress", json=body, headers=web.auth).json()
    assert len(plan["items"]) == 1 and plan["selected"] == 3 and plan["items_left_out"] == 2
    assert recorded_items == 1  # the others were counted, not kept
    done = web.client.post("/api/v1/recompress", json={**body, "dry_run": False}, headers=web.auth).json()
    assert len(done["queued"]) == 1 and done["queued_count"] == 3 and done["queued_left_out"] == 2
    assert done["published"] == 3 and len(web.published) == 3


def test_previews_are_made_at_a_few_sizes_each_decoded_once(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    previews = web.client.app.state.previews
    decode = previews._decode
    decodes: list[int] = []

    def slow_counted(version: object) -> Image.Image:
        decodes.append(1)
        time.sleep(0.2)  # long enough for the other requests to queue behind this one
        return decode(version)

    monkeypatch.setattr(previews, "_decode", slow_counted)
    url = f"/api/v1/sources/{web.ids[0]}/preview.png"
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda w=w: answers.append(web.client.get(url, params={"width": w}).status_code)
        )
        for w in (17, 100, 160, 150)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 4 and len(decodes) == 1  # four widths, one size, one decode
    web.client.get(url, params={"width": 2000})
    web.client.get(url)
    assert len(decodes) == 2  # above 1280 is the full image: one more
    cache = web.env.root / "home" / "previews"
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.png")) == ["160.png", "full.png"]
