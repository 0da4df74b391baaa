"""Model files: pickle-free loading, a digest that refuses changed files, older versions, clear errors."""

from __future__ import annotations

import functools
import os

import pytest
import torch

from matchms_neims.checkpoint import ALLOW_UNVERIFIED_ENV, FORMAT_VERSION, CheckpointError, load_model, payload_digest


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


def test_older_and_newer_versions(tmp_path, tiny_model_path, monkeypatch):
    payload = _payload(tiny_model_path)
    older = {key: value for key, value in payload.items() if key != "sha256"} | {"version": 1}
    torch.save(older, tmp_path / "v1.pt")
    # version 1 had no digest: a file claiming it (random weights, say) is refused unless the user opts in
    with pytest.raises(CheckpointError, match="without a digest, and not a known released file"):
        load_model(tmp_path / "v1.pt")
    assert load_model(tmp_path / "v1.pt", allow_unverified=True).metadata["name"] == "tiny"
    monkeypatch.setenv(ALLOW_UNVERIFIED_ENV, "1")
    assert load_model(tmp_path / "v1.pt").metadata["name"] == "tiny"
    torch.save(payload | {"version": FORMAT_VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="Upgrade matchms-neims"):
        load_model(tmp_path / "future.pt")
    torch.save({key: value for key, value in payload.items() if key != "state_dict"}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="lacks state_dict"):
        load_model(tmp_path / "empty.pt")


def _resaved(payload: dict, path):
    """A file with changed settings and a valid digest (as a forger, or a buggy exporter, would write it)."""
    payload = dict(payload)
    payload["sha256"] = payload_digest(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda p: p["model_config"].update(hidden_size=200_000), "the settings ask for .* of shape"),
    (lambda p: p["model_config"].update(hiden_size=64), r"unknown settings \['hiden_size'\]"),
    (lambda p: p["model_config"].update(input_transform="cube"), "the model settings are invalid"),
    (lambda p: p["featurizer"].update(n_bits=1024), "gives fingerprints of 1024 values, but the model reads"),
    (lambda p: p["featurizer"].update(formula=True), "gives the formula count vector, but the model does not"),
    (lambda p: p["featurizer"].update(max_mz=200), "max_mz 200 is not the model's"),
    (lambda p: p["featurizer"].update(colour="red"), "the featurizer settings are invalid"),
    (lambda p: p.update(state_dict={k: v for k, v in list(p["state_dict"].items())[1:]}),
     "the weights do not fit the settings"),
])
def test_settings_that_do_not_fit_the_weights_or_featurizer_are_refused_before_allocation(
        tmp_path, tiny_model_path, change, message, monkeypatch):
    payload = _payload(tiny_model_path)
    change(payload)
    built = []
    import matchms_neims.models.neims as neims

    original = neims.NeimsMLP.__init__

    @functools.wraps(original)
    def recording_init(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the default device while the model is built
        original(self, *args, **kwargs)

    monkeypatch.setattr(neims.NeimsMLP, "__init__", recording_init)
    with pytest.raises(CheckpointError, match=message):
        load_model(_resaved(payload, tmp_path / "changed.pt"))
    assert "cpu" not in built, "nothing was built with real memory before the settings were checked"
