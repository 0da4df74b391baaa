"""The matchms-neims command line end to end: predict a library, then search query spectra against it."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

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


def test_search_skips_and_lists_unreadable_records(tmp_path, fixtures_dir, capsys):
    queries = tmp_path / "queries.msp"
    queries.write_text("Name: good query\nNum Peaks: 2\n41 100\n43 999\n\nName: nan query\nNum Peaks: 2\n41 nan\n"
                       "43 999\n\nName: cut query\nNum Peaks: 3\n41 5\n")
    hits, errors = tmp_path / "hits.tsv", tmp_path / "unreadable.tsv"
    assert main(["search", str(queries), str(fixtures_dir / "nist_style.msp"), "-o", str(hits), "--errors",
                 str(errors)]) == 0
    assert "1 queries searched" in capsys.readouterr().out
    rows = list(csv.DictReader(errors.open(), delimiter="\t"))
    assert [(row["file"], row["record"]) for row in rows] == [("queries.msp", "nan query"),
                                                               ("queries.msp", "cut query")]
    assert "NaN" in rows[0]["reason"] and rows[0]["line"] == "8" and "truncated" in rows[1]["reason"]


def test_predict_gives_every_awkward_molecule_a_spectrum_or_a_reason(tmp_path):
    lines = {
        "CCO": "ethanol",
        "C1CC(": "unparsable",
        "C[NH3+].[Cl-]": "salt",
        "C[N+](C)(C)C": "quaternary cation",
        "[CH3]": "methyl radical",
        "[13CH3]C(=O)C": "labelled acetone",
        "CC[Se]CC": "selenide",
        "*CC": "wildcard",
        "C" * 40: "tetracontane, above m/z 500",
        "O=C(O)" + "C" * 300: "huge",
        "OCC": "ethanol again",
        "": "no structure",  # a name without a SMILES
    }
    molecules = tmp_path / "awkward.smi"
    molecules.write_text("".join(f"{smiles}\t{name}\n" for smiles, name in lines.items()))
    library, errors = tmp_path / "library.msp", tmp_path / "errors.tsv"
    assert main(["predict", str(molecules), "-o", str(library), "--errors", str(errors)]) == 0
    written = {record.name: record.metadata for record in iter_records(library)}
    reasons = {row["record"]: row["reason"] for row in csv.DictReader(errors.open(), delimiter="\t")}
    assert set(written) == {"ethanol", "salt", "quaternary cation", "methyl radical", "labelled acetone", "selenide"}
    assert written["salt"]["standardization"] == "kept the largest of 2 fragments; neutralised"
    assert written["salt"]["smiles"] == "CN" and written["labelled acetone"]["nominal_mass"] == "59"
    assert len(written) + len(reasons) == len(lines)
    assert "unparsable" in reasons["line 2 (unparsable)"] and "wildcard" in reasons["line 8 (wildcard)"]
    assert "above the model's range" in reasons["line 9 (tetracontane, above m/z 500)"]
    assert "above the model's range" in reasons["line 10 (huge)"]
    assert reasons["line 11 (ethanol again)"].startswith("duplicate of line 1 (ethanol) (same InChIKey")
    assert reasons["line 12 (no structure)"] == "no SMILES given"


def test_predictions_are_bit_identical_across_runs(tmp_path, fixtures_dir):
    """Two fresh processes with the same settings write byte-identical libraries (spectra and metadata)."""
    outputs = []
    for run in range(2):
        output = tmp_path / f"run{run}.msp"
        subprocess.run([sys.executable, "-m", "matchms_neims.cli", "predict", str(fixtures_dir / "molecules_small.smi"),
                        "-o", str(output), "--threads", "2"], check=True, capture_output=True)
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"Num Peaks") >= 8


def test_featurize_workers_auto_splits_the_cores(monkeypatch):
    from matchms_neims import cli

    monkeypatch.setattr(cli, "available_cores", lambda: 2)
    assert cli.featurize_workers_and_threads("auto", 0) == (1, 1)
    assert cli.featurize_workers_and_threads("auto", 0, sharded=True) == (0, 0)  # ranks share the cores already
    assert cli.featurize_workers_and_threads("auto", 4) == (1, 4)  # --threads given: kept
    assert cli.featurize_workers_and_threads("0", 0) == (0, 0)
    monkeypatch.setattr(cli, "available_cores", lambda: 16)
    assert cli.featurize_workers_and_threads("auto", 0) == (8, 8)
    assert cli.featurize_workers_and_threads("3", 0) == (3, 13)
    monkeypatch.setattr(cli, "available_cores", lambda: 1)
    assert cli.featurize_workers_and_threads("auto", 0) == (0, 0)
    with pytest.raises(ValueError, match="featurize-workers"):
        cli.featurize_workers_and_threads("-1", 0)
