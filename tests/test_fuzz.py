"""Fuzzing (hypothesis): the readers and the predictor take any input without an unhandled exception, and every
input record ends up either in the output or in the list of problems."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchms_neims.io import iter_mgf, iter_msp
from matchms_neims.predictor import NeimsPredictor

FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(0, 1000).map(str), st.floats(0, 1000, allow_nan=False).map(lambda x: f"{x:.3f}"))
good_peaks = st.lists(st.tuples(numbers, numbers), min_size=1, max_size=6)
bad_peak_lines = st.sampled_from(["41 nan", "41 -3", "abc 12", "41", "41 100 42", "inf 3", "1e9 5", "41 1e999",
                                  "4\x001 10", "12 ??", "-5 10"])
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                max_size=12).map(str.strip).filter(lambda name: name and ":" not in name)


@st.composite
def msp_record(draw, index: int):
    """One MSP record and whether a reader must keep it."""
    name = f"r{index} {draw(names)}"
    peaks = draw(good_peaks)
    lines = [f"Name: {name}"]
    lines += draw(st.lists(st.sampled_from(["Synon: other name", "Formula: C2H6O", "MW: 46", "Comments: \"SMILES=CCO\"",
                                            "DB#: 7", "CAS#: 64-17-5;  NIST#: 1234", "Weird line without colon"]),
                           max_size=4))
    peak_lines = [f"{mz} {intensity}" for mz, intensity in peaks]
    good = draw(st.booleans())
    if not good:
        peak_lines.insert(draw(st.integers(0, len(peak_lines))), draw(bad_peak_lines))
    separator = draw(st.sampled_from(["\n", "; ", "\t"]))
    body = [f"Num Peaks: {len(peak_lines)}"] + (peak_lines if separator == "\n" else [separator.join(peak_lines)])
    return name, good, "\n".join(lines + body) + "\n"


@st.composite
def msp_file(draw):
    records = [draw(msp_record(index)) for index in range(draw(st.integers(1, 6)))]
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = "\n".join(record for _, _, record in records)
    return records, text.replace("\n", ending)


def _read(content: str | bytes, suffix: str, reader) -> tuple[list, list, str]:
    """``reader`` on a temporary file holding ``content``: its records, its problems and the file's name."""
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    handle.write(content if isinstance(content, bytes) else content.encode("utf-8"))
    handle.close()
    path = Path(handle.name)
    try:
        problems = []
        records = list(reader(path, problems))
    finally:
        path.unlink()
    return records, problems, path.name


def _check_records(records) -> None:
    for record in records:
        assert np.isfinite(record.mz).all() and np.isfinite(record.intensities).all()
        assert (record.intensities >= 0).all() and (np.diff(record.mz) >= 0).all()


@FUZZ
@given(msp_file())
def test_msp_reader_keeps_good_records_and_reports_every_bad_one(case):
    records, text = case
    read, problems, file_name = _read(text, ".msp", iter_msp)
    _check_records(read)
    assert [record.name for record in read] == [name for name, good, _ in records if good]
    assert [problem.record for problem in problems] == [name for name, good, _ in records if not good]
    assert all(problem.file == file_name and problem.line > 0 and problem.reason for problem in problems)


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400),
                 st.lists(st.sampled_from(["Name: x", "Num Peaks: 3", "NUM PEAKS: -2", "41 999", "", "42 nan; 43 1",
                                           "BEGIN IONS", "END IONS", "TITLE=y", "PEPMASS=100", "1 2 3", "Synon: z",
                                           "\ufeffName: bom", "99:100 100:5", "Num Peaks: abc"]),
                          max_size=30).map("\n".join)))
def test_readers_survive_any_bytes(content):
    for suffix, reader in ((".msp", iter_msp), (".mgf", iter_mgf)):
        records, problems, _ = _read(content, suffix, reader)
        _check_records(records)
        assert all(problem.reason for problem in problems)


@pytest.fixture(scope="module")
def student():
    return NeimsPredictor()


smiles_like = st.text(st.sampled_from(list("CNOSPFIBrcnos()[]=#@+-.123456789%/\\Hl*: ")), max_size=40)
REAL_SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "OC(=O)CCCCCCCCCCCCCCC",
               "Clc1ccc(cc1)C(c1ccc(Cl)cc1)C(Cl)(Cl)Cl", "C[Si](C)(C)OC1CCCCC1", "[O-][N+](=O)c1ccccc1", "C=CC#N"]
# real molecules made awkward: salts and mixtures, labels, charges, radicals, other elements, huge chains
mutated_real = st.builds(lambda prefix, smiles, suffix: prefix + smiles + suffix,
                         st.sampled_from(["", "[2H]", "[13CH3]", "[O-]", "[CH2]", "[Pt]", "C" * 60]),
                         st.sampled_from(REAL_SMILES),
                         st.sampled_from(["", ".[Na+]", ".Cl", ".O.O", "[NH3+]", "[Se]", "C" * 40, ".[Fe+3]"]))


@FUZZ
@given(st.lists(st.one_of(smiles_like, st.text(max_size=20), mutated_real), min_size=1, max_size=4))
def test_predictor_predicts_or_explains_every_input(student, items):
    batch = student.predict_batch(items)
    assert len(batch.vectors) + len(batch.errors) == len(items)
    assert {m.record for m in batch.molecules}.isdisjoint(error.record for error in batch.errors)
    assert np.isfinite(batch.vectors).all() and (batch.vectors >= 0).all()
    assert all(vector.max() == pytest.approx(1.0) for vector in batch.vectors)
    assert all(error.reason for error in batch.errors)
