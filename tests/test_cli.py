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


def test_a_giant_smiles_is_refused_before_rdkit_and_the_rest_of_the_batch_is_predicted(tmp_path, tiny_model_path):
    """A linear SMILES of 20,000 atoms segfaults RDKit's canonicalisation; it must cost one record, not the run."""
    molecules = tmp_path / "c.smi"
    molecules.write_text(f"CCO ethanol\n{'C' * 20000} giant\nClc1ccccc1 chlorobenzene\n")
    library, errors = tmp_path / "c.msp", tmp_path / "c.tsv"
    assert main(["predict", str(molecules), "-o", str(library), "--errors", str(errors),
                 "--model", str(tiny_model_path)]) == 0
    assert [record.name for record in iter_records(library)] == ["ethanol", "chlorobenzene"]
    rows = list(csv.DictReader(errors.open(), delimiter="\t"))
    assert [row["record"] for row in rows] == ["line 2 (giant)"]
    assert "longer than 1,000 characters" in rows[0]["reason"] and "(20,000 characters)" in rows[0]["reason"]
    assert len(rows[0]["reason"]) < 300, "the message quotes the start of the SMILES, not all of it"
    assert rows[0]["smiles"].endswith("... (20,000 characters)") and len(rows[0]["smiles"]) < 1100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.msp", "c.smi", "c.tsv"], "no temporary file left"


def test_output_paths_are_checked_before_any_work(tmp_path, tiny_model_path, fixtures_dir, caplog):
    molecules = tmp_path / "m.smi"
    molecules.write_text("CCO ethanol\n")
    library = tmp_path / "library.msp"
    # --errors equal to -o would replace the library with the errors table
    assert main(["predict", str(molecules), "-o", str(library), "--errors", str(library),
                 "--model", str(tiny_model_path)]) == 2
    assert "--errors" in caplog.text and "same file as -o/--output" in caplog.text and not library.exists()
    # -o onto the input would replace the molecules
    assert main(["predict", str(molecules), "-o", str(molecules), "--model", str(tiny_model_path)]) == 2
    assert molecules.read_text() == "CCO ethanol\n"
    # an --errors path that cannot be written fails at once, not after the library has been predicted
    # (its folder is a file here: a read-only folder would not stop root, who runs CI containers)
    caplog.clear()
    assert main(["predict", str(molecules), "-o", str(library), "--errors", str(molecules / "e.tsv"),
                 "--model", str(tiny_model_path)]) == 2
    assert "--errors" in caplog.text and "cannot write there" in caplog.text and not library.exists()
    # the same for search
    assert main(["search", str(fixtures_dir / "queries.mgf"), str(fixtures_dir / "nist_style.msp"),
                 "-o", str(tmp_path / "hits.tsv"), "--errors", str(tmp_path / "hits.tsv")]) == 2
    assert not (tmp_path / "hits.tsv").exists()


def test_names_with_line_breaks_or_nul_are_written_so_the_library_reads_back_whole(tmp_path, tiny_model_path):
    molecules = tmp_path / "m.csv"
    molecules.write_text('smiles,name\nc1ccccc1,"benz\r41 999\rene"\nCCO,"etha\u2028nol\x07"\nCCCO,propanol\n',
                         newline="")
    library = tmp_path / "library.msp"
    assert main(["predict", str(molecules), "-o", str(library), "--model", str(tiny_model_path)]) == 0
    problems: list = []
    records = list(iter_records(library, problems))
    assert problems == [] and [r.name for r in records] == ["benz 41 999 ene", "etha nol", "propanol"]
    assert b"\r" not in library.read_bytes()


