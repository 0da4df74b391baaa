"""Tests of matchms_neims.library: reading molecule files and building predicted libraries."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from matchms_neims.io import format_mgf_record, format_msp_record, iter_records
from matchms_neims.library import (
    LibrarySummary,
    MoleculeFileError,
    _library_peaks,
    build_library,
    read_molecules,
)
from matchms_neims.predictor import MoleculeInput

FIXTURES = Path(__file__).parent / "fixtures"
SMI_FIXTURE = FIXTURES / "molecules_small.smi"
CSV_FIXTURE = FIXTURES / "molecules_small.csv"

TEN_SMILES = ["CCO", "CC(=O)C", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC", "CCCCCCCC",
              "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "OCC(O)CO", "Oc1ccccc1", "ClC(Cl)Cl"]


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    """A predictor on a tiny untrained model (fast, deterministic)."""
    import torch

    from matchms_neims.checkpoint import save_model
    from matchms_neims.featurize import Featurizer
    from matchms_neims.models import NeimsMLP
    from matchms_neims.predictor import NeimsPredictor

    torch.manual_seed(0)
    cfg = dict(input_size=256, hidden_size=32, n_blocks=1, max_mz=500)
    model = NeimsMLP(**cfg)
    model.eval()
    path = save_model(tmp_path_factory.mktemp("model") / "m.pt", model, cfg, Featurizer(n_bits=256),
                      {"name": "tiny", "version": "0"})
    return NeimsPredictor(path)


def _inchikey(smiles: str) -> str:
    return Chem.MolToInchiKey(Chem.MolFromSmiles(smiles))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _read_errors(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# ============================================================================================ reading


def test_read_smi_names_comments_and_header():
    molecules = list(read_molecules(SMI_FIXTURE))
    smiles = [m.smiles for m in molecules]
    assert smiles == ["CCO", "CC(=O)C", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "C1CC1C(", "CCN(CC)CC", "CCCCCCCC",
                      "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "not_a_smiles", "OCC(O)CO"]
    assert molecules[0] == MoleculeInput("CCO", "ethanol", "line 4 (ethanol)")
    assert molecules[2].name == "benzene"  # whitespace separated
    assert molecules[4].name == "" and molecules[4].record == "line 9"
    assert molecules[8].name == "broken thing"  # tab separated names keep their spaces
    assert molecules[9].name == "glycerol (propane-1,2,3-triol)"  # the rest of the line after whitespace


def test_read_smi_without_header_and_gzip(tmp_path):
    path = tmp_path / "plain.smiles.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("CCO\nCCC propane\n\n")
    molecules = list(read_molecules(path))
    assert [(m.smiles, m.name, m.record) for m in molecules] == [("CCO", "", "line 1"),
                                                                 ("CCC", "propane", "line 2 (propane)")]


def test_read_csv_detects_columns():
    molecules = list(read_molecules(CSV_FIXTURE))
    assert [m.smiles for m in molecules] == ["CCO", "CC(=O)C", "c1ccccc1", "C1CC1C(", "CCCC", "Oc1ccccc1"]
    assert molecules[0].name == "ethanol"  # compound_name beats id
    assert molecules[2].name == "benzene, pure"
    assert molecules[3].record == "row 4 (bad one)"
    assert molecules[4].record == "row 5"


def test_read_csv_explicit_columns_and_tsv(tmp_path):
    path = tmp_path / "mols.tsv"
    path.write_text("structure\tlabel\tcanonical_smiles\nCCO\tethanol\tC\nCCC\tpropane\tC\n")
    molecules = list(read_molecules(path, smiles_column="Structure", name_column="label"))
    assert [(m.smiles, m.name) for m in molecules] == [("CCO", "ethanol"), ("CCC", "propane")]
    detected = list(read_molecules(path))
    assert [m.smiles for m in detected] == ["C", "C"] and detected[0].name == ""


def test_read_csv_without_smiles_column_lists_columns(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("id,structure\n1,CCO\n")
    with pytest.raises(MoleculeFileError, match=r"no SMILES column.*\['id', 'structure'\]"):
        list(read_molecules(path))
    with pytest.raises(MoleculeFileError, match="no SMILES column 'smi'"):
        list(read_molecules(path, smiles_column="smi"))


def _write_sdf(path: Path, broken_after: int = 1) -> None:
    """Three molecules written by RDKit, plus one record RDKit cannot read after the first ``broken_after``."""
    molecules = []
    for smiles, name in (("CCO", "ethanol"), ("c1ccccc1", ""), ("CC(=O)C", "")):
        mol = Chem.MolFromSmiles(smiles)
        if name:
            mol.SetProp("_Name", name)
        molecules.append(mol)
    molecules[2].SetProp("NAME", "acetone")
    # A pentavalent carbon: written without sanitizing, rejected by RDKit when read back.
    broken = Chem.MolToMolBlock(Chem.MolFromSmiles("CC(C)(C)(C)C", sanitize=False), kekulize=False)
    with open(path, "w") as handle:
        writer = Chem.SDWriter(handle)
        for mol in molecules[:broken_after]:
            writer.write(mol)
        writer.flush()
        handle.write("broken" + broken + "$$$$\n")
        for mol in molecules[broken_after:]:
            writer.write(mol)
        writer.close()


def test_read_sdf_with_broken_record(tmp_path):
    from rdkit import RDLogger

    path = tmp_path / "mols.sdf"
    _write_sdf(path)
    RDLogger.DisableLog("rdApp.*")
    try:
        molecules = list(read_molecules(path))
    finally:
        RDLogger.EnableLog("rdApp.*")
    assert len(molecules) == 4
    assert molecules[0] == MoleculeInput("CCO", "ethanol", "SDF record 1 (ethanol)")
    assert molecules[1].smiles == "" and molecules[1].record.startswith("SDF record 2")
    assert molecules[2] == MoleculeInput("c1ccccc1", "", "SDF record 3")
    assert molecules[3] == MoleculeInput("CC(C)=O", "acetone", "SDF record 4 (acetone)")


def test_read_sdf_gz(tmp_path):
    path = tmp_path / "mols.sdf"
    _write_sdf(path)
    gz_path = tmp_path / "mols.sdf.gz"
    gz_path.write_bytes(gzip.compress(path.read_bytes()))
    assert [m.smiles for m in read_molecules(gz_path)] == ["CCO", "", "c1ccccc1", "CC(C)=O"]


@pytest.mark.parametrize("kind", ["msp", "mgf"])
def test_read_spectrum_files(tmp_path, kind):
    formatter = format_msp_record if kind == "msp" else format_mgf_record
    path = tmp_path / f"spectra.{kind}"
    peaks = (np.array([15.0, 31.0]), np.array([100.0, 999.0]))
    path.write_text(formatter({"compound_name": "methanol", "smiles": "CO"}, *peaks)
                    + formatter({"compound_name": "no structure"}, *peaks)
                    + formatter({"compound_name": "ethanol", "smiles": "CCO"}, *peaks))
    molecules = list(read_molecules(path))
    label = kind.upper()
    assert molecules == [MoleculeInput("CO", "methanol", f"{label} record 1 (methanol)"),
                         MoleculeInput("", "no structure", f"{label} record 2 (no structure)"),
                         MoleculeInput("CCO", "ethanol", f"{label} record 3 (ethanol)")]


def test_read_molecules_rejects_unknown_and_missing_files(tmp_path):
    with pytest.raises(MoleculeFileError, match="unknown molecule file type"):
        read_molecules(tmp_path / "mols.xyz")
    with pytest.raises(FileNotFoundError):
        read_molecules(tmp_path / "missing.smi")


def test_read_molecules_streams(tmp_path):
    path = tmp_path / "many.smi"
    path.write_text("CCO\n" * 1000 + "this line is never reached\n")
    iterator = read_molecules(path)
    assert next(iterator).smiles == "CCO"
    iterator.close()


# ============================================================================================ writing


def test_peak_lines_of_integer_and_other_peaks():
    from matchms_neims.io import peak_lines

    assert peak_lines([12, 41, 1500], [1, 999, 3]) == "12 1\n41 999\n1500 3\n"  # the table grows on demand
    assert peak_lines(np.array([12.0, 41.0]), np.array([1.0, 999.0])) == "12 1\n41 999\n"
    assert peak_lines(np.array([12.25, 41.0]), np.array([1.5, 2e6])) == "12.2500 1.5\n41.0000 2e+06\n"
    assert peak_lines(np.array([12.0]), np.array([2_000_000.0])) == "12 2000000\n"  # not tabled
    assert peak_lines([], []) == ""


def test_library_records_are_those_of_the_io_writer(tiny_predictor):
    batch = tiny_predictor.predict_batch([MoleculeInput("CCO", "ethanol", "x"), MoleculeInput("c1ccccc1", "", "y")])
    for vector, molecule, info in zip(batch.vectors, batch.molecules, batch.infos):
        metadata = tiny_predictor.spectrum_metadata(molecule, info)
        mz, intensities = _library_peaks(vector, 0.001)
        assert mz and max(intensities) == 999
        text = format_msp_record(metadata, mz, intensities)
        assert text.startswith("Name: ") and f"Num Peaks: {len(mz)}\n" in text and text.endswith("\n\n")
        assert format_mgf_record(metadata, np.array(mz, float), np.array(intensities, float)).endswith("END IONS\n\n")


@pytest.mark.parametrize("kind", ["msp", "mgf"])
def test_build_library_round_trip(tmp_path, tiny_predictor, kind):
    output = tmp_path / f"lib.{kind}"
    summary = build_library([(s, f"mol{i}") for i, s in enumerate(TEN_SMILES)], output, predictor=tiny_predictor,
                            progress=False)
    assert isinstance(summary, LibrarySummary)
    assert (summary.n_input, summary.n_written, summary.n_failed) == (10, 10, 0)
    assert summary.output == output and summary.file_format == kind
    records = list(iter_records(output))
    assert len(records) == 10
    for smiles, record in zip(TEN_SMILES, records):
        assert record.metadata["smiles"] == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
        assert record.metadata["inchikey"] == _inchikey(smiles)
        assert record.intensities.max() == 999
        assert np.all(record.intensities >= 1) and np.all(record.intensities == np.round(record.intensities))
        assert np.all(record.mz == np.round(record.mz))
    assert records[3].name == "mol3"
    assert _leftovers(tmp_path) == []


def test_build_library_skips_and_lists_bad_records(tmp_path, tiny_predictor):
    output = tmp_path / "lib.msp"
    errors_path = tmp_path / "errors.tsv"
    summary = build_library(SMI_FIXTURE, output, predictor=tiny_predictor, errors_path=errors_path, progress=False)
    assert (summary.n_input, summary.n_written, summary.n_failed) == (10, 8, 2)
    assert summary.errors_path == errors_path
    rows = _read_errors(errors_path)
    assert [row["record"] for row in rows] == ["line 9", "line 14 (broken thing)"]
    assert [row["smiles"] for row in rows] == ["C1CC1C(", "not_a_smiles"]
    assert all("unparsable SMILES" in row["reason"] for row in rows)
    assert [error.record for error in summary.errors] == ["line 9", "line 14 (broken thing)"]
    records = list(iter_records(output))
    assert len(records) == 8
    assert [r.name for r in records][:3] == ["ethanol", "acetone", "benzene"]
    text = str(summary)
    assert "8 of 10" in text and "line 9" in text and str(errors_path) in text


def test_build_library_from_csv_sdf_and_msp(tmp_path, tiny_predictor):
    from rdkit import RDLogger

    summary = build_library(CSV_FIXTURE, tmp_path / "csv.mgf", predictor=tiny_predictor, progress=False)
    assert (summary.n_written, summary.n_failed) == (5, 1)
    assert (summary.errors[0].record, summary.errors[0].smiles) == ("row 4 (bad one)", "C1CC1C(")

    sdf = tmp_path / "mols.sdf"
    _write_sdf(sdf)
    RDLogger.DisableLog("rdApp.*")
    try:
        summary = build_library(sdf, tmp_path / "sdf.msp", predictor=tiny_predictor, progress=False,
                                errors_path=tmp_path / "sdf_errors.tsv")
    finally:
        RDLogger.EnableLog("rdApp.*")
    assert (summary.n_input, summary.n_written, summary.n_failed) == (4, 3, 1)
    rows = _read_errors(tmp_path / "sdf_errors.tsv")
    assert len(rows) == 1 and rows[0]["record"].startswith("SDF record 2") and rows[0]["reason"]
    assert [r.name for r in iter_records(tmp_path / "sdf.msp")] == ["ethanol", _inchikey("c1ccccc1"), "acetone"]

    # A predicted library is itself valid input: its SMILES give the same molecules back.
    again = build_library(tmp_path / "sdf.msp", tmp_path / "again.msp", predictor=tiny_predictor, progress=False)
    assert again.n_written == 3
    assert (tmp_path / "again.msp").read_text() == (tmp_path / "sdf.msp").read_text()


def test_errors_file_written_when_nothing_fails(tmp_path, tiny_predictor):
    errors_path = tmp_path / "errors.tsv"
    summary = build_library(["CCO"], tmp_path / "lib.msp", predictor=tiny_predictor, errors_path=errors_path,
                            progress=False)
    assert summary.n_failed == 0 and "No molecule was skipped" in str(summary)
    assert errors_path.read_text() == "record\tsmiles\treason\n"


@pytest.mark.parametrize("kind", ["msp", "mgf"])
def test_chunking_gives_identical_output(tmp_path, tiny_predictor, kind):
    molecules = TEN_SMILES[:5] + ["C1CC1C("] + TEN_SMILES[5:]
    one = build_library(molecules, tmp_path / f"one.{kind}", predictor=tiny_predictor, chunk_size=4096,
                        progress=False)
    many = build_library(molecules, tmp_path / f"many.{kind}", predictor=tiny_predictor, chunk_size=3, batch_size=2,
                         progress=False)
    assert (tmp_path / f"one.{kind}").read_bytes() == (tmp_path / f"many.{kind}").read_bytes()
    assert [(e.record, e.smiles, e.reason) for e in one.errors] == [("record 6", "C1CC1C(", one.errors[0].reason)]
    assert one.errors == many.errors
    assert tiny_predictor.batch_size == 256  # restored


def test_input_is_consumed_chunk_by_chunk(tmp_path, tiny_predictor):
    consumed = []

    def molecules():
        for smiles in TEN_SMILES:
            consumed.append(smiles)
            yield smiles

    class Watching:
        def __init__(self, inner):
            self.inner = inner
            self.seen = []
            self.batch_size = inner.batch_size
            self.max_mz = inner.max_mz

        def predict_batch(self, items):
            self.seen.append(len(consumed))
            return self.inner.predict_batch(items)

        def predict_batches(self, batches, batch_size=None):
            return (self.predict_batch(items) for items in batches)

        def spectrum_metadata(self, molecule, info, uncertainty=None, expert_weights=None):
            return self.inner.spectrum_metadata(molecule, info, uncertainty, expert_weights)

    watching = Watching(tiny_predictor)
    summary = build_library(molecules(), tmp_path / "lib.msp", predictor=watching, chunk_size=3, progress=False)
    assert summary.n_written == 10
    assert watching.seen == [3, 6, 9, 10]


class _FailingPredictor:
    """Wraps a predictor and raises on the given call of predict_batch."""

    def __init__(self, inner, fail_on: int = 2, error: type[BaseException] = RuntimeError):
        self.inner = inner
        self.fail_on = fail_on
        self.error = error
        self.calls = 0
        self.batch_size = inner.batch_size
        self.max_mz = inner.max_mz

    def predict_batch(self, items):
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error("boom")
        return self.inner.predict_batch(items)

    def predict_batches(self, batches, batch_size=None):
        return (self.predict_batch(items) for items in batches)

    def spectrum_metadata(self, molecule, info, uncertainty=None, expert_weights=None):
        return self.inner.spectrum_metadata(molecule, info, uncertainty, expert_weights)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_nothing_behind(tmp_path, tiny_predictor, error):
    output = tmp_path / "lib.msp"
    errors_path = tmp_path / "errors.tsv"
    predictor = _FailingPredictor(tiny_predictor, error=error)
    with pytest.raises(error, match="boom"):
        build_library(TEN_SMILES, output, predictor=predictor, chunk_size=3, errors_path=errors_path, progress=False)
    assert predictor.calls == 2
    assert not output.exists() and not errors_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failure_keeps_previous_library(tmp_path, tiny_predictor):
    output = tmp_path / "lib.mgf"
    output.write_text("previous library\n")
    with pytest.raises(RuntimeError):
        build_library(TEN_SMILES, output, predictor=_FailingPredictor(tiny_predictor), chunk_size=3, progress=False)
    assert output.read_text() == "previous library\n"
    assert _leftovers(tmp_path) == []


def test_build_library_rejects_bad_arguments(tmp_path, tiny_predictor):
    with pytest.raises(ValueError):
        build_library(["CCO"], tmp_path / "lib.txt", predictor=tiny_predictor, progress=False)
    with pytest.raises(ValueError):
        build_library(["CCO"], tmp_path / "lib.msp", predictor=tiny_predictor, chunk_size=0, progress=False)
    with pytest.raises(MoleculeFileError):
        build_library(tmp_path / "mols.xyz", tmp_path / "lib.msp", predictor=tiny_predictor, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_predict(tmp_path, tiny_predictor, capsys):
    from matchms_neims.cli import main

    output = tmp_path / "lib.msp"
    code = main(["predict", str(SMI_FIXTURE), "-o", str(output), "--model", str(tiny_predictor.model_path),
                 "--errors", str(tmp_path / "errors.tsv"), "--chunk-size", "4"])
    assert code == 0
    assert len(list(iter_records(output))) == 8
    assert len(_read_errors(tmp_path / "errors.tsv")) == 2
    assert "8 of 10" in capsys.readouterr().out


def test_molecules_of_a_spectrum_file_with_bad_peaks_are_still_predicted(tmp_path, tiny_predictor):
    spectra = tmp_path / "references.msp"
    spectra.write_text("Name: ethanol\nSMILES: CCO\nNum Peaks: 2\n31 999\n45 nan\n\n"
                       "Name: acetone\nSMILES: CC(C)=O\nNum Peaks: 1\n43 -1\n\n"
                       "Name: benzene\nSMILES: c1ccccc1\nNum Peaks: 5\n78 999\n")  # truncated
    assert list(iter_records(spectra)) == []  # as spectra, all three are bad
    summary = build_library(spectra, tmp_path / "library.msp", predictor=tiny_predictor, progress=False)
    assert (summary.n_input, summary.n_written) == (3, 3)  # as molecules, all three are fine
    assert [record.name for record in iter_records(tmp_path / "library.msp")] == ["ethanol", "acetone", "benzene"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "cp1252"])
def test_molecule_files_of_other_encodings_are_read(tmp_path, encoding):
    text_smi = "smiles\tname\nCCO\téthanol\nc1ccccc1\tbenzène µ\n"
    text_csv = 'smiles,name\nCCO,éthanol\nc1ccccc1,"benzène µ"\n'
    for name, text in (("m.smi", text_smi), ("m.csv", text_csv)):
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data  # a BOM, as Windows editors write
        (tmp_path / name).write_bytes(data)
        molecules = list(read_molecules(tmp_path / name))
        assert [(m.smiles, m.name) for m in molecules] == [("CCO", "éthanol"), ("c1ccccc1", "benzène µ")], name


def test_a_giant_smi_line_is_listed_without_being_read_into_memory(tmp_path, monkeypatch):
    import tracemalloc

    import matchms_neims.io.molecule_reader as molecule_reader

    monkeypatch.setattr(molecule_reader, "MAX_LINE_LENGTH", 10_000)
    path = tmp_path / "giant.smi"
    with path.open("w") as handle:
        handle.write("CCO ethanol\n")
        handle.write("C" * 5_000_000 + " giant\n")
        handle.write("CCN ethylamine\n")
    tracemalloc.start()
    molecules = list(read_molecules(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [m.smiles for m in molecules] == ["CCO", "", "CCN"]
    assert molecules[1].record == "line 2" and "a line of 5,000,007 characters" in molecules[1].problem
    assert peak < 1_000_000, f"peak {peak:,} bytes: the giant line was held in memory"


def test_a_csv_row_over_the_field_limit_is_listed_and_the_rest_read(tmp_path):
    path = tmp_path / "giant.csv"
    path.write_text("smiles,name\nCCO,ethanol\n" + "C" * 200_000 + ",giant\nCCN,ethylamine\n")
    molecules = list(read_molecules(path))
    assert [(m.smiles, m.record) for m in molecules] == [("CCO", "row 1 (ethanol)"), ("", "row 2"),
                                                         ("CCN", "row 3 (ethylamine)")]
    assert "field larger than field limit" in molecules[1].problem
