"""Sharded library generation through Lightning: same library as one pass, resumable, refuses a changed job."""

from __future__ import annotations

import json

import pytest

import matchms_neims.sharded as sharded
from matchms_neims.cli import main
from matchms_neims.io import iter_records
from matchms_neims.predictor import NeimsPredictor

SMILES = ["CCO", "c1ccccc1O", "CC(=O)OC", "bad(", "CCCCCCN", "ClC(Cl)Cl", "CC(C)CC(=O)O", "c1ccncc1", "CCOCC",
          "C1CCCCC1", "O=C=O"]


@pytest.fixture
def molecules(tmp_path):
    path = tmp_path / "molecules.smi"
    path.write_text("".join(f"{smiles}\tm{i}\n" for i, smiles in enumerate(SMILES)))
    return path


def _predict(molecules, output, model, **options):
    predictor = NeimsPredictor(model, batch_size=2)
    return sharded.predict_sharded(molecules, output, predictor, shard_size=3, batch_size=2, progress=False,
                                   errors_path=output.with_suffix(".errors.tsv"), **options)


def test_sharded_library_has_every_good_molecule_in_order(molecules, tmp_path, tiny_model_path):
    output = tmp_path / "library.msp"
    summary = _predict(molecules, output, tiny_model_path)
    names = [record.metadata["compound_name"] for record in iter_records(output)]
    assert names == [f"m{i}" for i, smiles in enumerate(SMILES) if smiles != "bad("]
    assert (summary.n_input, summary.n_written, summary.n_failed) == (len(SMILES), len(SMILES) - 1, 1)
    errors = output.with_suffix(".errors.tsv").read_text().splitlines()
    assert errors[0] == "record\tsmiles\treason" and len(errors) == 2 and "line 4" in errors[1]
    assert not (tmp_path / "library.msp.shards").exists()


def test_interrupted_run_resumes_to_the_same_library(molecules, tmp_path, tiny_model_path, monkeypatch):
    reference = tmp_path / "reference.msp"
    _predict(molecules, reference, tiny_model_path)
    output = tmp_path / "library.msp"
    real_build = sharded.build_library
    built = []

    def interrupted(molecule_list, path, *args, **kwargs):
        if "shard-000002" in str(path):
            raise RuntimeError("killed")
        built.append(str(path))
        return real_build(molecule_list, path, *args, **kwargs)

    monkeypatch.setattr(sharded, "build_library", interrupted)
    with pytest.raises(RuntimeError, match="killed"):
        _predict(molecules, output, tiny_model_path)
    assert not output.exists() and len(built) == 2
    shard_dir = tmp_path / "library.msp.shards"
    assert sorted(path.name for path in shard_dir.glob("*.json")) == [
        "manifest.json", "shard-000000.json", "shard-000000.keys.json", "shard-000001.json", "shard-000001.keys.json"]
    monkeypatch.setattr(sharded, "build_library", real_build)
    with pytest.raises(ValueError, match="settings differ"):  # another job in the same folder
        _predict(molecules, output, tiny_model_path, min_relative_intensity=0.01, resume=True)
    summary = _predict(molecules, output, tiny_model_path, resume=True)
    assert output.read_bytes() == reference.read_bytes()
    assert summary.n_written == len(SMILES) - 1
    assert output.with_suffix(".errors.tsv").read_text() == reference.with_suffix(".errors.tsv").read_text()


def test_duplicates_across_shards_are_found_as_in_a_plain_run(tmp_path, tiny_model_path):
    from matchms_neims.library import build_library

    molecules = tmp_path / "repeats.smi"  # ethanol in shards 0, 1 and 2 (shard_size 3); benzene twice in shard 1
    molecules.write_text("CCO\tethanol\nCCC\tpropane\nCCCC\tbutane\nOCC\tethanol again\nc1ccccc1\tbenzene\n"
                         "C1=CC=CC=C1\tbenzene again\nCCCCC\tpentane\nC(C)O\tethanol third\n")
    plain = tmp_path / "plain.msp"
    build_library(str(molecules), plain, predictor=NeimsPredictor(tiny_model_path, batch_size=2), batch_size=2,
                  errors_path=tmp_path / "plain.tsv", progress=False)
    output = tmp_path / "sharded.msp"
    summary = _predict(molecules, output, tiny_model_path)
    assert output.read_bytes() == plain.read_bytes()
    assert [record.name for record in iter_records(output)] == ["ethanol", "propane", "butane", "benzene", "pentane"]
    assert summary.n_written == 5 and summary.n_failed == 3
    reasons = {error.record: error.reason for error in summary.errors}
    assert reasons["line 4 (ethanol again)"].startswith("duplicate of line 1 (ethanol) (same InChIKey")
    assert reasons["line 8 (ethanol third)"].startswith("duplicate of line 1 (ethanol)")
    assert reasons["line 6 (benzene again)"].startswith("duplicate of line 5 (benzene)")


