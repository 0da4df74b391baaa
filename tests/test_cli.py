"""The matchms-neims command line end to end: predict a library, then search query spectra against it."""

from __future__ import annotations

import csv
import subprocess
import sys

from matchms_neims.cli import main
from matchms_neims.io import iter_records


def test_predict_then_search(tmp_path, tiny_model_path, fixtures_dir):
    molecules = tmp_path / "candidates.smi"
    molecules.write_text("Cc1ccccc1 toluene\nClc1ccccc1 chlorobenzene\nC1CC broken\nCCO ethanol\n")
    library = tmp_path / "library.msp"
    errors = tmp_path / "errors.tsv"
    assert main(["predict", str(molecules), "-o", str(library), "--model", str(tiny_model_path),
                 "--errors", str(errors), "--batch-size", "2"]) == 0
    entries = list(iter_records(library))
    assert [e.metadata["compound_name"] for e in entries] == ["toluene", "chlorobenzene", "ethanol"]
    assert all(e.metadata["smiles"] and e.metadata["inchikey"] for e in entries)
    rows = list(csv.DictReader(errors.open(), delimiter="\t"))
    assert len(rows) == 1 and "unparsable" in rows[0]["reason"] and rows[0]["smiles"] == "C1CC"

    hits = tmp_path / "hits.tsv"
    assert main(["search", str(fixtures_dir / "queries.mgf"), str(library), "-o", str(hits), "--top-k", "2"]) == 0
    table = list(csv.DictReader(hits.open(), delimiter="\t"))
    assert len(table) == 4
    assert {r["query_name"] for r in table} == {"toluene query", "unknown 2"}
    assert all(0 <= float(r["score"]) <= 1 for r in table)


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "matchms_neims.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("predict", "search", "train", "evaluate"):
        assert command in result.stdout


def test_missing_input_is_a_clear_error(tmp_path, tiny_model_path, capsys):
    code = main(["predict", str(tmp_path / "missing.smi"), "-o", str(tmp_path / "x.msp"),
                 "--model", str(tiny_model_path)])
    assert code == 2
    assert not (tmp_path / "x.msp").exists()