@pytest.mark.parametrize("name, text", [
    ("nul.msp", "Name: ethanol\nSMILES: CCO\nNum Peaks: 1\n31 999\n\nName: bad\nSMILES: CC\x00C\nNum Peaks: 1\n"
                "43 999\n\nName: toluene\nSMILES: Cc1ccccc1\nNum Peaks: 1\n91 999\n"),
    ("open.mgf", "BEGIN IONS\nTITLE=ethanol\nSMILES=CCO\n31 999\nEND IONS\nBEGIN IONS\nTITLE=bad\nSMILES=CCC\n"
                 "43 999\nBEGIN IONS\nTITLE=toluene\nSMILES=Cc1ccccc1\n91 999\nEND IONS\n"),
])
def test_unreadable_input_records_are_listed_not_lost(tmp_path, tiny_model_path, name, text, capsys):
    molecules = tmp_path / name
    molecules.write_text(text)
    library, errors = tmp_path / "library.msp", tmp_path / "errors.tsv"
    assert main(["predict", str(molecules), "-o", str(library), "--errors", str(errors),
                 "--model", str(tiny_model_path)]) == 0
    assert [record.name for record in iter_records(library)] == ["ethanol", "toluene"]
    rows = list(csv.DictReader(errors.open(), delimiter="\t"))
    assert len(rows) == 1 and rows[0]["record"].startswith(f"{name[-3:].upper()} record 2 (line ")
    assert rows[0]["record"].endswith("(bad)")
    assert ("NUL" in rows[0]["reason"]) if name.endswith("msp") else ("no END IONS" in rows[0]["reason"])
    assert "Predicted 2 of 3 molecules" in capsys.readouterr().out


def test_a_damaged_gzip_input_keeps_what_was_read_and_says_where_it_broke(tmp_path, tiny_model_path):
    import gzip

    lines = "".join(f"{'C' * (1 + i % 12)}O alcohol{i}\n" for i in range(3000)).encode()
    data = gzip.compress(lines)
    (tmp_path / "cut.smi.gz").write_bytes(data[: len(data) // 2])  # a download that stopped half-way
    (tmp_path / "plain.smi.gz").write_bytes(b"CCO ethanol\n")  # not gzip at all
    for name in ("cut.smi.gz", "plain.smi.gz"):
        library, errors = tmp_path / f"{name}.msp", tmp_path / f"{name}.tsv"
        assert main(["predict", str(tmp_path / name), "-o", str(library), "--errors", str(errors),
                     "--model", str(tiny_model_path), "--keep-duplicates"]) == 0
        rows = list(csv.DictReader(errors.open(), delimiter="\t"))
        assert rows[-1]["record"].startswith(f"{name} after record ")
        assert "cannot be read beyond this point" in rows[-1]["reason"]
        written = len(list(iter_records(library)))
        assert written == (int(rows[-1]["record"].split()[-1]) if name == "cut.smi.gz" else 0)
    assert written == 0 and 0 < len(list(iter_records(tmp_path / "cut.smi.gz.msp"))) < 3000


def test_help_version_and_search_import_neither_torch_nor_lightning():
    """``--help``/``--version`` load no heavy library at all; ``search`` needs matchms but never torch."""
    code = ("import sys; from matchms_neims.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'lightning', 'torch_geometric', 'matchms') if m in sys.modules]; "
            "import matchms_neims.search, matchms_neims.io, matchms_neims.similarity, matchms_neims.workflow; "
            "print(','.join(heavy) or 'none', ','.join(m for m in ('torch', 'lightning', 'torch_geometric') "
            "if m in sys.modules) or 'none')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none", "none"]


def test_progress_bars_have_totals_and_quiet_silences_them(tmp_path, tiny_model_path):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\n# a comment\nCc1ccccc1 toluene\n\nCCCl chloroethane\n")
    library = tmp_path / "lib.msp"
    loud = subprocess.run([sys.executable, "-m", "matchms_neims.cli", "predict", str(smi), "-o", str(library),
                           "--model", str(tiny_model_path), "--featurize-workers", "0"],
                          capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0, loud.stderr
    assert "3/3" in loud.stderr  # the bar has a total (3 molecules; the comment and blank lines are not counted)
    searched = subprocess.run([sys.executable, "-m", "matchms_neims.cli", "search", str(library), str(library),
                               "-o", str(tmp_path / "hits.tsv")], capture_output=True, text=True, timeout=300)
    assert searched.returncode == 0 and "searching" in searched.stderr and "3/3" in searched.stderr
    for argv in (["-q", "predict"], ["predict"]):  # before or after the command
        quiet = subprocess.run([sys.executable, "-m", "matchms_neims.cli", *argv, str(smi), "-o", str(library),
                                "--model", str(tiny_model_path), "--featurize-workers", "0",
                                *([] if argv[0] == "-q" else ["--quiet"])],
                               capture_output=True, text=True, timeout=300)
        assert quiet.returncode == 0, quiet.stderr
        assert "predicting" not in quiet.stderr and "INFO" not in quiet.stderr
        assert "Predicted 3 of 3" in quiet.stdout
