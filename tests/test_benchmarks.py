"""Benchmarks on the full shared data (excluded by default; run with ``pytest -m benchmark -s``).

They measure the targets of the end-to-end issue on this machine: predicting the 23,199 NIST 17
molecules (< 90 s, peak memory < 3 GB) and searching 1,000 MassBank spectra against a 25,000-entry
library (< 15 s, scores equal to matchms CosineGreedy); and the search target of the deployment issue:
1,000 queries against 1,000,000 predicted entries in under 5 minutes and 4 GB.
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from matchms.similarity import CosineGreedy

from matchms_neims.io import iter_records, write_spectra
from matchms_neims.predictor import bundled_model_path
from matchms_neims.spectra import bin_spectrum, vector_to_spectrum

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(not (SHARED_DATA / "nist17_molecules.smi").is_file(), reason="shared data not found"),
    pytest.mark.skipif(not bundled_model_path().is_file(), reason="bundled model not built"),
]


def _cli(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "matchms_neims.cli", *args], check=True)
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def nist17_library(tmp_path_factory) -> tuple[Path, float, float]:
    """All 23,199 NIST 17 molecules -> MSP library with the bundled model (timed, peak memory measured)."""
    root = tmp_path_factory.mktemp("bench")
    output = root / "nist17.msp"
    elapsed = _cli("predict", str(SHARED_DATA / "nist17_molecules.smi"), "-o", str(output),
                   "--errors", str(root / "errors.tsv"))
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return output, elapsed, peak_gb


def test_predict_nist17_library(nist17_library):
    output, elapsed, peak_gb = nist17_library
    n_entries = sum(1 for _ in iter_records(output))
    print(f"\npredict: {n_entries} library entries in {elapsed:.1f} s, peak RSS {peak_gb:.2f} GB")
    assert n_entries > 22000
    assert elapsed < 90
    assert peak_gb < 3


def test_search_1000_queries_against_25000(nist17_library, tmp_path):
    """1,000 MassBank queries vs 25,000 entries (predicted NIST 17 + MassBank spectra): < 15 s, = CosineGreedy."""
    library_records = list(iter_records(nist17_library[0]))
    massbank = iter_records(SHARED_DATA / "massbank_ei.msp")
    queries = list(islice(massbank, 1000))
    library_records += list(islice(massbank, 25000 - len(library_records)))
    assert len(library_records) == 25000
    library, query_file, hits = tmp_path / "library.msp", tmp_path / "queries.msp", tmp_path / "hits.tsv"
    write_spectra(library_records, library)
    write_spectra(queries, query_file)
    elapsed = _cli("search", str(query_file), str(library), "-o", str(hits), "--top-k", "10")
    print(f"\nsearch: 1000 queries x 25000 library spectra in {elapsed:.1f} s (process start and reading included)")
    assert elapsed < 15

    rows = list(csv.DictReader(hits.open(), delimiter="\t"))
    assert len(rows) == 10000
    # compare with CosineGreedy on exactly what was searched (the files hold intensities rounded to base peak 999)
    queries, library_records = list(iter_records(query_file)), list(iter_records(library))
    cosine = CosineGreedy(tolerance=0.5, mz_power=1.0, intensity_power=0.5)

    def unit(record):  # the search is unit resolution: compare with CosineGreedy on the binned spectra
        return vector_to_spectrum(bin_spectrum(record.mz, record.intensities, 1000))

    for row in rows[::37]:
        expected = cosine.pair(unit(queries[int(row["query_index"])]), unit(library_records[int(row["library_index"])]))
        assert float(row["score"]) == pytest.approx(float(expected["score"]), abs=1e-5)
        assert int(row["matched_peaks"]) == int(expected["matches"])
    assert np.isfinite([float(r["score"]) for r in rows]).all()


def _cli_peak_rss(*args: str) -> tuple[float, float]:
    """Run a command in a fresh interpreter; its wall time (s) and its own peak RSS (GB)."""
    code = ("import resource, sys; from matchms_neims.cli import main; code = main(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak_kb = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return elapsed, peak_kb / 1024**2


def test_search_1000_queries_against_1m_predicted_entries(nist17_library, tmp_path):
    """1,000 MassBank queries vs 1,000,000 entries (the predicted NIST 17 library repeated): < 5 min, < 4 GB."""
    text = nist17_library[0].read_text(encoding="utf-8")
    records = [record for record in text.split("\n\n") if record.strip()]
    library = tmp_path / "library_1m.msp"
    n_entries = 1_000_000
    with open(library, "w", encoding="utf-8") as handle:
        for start in range(0, n_entries, len(records)):
            handle.write("\n\n".join(records[: min(len(records), n_entries - start)]) + "\n\n")
    queries = tmp_path / "queries.msp"
    write_spectra(list(islice(iter_records(SHARED_DATA / "massbank_ei.msp"), 1000)), queries)
    hits = tmp_path / "hits.tsv"
    elapsed, peak_gb = _cli_peak_rss("search", str(queries), str(library), "-o", str(hits), "--top-k", "10")
    print(f"\nsearch: 1000 queries x {n_entries:,} library spectra in {elapsed:.1f} s, peak RSS {peak_gb:.2f} GB")
    rows = list(csv.DictReader(hits.open(), delimiter="\t"))
    assert len(rows) == 10000
    assert max(int(row["library_index"]) for row in rows) < n_entries
    assert elapsed < 300
    assert peak_gb < 4


def test_100k_smiles_with_5_percent_bad_lines(tmp_path):
    """100,000 lines, 5% of them bad: the library holds exactly the good molecules, every bad line is listed."""
    from matchms_neims.chemistry import MoleculeError, describe, parse_smiles

    good_smiles = []
    for line in (SHARED_DATA / "nist17_molecules.smi").read_text().splitlines():
        try:
            if line.strip() and describe(parse_smiles(line.split()[0])).nominal_mass <= 500:
                good_smiles.append(line.split()[0])
        except MoleculeError:
            pass
    bad_kinds = ["C1CC(", "not a molecule", "*C(=O)O", "C" * 45, "c1ccccc1c", "[Xx]C", "C(C)(C)(C)(C)C", "", "]]"]
    rng = np.random.default_rng(0)
    n_lines, n_bad = 100_000, 5_000
    bad_positions = set(rng.choice(n_lines, n_bad, replace=False).tolist())
    lines, good_names, bad_records = [], [], []
    for index in range(n_lines):
        if index in bad_positions:
            name = f"bad {index}"
            lines.append(f"{bad_kinds[index % len(bad_kinds)]}\t{name}")
            bad_records.append(f"line {index + 1} ({name})")
        else:
            name = f"good {index}"
            lines.append(f"{good_smiles[index % len(good_smiles)]}\t{name}")
            good_names.append(name)
    molecules = tmp_path / "mixed.smi"
    molecules.write_text("\n".join(lines) + "\n")
    library, errors = tmp_path / "mixed.msp", tmp_path / "errors.tsv"
    elapsed = _cli("predict", str(molecules), "-o", str(library), "--errors", str(errors), "--keep-duplicates")
    written = [record.name for record in iter_records(library)]
    rows = list(csv.DictReader(errors.open(), delimiter="\t"))
    kinds = ("unparsable", "wildcard", "above the model's range", "no SMILES")
    reasons = Counter(next((kind for kind in kinds if kind in row["reason"]), row["reason"]) for row in rows)
    print(f"\n100k lines, 5% bad: {len(written)} written, {len(rows)} listed in {elapsed:.1f} s; "
          f"reasons {dict(reasons)}")
    assert written == good_names
    assert [row["record"] for row in rows] == bad_records and all(row["reason"] for row in rows)
