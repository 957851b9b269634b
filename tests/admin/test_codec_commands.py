"""`aic-admin compress | decompress | info` on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from aic_worker.admin.main import main
from aic_worker.codec import rate_control
from tests.codec.conftest import photo_like


def test_compress_info_decompress_one_file(model_file: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "a.png"
    photo_like(96, 80).save(src)
    aic = tmp_path / "a.aic"
    assert main(["compress", str(src), "--ratio", "32", "-o", str(aic), "--model", str(model_file),
                 "--device", "cpu"]) == 0
    assert aic.stat().st_size <= 96 * 80 * 3 / 32
    capsys.readouterr()
    assert main(["info", str(aic), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["mode"]) == (96, 80, "RGB")
    assert info["achieved_ratio"] >= 32
    code, filtered = rate_control.split_code(info["step_code"])
    assert info["step"] == pytest.approx(rate_control.step_of(code), rel=1e-5)
    assert info["synthesis"] == ("learned" if filtered else "block transform only")
    out = tmp_path / "a.out.png"
    assert main(["decompress", str(aic), "-o", str(out), "--model", str(model_file)]) == 0
    with Image.open(out) as img:
        assert img.size == (96, 80)


def test_several_inputs_go_to_a_folder_and_bad_ones_fail(model_file: Path, tmp_path: Path, capsys) -> None:
    for name in ("x", "y"):
        photo_like(64, 64).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["compress", *(str(tmp_path / n) for n in ("x.png", "y.png", "broken.png")),
                 "--ratio", "24", "-o", str(out), "--model", str(model_file)])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["x.png.aic", "y.png.aic"]
    # stderr is not a terminal here: the error line, and no progress bar
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aic-admin: {tmp_path / 'broken.png'}: ")


def test_info_rejects_a_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aic"
    bad.write_bytes(b"\x89AIC" + bytes(100))
    assert main(["info", str(bad)]) == 1


def test_ratio_is_required(model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.aic")])
    assert exc.value.code == 2


def test_decompress_finds_the_shipped_model_each_file_names(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written with an earlier release's default model still decodes without --model."""
    import shutil

    from aic_worker import model_choice
    from aic_worker.store.archive import file_sha256

    shipped = tmp_path / "models"
    shipped.mkdir()
    old_id = file_sha256(model_file)
    shutil.copy(model_file, shipped / f"{old_id}.safetensors")
    monkeypatch.setattr(model_choice, "SHIPPED_DIR", shipped)
    monkeypatch.setattr(model_choice, "SHIPPED_MODEL", shipped / "default.safetensors")
    src, aic, out = tmp_path / "a.png", tmp_path / "a.aic", tmp_path / "a.out.png"
    photo_like(64, 48).save(src)
    assert main(["compress", str(src), "--ratio", "16", "-o", str(aic), "--model", str(model_file)]) == 0
    assert main(["decompress", str(aic), "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size == (64, 48)
    (shipped / f"{old_id}.safetensors").unlink()
    assert main(["decompress", str(aic), "-o", str(out)]) == 1
