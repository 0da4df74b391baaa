"""Benchmarks on the full shared data (excluded by default; run with ``pytest -m benchmark -s``)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matchms_neims.io import iter_records
from matchms_neims.predictor import bundled_model_path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(not (SHARED_DATA / "nist17_molecules.smi").is_file(), reason="shared data not found"),
    pytest.mark.skipif(not bundled_model_path().is_file(), reason="bundled model not built"),
]


def test_predict_nist17_library(tmp_path):
    """All 23,199 NIST 17 molecules -> MSP library with the bundled model: < 90 s, peak memory < 3 GB."""
    output = tmp_path / "nist17.msp"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "matchms_neims.cli", "predict", str(SHARED_DATA / "nist17_molecules.smi"),
                    "-o", str(output), "--errors", str(tmp_path / "errors.tsv")], check=True)
    elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    n_entries = sum(1 for _ in iter_records(output))
    print(f"\npredict: {n_entries} library entries in {elapsed:.1f} s, peak RSS {peak_gb:.2f} GB")
    assert n_entries > 23000
    assert elapsed < 90
    assert peak_gb < 3
