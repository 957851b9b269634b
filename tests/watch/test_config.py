"""The TOML config and the flags: what they accept, and clear errors for what they don't."""

from __future__ import annotations

from pathlib import Path

import pytest

from aic_watch.config import BASE_EXTENSIONS, ConfigError, ObserverKind, load_config, make_folder
from aic_watch.main import build_parser, config_from_args
from aic_worker.jobs.parameters import IfBigger
from aic_worker.store.policy import Policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watch.toml"
    path.write_text(text)
    return path


def test_a_full_config_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
stability_window = 3.5
rescan_interval = 60

[[folders]]
path = "{tmp_path}/inbox"
ratio = 32
archive = "{tmp_path}/archive"
policy = "move"
done_dir = "{tmp_path}/done"
observer = "polling"
poll_interval = 10
recursive = false
patterns = ["*.PNG", ".jpg", "tiff"]
keep_versions = 3
if_bigger = "leave"
min_psnr = 32

[[folders]]
path = "{tmp_path}/scans"
ratio = 8
archive = "{tmp_path}/archive"
policy = "delete"
min_psnr = 0

[[folders]]
path = "{tmp_path}/photos"
ratio = 8
archive = "{tmp_path}/archive"
""",
    )
    config = load_config(path, env={"AIC_MODEL_ID": "abc"})
    assert (config.stability_window, config.rescan_interval, config.model_id) == (3.5, 60.0, "abc")
    first, scans, second = config.folders
    assert first.path == tmp_path / "inbox" and first.archive == tmp_path / "archive"
    assert (first.ratio, first.policy, first.done_dir) == (32.0, Policy.MOVE, tmp_path / "done")
    assert (first.observer, first.poll_interval, first.recursive) == (ObserverKind.POLLING, 10.0, False)
    assert first.patterns == {"png", "jpg", "tiff"}
    assert second.patterns >= set(BASE_EXTENSIONS) and second.policy is Policy.KEEP
    assert (first.keep_versions, first.if_bigger, second.keep_versions, second.if_bigger) == (
        3, IfBigger.LEAVE, 1, IfBigger.PASSTHROUGH)
    assert {k: first.job_parameters("/x.png")[k] for k in ("keep_versions", "if_bigger", "min_psnr")} == {
        "keep_versions": 3, "if_bigger": "leave", "min_psnr": 32.0}  # what the worker reads back
    # 0: no floor for the folder; absent: the worker's AIC_MIN_PSNR, which the job leaves to it.
    assert (first.min_psnr, scans.min_psnr, second.min_psnr) == (32.0, 0.0, None)
    assert "min_psnr" not in second.job_parameters("/x.png")
    assert (second.observer, second.recursive, config.folders[2].done_dir) == (
        ObserverKind.INOTIFY,
        True,
        None,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stability_window = 2\n", "at least one [[folders]]"),
        ("window = 2\n[[folders]]\npath='a'\nratio=8\narchive='b'\n", "unknown settings ['window']"),
        ("[[folders]]\npath='a'\nratio=8\n", "missing ['archive']"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nration=3\n", "unknown ['ration']"),
        ("[[folders]]\npath='a'\nratio=0.5\narchive='b'\n", "must be a number above 1"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\npolicy='move'\n", "needs a done_dir"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\npolicy='shred'\n", "'shred' is not a valid Policy"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nobserver='fanotify'\n", "not a valid ObserverKind"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nkeep_versions=0\n", "keep_versions must be a whole"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nif_bigger='grow'\n", "not a valid IfBigger"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nmin_psnr=-1\n", "min_psnr must be 0 (off) or a"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nmin_psnr='high'\n", "min_psnr must be 0 (off)"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\npatterns=['psd']\n", "unsupported patterns ['psd']"),
        ("[[folders]]\npath='a'\nratio=8\narchive='a/..'\n", "inside its archive root"),
        (
            "[[folders]]\npath='a'\nratio=8\narchive='x'\n[[folders]]\npath='a/b'\nratio=8\narchive='x'\n",
            "overlap",
        ),
        (
            "[[folders]]\npath='a'\nratio=8\narchive='b'\npoll_interval=0\n",
            "poll_interval must be a positive",
        ),
        ("[[folders]]\npath=1\nratio=8\narchive='b'\n", "a setting has the wrong type"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\nrecursive='no'\n", "must be true or false"),
        ("[[folders]]\npath='a'\nratio=8\narchive='b'\npatterns='png'\n", "must be a list"),
        ("[[folders]\n", "not valid TOML"),
    ],
)
def test_config_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        load_config(write(tmp_path, text), env={})
    assert message in str(error.value)


def test_a_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/watch.toml")


def test_flags_for_the_simple_case(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            str(tmp_path / "in"),
            "--ratio",
            "24",
            "--archive",
            str(tmp_path / "arc"),
            "--polling",
            "--poll-interval",
            "2",
            "--policy",
            "delete",
            "--stability-window",
            "1",
            "--patterns",
            "png,jpg",
            "--keep-versions",
            "2",
            "--if-bigger",
            "leave",
            "--min-psnr",
            "28.5",
        ]
    )
    config = config_from_args(args, parser)
    (folder,) = config.folders
    assert folder == make_folder(
        tmp_path / "in",
        ratio=24,
        archive=tmp_path / "arc",
        observer="polling",
        poll_interval=2,
        policy="delete",
        patterns=["png", "jpg"],
        keep_versions=2,
        if_bigger="leave",
        min_psnr=28.5,
    )
    assert config.stability_window == 1.0


def test_flags_or_a_config_file_but_not_neither(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parser = build_parser()
    monkeypatch.delenv("AIC_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args([]), parser)
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args([str(tmp_path), "--ratio", "8"]), parser)
    path = write(tmp_path, f"[[folders]]\npath='{tmp_path}/a'\nratio=8\narchive='{tmp_path}/b'\n")
    monkeypatch.setenv("AIC_CONFIG", str(path))
    assert config_from_args(parser.parse_args([]), parser).folders[0].path == tmp_path / "a"


def test_keep_versions_on_the_command_line_is_a_whole_number_of_at_least_one(tmp_path: Path) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--keep-versions", "0"])
    assert parser.parse_args([str(tmp_path)]).keep_versions == 1


def test_min_psnr_on_the_command_line_is_zero_or_a_positive_number_of_db(tmp_path: Path) -> None:
    parser = build_parser()
    for bad in ("-1", "nan", "high"):
        with pytest.raises(SystemExit):
            parser.parse_args([str(tmp_path), "--min-psnr", bad])
    assert parser.parse_args([str(tmp_path)]).min_psnr is None  # the worker's AIC_MIN_PSNR
    assert parser.parse_args([str(tmp_path), "--min-psnr", "0"]).min_psnr == 0
