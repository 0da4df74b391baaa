"""The ``benchmark`` command: latency, throughput, memory and size per model and backend, JSON and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matchms_neims.benchmark import BenchmarkCase, run_case
from matchms_neims.cli import main
from matchms_neims.timing import batch_throughput, latency_summary, single_molecule_latency

SMILES = ["CCO", "c1ccccc1O", "CC(=O)OC", "CCCCCCN", "not a smiles", "ClC(Cl)Cl", "CC(C)CC(=O)O", "c1ccncc1"]


def test_latency_summary_matches_numpy():
    values = np.arange(1, 101, dtype=float)
    summary = latency_summary(values)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p95_ms"] == pytest.approx(np.percentile(values, 95))
    assert summary["p99_ms"] == pytest.approx(np.percentile(values, 99))
    assert summary["std_ms"] == pytest.approx(values.std())


def test_latency_skips_molecules_that_cannot_be_featurised(tiny_predictor):
    latency = single_molecule_latency(tiny_predictor, SMILES)
    assert latency["n_molecules"] == len(SMILES) - 1
    for kind in ("with_featurization", "model_only"):
        assert 0 < latency[kind]["p50_ms"] <= latency[kind]["p95_ms"] <= latency[kind]["p99_ms"]
    with pytest.raises(ValueError, match="none of the benchmark molecules"):
        single_molecule_latency(tiny_predictor, ["not a smiles"])


def test_throughput_counts_predicted_molecules_and_restores_batch_size(tiny_predictor):
    before = tiny_predictor.batch_size
    assert batch_throughput(tiny_predictor, SMILES, 3) > 0
    assert tiny_predictor.batch_size == before


def test_run_case_reports_every_measure(tiny_model_path):
    result = run_case(BenchmarkCase("tiny", str(tiny_model_path)), SMILES, latency_molecules=4, batch_sizes=[1, 4],
                      threads=1)
    assert result["parameters"] > 0 and result["model_file_mb"] > 0
    assert result["fp32_size_mb"] == pytest.approx(result["parameters"] * 4 / 1e6)
    assert result["latency"]["n_molecules"] == 4
    assert set(result["throughput_mol_per_s"]) == {"1", "4"}
    assert all(value > 0 for value in result["throughput_mol_per_s"].values())
    assert result["peak_rss_mb"] > 50


def test_benchmark_command_writes_json_and_plot(tiny_model_path, tmp_path, capsys):
    molecules = tmp_path / "molecules.smi"
    molecules.write_text("\n".join(SMILES) + "\n")
    output = tmp_path / "bench"
    code = main(["benchmark", str(molecules), "-o", str(output), "--model", f"tiny={tiny_model_path}",
                 "--backend", "torch", "--latency-molecules", "3", "--batch-sizes", "1", "2", "--threads", "2",
                 "--featurize-workers", "0", "1"])
    assert code == 0
    report = json.loads((output / "benchmark.json").read_text())
    assert report["settings"] == {"molecules": len(SMILES), "latency_molecules": 3, "batch_sizes": [1, 2],
                                  "threads": 2}
    assert report["machine"]["logical_cores"] >= 1
    plain, pooled = report["results"]  # the second case featurises in a worker process, started in the case's
    assert plain["label"] == "tiny" and plain["backend"] == "torch" and plain["model_name"] == "tiny"
    assert (plain["featurize_workers"], plain["model_threads"]) == (0, 2)
    assert (pooled["featurize_workers"], pooled["model_threads"]) == (1, 1) and "error" not in pooled
    assert (output / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "tiny (torch): single molecule p50" in printed
    assert "tiny (torch, 1 featurize workers): single molecule p50" in printed


def test_benchmark_command_rejects_a_model_without_label(tmp_path):
    molecules = tmp_path / "molecules.smi"
    molecules.write_text("CCO\n")
    assert main(["benchmark", str(molecules), "-o", str(tmp_path / "out"), "--model", "model.pt"]) == 2


def test_onnx_cases_report_their_cosine_to_torch(tiny_model_path):
    pytest.importorskip("onnxruntime")
    result = run_case(BenchmarkCase("tiny", str(tiny_model_path), "onnx-int8"), SMILES, latency_molecules=5,
                      batch_sizes=[4], threads=1)
    assert 0.98 < result["cosine_to_torch"]["min"] <= result["cosine_to_torch"]["mean"] <= 1.0 + 1e-6