def test_resume_recognises_the_input_by_content(molecules, tmp_path, tiny_model_path, monkeypatch):
    import os

    output = tmp_path / "library.msp"
    real_build = sharded.build_library

    def interrupted(molecule_list, path, *args, **kwargs):
        if "shard-000001" in str(path):
            raise RuntimeError("killed")
        return real_build(molecule_list, path, *args, **kwargs)

    monkeypatch.setattr(sharded, "build_library", interrupted)
    with pytest.raises(RuntimeError, match="killed"):
        _predict(molecules, output, tiny_model_path)
    monkeypatch.setattr(sharded, "build_library", real_build)
    stat = molecules.stat()
    text = molecules.read_text()
    molecules.write_text(text.replace("CCO\t", "CCN\t", 1))  # same size, then the old mtime put back
    os.utime(molecules, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ValueError, match="the input differ"):
        _predict(molecules, output, tiny_model_path, resume=True)


def test_fresh_run_starts_over(molecules, tmp_path, tiny_model_path):
    output = tmp_path / "library.msp"
    stale = tmp_path / "library.msp.shards"
    stale.mkdir()
    (stale / "shard-000000.json").write_text(json.dumps({"n_input": 99, "n_written": 99}))
    summary = _predict(molecules, output, tiny_model_path)
    assert summary.n_input == len(SMILES)


def test_predict_command_with_devices(molecules, tmp_path, tiny_model_path, capsys):
    output = tmp_path / "library.mgf"
    assert main(["predict", str(molecules), "-o", str(output), "--model", str(tiny_model_path), "--devices", "1",
                 "--shard-size", "4", "--errors", str(tmp_path / "errors.tsv")]) == 0
    assert "Predicted 10 of 11 molecules" in capsys.readouterr().out
    assert sum(1 for _ in iter_records(output)) == 10
    assert main(["predict", str(molecules), "-o", str(output), "--shard-size", "0"]) == 2


def test_sigkill_then_resume_gives_the_uninterrupted_library(tmp_path, tiny_model_path):
    """A predict process killed with SIGKILL mid-run and restarted with --resume writes the same bytes."""
    import signal
    import subprocess
    import sys
    import time

    molecules = tmp_path / "many.smi"
    molecules.write_text("".join(f"{'C' * (1 + i % 30)}O\tm{i}\n" if i % 97 else "bad(\n" for i in range(3000)))
    command = [sys.executable, "-m", "matchms_neims.cli", "predict", str(molecules), "--model", str(tiny_model_path),
               "--shard-size", "100", "--batch-size", "16"]
    reference = tmp_path / "reference.msp"
    subprocess.run([*command, "-o", str(reference), "--errors", str(tmp_path / "reference.tsv")], check=True,
                   capture_output=True)
    output = tmp_path / "library.msp"
    process = subprocess.Popen([*command, "-o", str(output), "--errors", str(tmp_path / "errors.tsv")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = tmp_path / "library.msp.shards"
    deadline = time.monotonic() + 120
    while len(list(shard_dir.glob("shard-*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists(), "killed before the merge"
    finished = len(list(shard_dir.glob("shard-*.json")))
    assert 3 <= finished < 30
    subprocess.run([*command, "-o", str(output), "--errors", str(tmp_path / "errors.tsv"), "--resume"], check=True,
                   capture_output=True)
    assert output.read_bytes() == reference.read_bytes()
    assert (tmp_path / "errors.tsv").read_text() == (tmp_path / "reference.tsv").read_text()
