"""`aic-admin compress | decompress | info` on real files; what `aic-admin train` passes on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aic_worker.admin.main import main
from aic_worker.codec import bitstream, rate_control, step_profile
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
    assert info["step_profile_tilt"] == step_profile.tilt_of(info["step_code"]) / step_profile.TILT_UNIT > 0
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


def test_info_refuses_what_a_decoder_refuses(tmp_path: Path, capsys) -> None:
    """A version-3 file whose step code carries a tilt unpacks, but no decoder reads it:
    ``info`` says why instead of printing a tilt."""
    golden = Path(__file__).parents[1] / "codec" / "fixtures" / "v3-3e893778-72x40.aic"
    f = bitstream.unpack(golden.read_bytes())
    hostile = replace(f.header, step_code=step_profile.with_tilt(f.header.step_code, 4))
    bad = tmp_path / "tilted-v3.aic"
    bad.write_bytes(bitstream.pack(bitstream.AicFile(hostile, f.metadata, f.groups)))
    assert main(["info", str(bad)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aic-admin: {bad}: ") and "version 3 lacks" in line


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


# Each mode the codec stores, as a small file Pillow opens in that mode: (file name, mode).
# I;16L has no file of its own (Pillow opens it as I;16): tests/codec/test_restored_modes.py.
MODE_FILES = {
    "1": "bilevel.png", "L": "grey.png", "LA": "grey-alpha.png", "P": "palette.gif", "RGB": "rgb.jpg",
    "RGBA": "rgba.png", "CMYK": "cmyk.jpg", "YCbCr": "ycbcr.tif", "I;16": "deep.png",
    "I;16B": "deep-be.tif", "I": "deep32.tif",
}
# What restore and decompress write for each by default: (suffix, mode read back). PNG
# stores 16-bit grey big-endian and Pillow reads it back as I;16, the same values.
RESTORED = {
    "1": (".png", "1"), "L": (".png", "L"), "LA": (".png", "LA"), "P": (".png", "P"),
    "RGB": (".png", "RGB"), "RGBA": (".png", "RGBA"), "CMYK": (".tif", "CMYK"),
    "YCbCr": (".tif", "YCbCr"), "I;16": (".png", "I;16"), "I;16B": (".png", "I;16"), "I": (".tif", "I"),
}


def write_mode_files(folder: Path, modes: Iterable[str], size: int = 32) -> dict[str, Path]:
    """A small generated image in each of `modes` (keys of MODE_FILES), written to `folder`.

    Encoding costs most of these tests' time: each test takes a few modes end to end, and
    tests/codec/test_restored_modes.py checks every mode's file without encoding.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rgb = photo_like(size, size)
    grey = rgb.convert("L")
    alpha = Image.linear_gradient("L").resize(grey.size)  # smooth: its lossless block stays small
    deep = (np.asarray(grey, dtype=np.int32) * 251 + 7).astype(np.uint16)  # uses the low byte too
    images = {
        "1": grey.convert("1"), "L": grey,
        "LA": Image.merge("LA", (grey, alpha)),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "RGB": rgb,
        "RGBA": Image.merge("RGBA", (*rgb.split(), alpha)), "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"), "I;16": Image.fromarray(deep),
        "I;16B": Image.frombytes("I;16B", grey.size, deep.astype(">u2").tobytes()),
        "I": Image.fromarray(deep.astype(np.int32)),
    }
    paths = {}
    for mode in modes:
        path = folder / MODE_FILES[mode]
        images[mode].save(path)
        with Image.open(path) as check:
            assert check.mode == mode, (path, check.mode)
        paths[mode] = path
    return paths


def assert_restored(path: Path, mode: str) -> None:
    """`path` is what restoring an image of `mode` writes by default."""
    suffix, read_mode = RESTORED[mode]
    assert path.suffix == suffix, (mode, path)
    with Image.open(path) as img:
        assert img.mode == read_mode and img.size == (32, 32), (mode, img.mode)
        if mode in ("I;16", "I;16B", "I"):
            assert np.asarray(img).max() > 255, mode  # 16-bit values, not clipped to 8 bits


def test_every_mode_decompresses_to_a_format_that_holds_it(model_file: Path, tmp_path: Path) -> None:
    sources = write_mode_files(tmp_path / "in", ["CMYK", "I;16B", "LA"])  # TIFF; PNG 16-bit; alpha
    aics = tmp_path / "aic"
    assert main(["compress", *map(str, sources.values()), "--ratio", "8", "-o", str(aics),
                 "--model", str(model_file)]) == 0
    out = tmp_path / "out"
    assert main(["decompress", *map(str, sorted(aics.iterdir())), "-o", str(out),
                 "--model", str(model_file)]) == 0
    for mode, src in sources.items():
        [restored] = out.glob(src.stem + ".*")  # deep.png.aic -> deep.png, not deep.png.png
        assert_restored(restored, mode)
    # a file named by -o: its suffix picks the format; PNG can't hold CMYK, so RGB (documented)
    one = tmp_path / "cmyk.png"
    assert main(["decompress", str(aics / "cmyk.jpg.aic"), "-o", str(one), "--model", str(model_file)]) == 0
    with Image.open(one) as img:
        assert (img.format, img.mode) == ("PNG", "RGB")


def test_decompress_does_not_overwrite_what_it_wrote_in_the_same_run(
    model_file: Path, tmp_path: Path, capsys
) -> None:
    for name in ("a.png", "a.jpg"):
        photo_like(32, 32).save(tmp_path / name)
    aics = tmp_path / "aic"
    main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), "--ratio", "8", "-o", str(aics),
          "--model", str(model_file)])
    out = tmp_path / "out"
    assert main(["decompress", str(aics / "a.jpg.aic"), str(aics / "a.png.aic"), "-o", str(out),
                 "--model", str(model_file)]) == 1
    assert [p.name for p in out.iterdir()] == ["a.png"]
    assert f"{out / 'a.png'} was written from {aics / 'a.jpg.aic'} in this run" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-1", "16", "nan", "x"])
def test_train_refuses_a_step_min_outside_the_range(bad: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path), "--minutes", "1", "--out", str(tmp_path / "m.safetensors"),
              "--step-min", bad])
    assert "--step-min" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "bf16", "step_min"),
                         [([], False, None), (["--precision", "bf16"], True, None),
                          (["--precision", "fp32"], False, None), (["--step-min", "0.05"], False, 0.05)])
def test_train_passes_the_precision_and_step_min_on(
    flag: list[str], bf16: bool, step_min: float | None, tmp_path: Path, monkeypatch
) -> None:
    """Without --step-min the objective's own STEP_MIN is trained on (the CLI may not import it)."""
    from aic_worker.training import loop
    from aic_worker.training.objective import STEP_MIN

    step_min = STEP_MIN if step_min is None else step_min

    calls: list[dict] = []
    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: calls.append(kwargs) or out)
    assert main(["train", "--data", str(tmp_path), "--minutes", "1", "--out", str(out), *flag]) == 0
    assert calls[0]["bf16"] is bf16 and calls[0]["quantiser"] == "rdoq" and calls[0]["step_min"] == step_min
