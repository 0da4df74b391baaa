"""Model files: pickle-free loading, a digest that refuses changed files, older versions, clear errors."""

from __future__ import annotations

import os

import pytest
import torch

from matchms_neims.checkpoint import FORMAT_VERSION, CheckpointError, load_model


def _payload(path):
    return torch.load(path, weights_only=True)


def test_model_file_round_trip_carries_a_digest(tiny_model_path):
    payload = _payload(tiny_model_path)
    assert payload["version"] == FORMAT_VERSION == 2 and len(payload["sha256"]) == 64
    loaded = load_model(tiny_model_path)
    assert loaded.metadata["name"] == "tiny"


@pytest.mark.parametrize("change", ["weight", "config", "metadata"])
def test_changed_model_file_is_refused(tmp_path, tiny_model_path, change):
    payload = _payload(tiny_model_path)
    if change == "weight":
        key = next(key for key, tensor in payload["state_dict"].items() if tensor.is_floating_point())
        payload["state_dict"][key] = payload["state_dict"][key].clone()
        payload["state_dict"][key].view(-1)[0] += 0.5
    elif change == "config":
        payload["featurizer"]["radius"] = 3
    else:
        payload["metadata"]["name"] = "someone else's model"
    torch.save(payload, tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match="tampered or corrupted"):
        load_model(tmp_path / "changed.pt")


def test_corrupted_bytes_are_refused(tmp_path, tiny_model_path):
    data = bytearray(tiny_model_path.read_bytes())
    for position in range(len(data) // 3, len(data) // 3 + 64):  # scribble over the middle of the file
        data[position] ^= 0xFF
    (tmp_path / "corrupt.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "corrupt.pt")
    (tmp_path / "cut.pt").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="not a matchms-neims model file"):
        load_model(tmp_path / "cut.pt")


class _RunsCode:
    def __reduce__(self):
        return os.system, ("touch pickle_ran",)


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "matchms-neims-model", "payload": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a matchms-neims model file"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "pickle_ran").exists()


def test_older_and_newer_versions(tmp_path, tiny_model_path):
    payload = _payload(tiny_model_path)
    older = {key: value for key, value in payload.items() if key != "sha256"} | {"version": 1}
    torch.save(older, tmp_path / "v1.pt")
    assert load_model(tmp_path / "v1.pt").metadata["name"] == "tiny"  # version 1 had no digest: still loads
    torch.save(payload | {"version": FORMAT_VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="Upgrade matchms-neims"):
        load_model(tmp_path / "future.pt")
    torch.save({key: value for key, value in payload.items() if key != "state_dict"}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="lacks state_dict"):
        load_model(tmp_path / "empty.pt")
