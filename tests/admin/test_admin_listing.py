"""`aic-admin ls | show | stats | quarantine` on a real catalog holding real archives."""

from __future__ import annotations

import json

from tests.admin.conftest import ArchiveEnv
from tests.conftest import RATIO, write_photos

LS_KEYS = {
    "id",
    "source_path",
    "state",
    "target_ratio",
    "achieved_ratio",
    "archive_path",
    "archive_bytes",
    "psnr",
}


def test_ls_show_stats_and_quarantine_describe_the_archive(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 2) + write_photos(env.inbox / "sub", 1, size=64, prefix="deep")
    bad = env.inbox / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    ids = env.archived([*photos, bad])

    code, out = env.admin("ls", "--json")
    records = json.loads(out)
    assert code == 0 and [r["id"] for r in records] == ids
    assert all(set(r) >= LS_KEYS for r in records)
    by_path = {r["source_path"]: r for r in records}
    for photo in photos:
        record = by_path[str(photo)]
        assert record["state"] == "done" and record["target_ratio"] == RATIO
        assert record["achieved_ratio"] >= RATIO and record["psnr"] > 0
        assert (
            record["archive_bytes"]
            == (env.archive / photo.relative_to(env.inbox)).with_name(photo.name + ".aic").stat().st_size
        )
    assert by_path[str(bad)]["state"] == "quarantined" and by_path[str(bad)]["archive_path"] is None
    assert "not a readable image" in by_path[str(bad)]["reason"]

    def listed(*options: str) -> list[str]:
        code, out = env.admin("ls", "--json", *options)
        assert code == 0
        return [r["source_path"] for r in json.loads(out)]

    assert listed("--state", "quarantined") == [str(bad)]
    assert listed("--folder", str(env.inbox / "sub")) == [str(photos[2])]
    assert listed("--id", str(ids[0]), str(ids[3])) == [str(photos[0]), str(bad)]
    assert sorted(listed("--below-ratio", "1000")) == sorted(map(str, photos))
    assert listed("--older-than", "1h") == []
    assert len(listed("--older-than", "0s")) == 4
    code, out = env.admin("ls")
    assert code == 0 and photos[0].name in out and "quarantined" in out
    assert env.admin("ls", "--older-than", "soon")[0] == 2  # a usage error

    code, out = env.admin("show", str(ids[0]), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["source_path"] == str(photos[0])
    assert len(shown["versions"]) == 1 and shown["versions"][0]["current"]
    assert [j["kind"] for j in shown["jobs"]] == ["compress"] and shown["paths"][0]["path"] == str(photos[0])
    assert env.admin("show", "9999")[0] == 1

    code, out = env.admin("stats", "--json")
    stats = json.loads(out)
    archived = [by_path[str(p)] for p in photos]
    assert code == 0 and stats["files"] == 3 and stats["sources"] == 4
    assert stats["bytes_in"] == sum(p.stat().st_size for p in photos)
    assert stats["bytes_out"] == sum(r["archive_bytes"] for r in archived)
    assert stats["space_saved"] == stats["bytes_in"] - stats["bytes_out"] > 0
    assert stats["states"]["done"] == 3 and stats["states"]["quarantined"] == 1
    assert stats["ratio"]["min"] == min(r["achieved_ratio"] for r in archived)
    assert sum(b["files"] for b in stats["ratio_histogram"]) == 3
    assert stats["psnr"]["max"] == max(r["psnr"] for r in archived)
    [folder] = stats["folders"]
    assert folder["folder"] == str(env.inbox) and folder["files"] == 3 and folder["sources"] == 4
    code, out = env.admin("stats")
    assert code == 0 and "saved" in out and str(env.inbox) in out

    code, out = env.admin("quarantine", "--json")
    report = json.loads(out)
    assert [s["source_path"] for s in report["sources"]] == [str(bad)]
    assert [(j["kind"], j["source_path"]) for j in report["jobs"]] == [("compress", str(bad))]
    assert "not a readable image" in report["jobs"][0]["reason"]
    code, out = env.admin("quarantine")
    assert code == 0 and "bad.png" in out

    code, out = env.admin("quarantine", "--all", "--json")
    assert code == 0 and json.loads(out) == {"sources": report["sources"], "jobs": report["jobs"]}
    assert (report["source_count"], report["job_count"], report["next_after"]) == (1, 1, None)
    code, out = env.admin("quarantine", "--json", "--after", f"{ids[3]}:{report['jobs'][0]['job_id']}")
    assert code == 0 and json.loads(out)["sources"] == json.loads(out)["jobs"] == []
    code, out = env.admin("quarantine", "--all")
    assert code == 0 and "bad.png" in out
    assert env.admin("quarantine", "--after", "7")[0] == 2  # SOURCE_ID:JOB_ID
