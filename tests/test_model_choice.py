"""Where a model's weights are found: every model the package shipped stays decodable."""

from __future__ import annotations

from aic_worker import model_choice
from aic_worker.store.archive import file_sha256


def test_every_shipped_model_file_is_named_by_its_sha256() -> None:
    named = [p for p in model_choice.SHIPPED_DIR.glob("*.safetensors") if p != model_choice.SHIPPED_MODEL]
    assert named, "the previous default model must stay in the package"
    for path in named:
        assert file_sha256(path) == path.stem


def test_shipped_weights_finds_the_default_and_earlier_models() -> None:
    default_id = file_sha256(model_choice.SHIPPED_MODEL)
    assert model_choice.shipped_weights(default_id) == model_choice.SHIPPED_MODEL
    for path in model_choice.SHIPPED_DIR.glob("*.safetensors"):
        assert model_choice.shipped_weights(file_sha256(path)) == path
    assert model_choice.shipped_weights("0" * 64) is None


def test_shipped_models_lists_every_weights_file_of_the_package_by_id() -> None:
    shipped = model_choice.shipped_models()
    assert set(shipped.values()) == set(model_choice.SHIPPED_DIR.glob("*.safetensors"))
    assert shipped[file_sha256(model_choice.SHIPPED_MODEL)] == model_choice.SHIPPED_MODEL
    assert all(model_choice.shipped_weights(i) == p for i, p in shipped.items())
