"""Reading and writing MSP/MGF, including real NIST export quirks."""

from __future__ import annotations

import numpy as np
import pytest
from matchms import Spectrum

from matchms_neims.io import SpectrumFileError, iter_mgf, iter_msp, iter_records, load_spectra, write_spectra


def test_nist_style_msp_quirks(fixtures_dir):
    records = list(iter_msp(fixtures_dir / "nist_style.msp"))
    assert [r.metadata["compound_name"] for r in records] == ["Ethanol", "Toluene", "Benzene, 1-chloro-"]
    ethanol, toluene, chlorobenzene = records
    # several Synon lines are all kept, including NIST's "$:" codes
    assert ethanol.metadata["synonyms"] == ["Ethyl alcohol", "$:00in-source", "Alcohol, ethyl"]
    # ";"-separated peaks with a quoted annotation in the middle of the line
    assert ethanol.mz.tolist() == [14, 15, 19, 26, 27, 28]
    assert ethanol.intensities.tolist() == [20, 88, 16, 23, 223, 313]
    assert ethanol.peak_comments == {26.0: "C2H2+"}
    # SMILES from a MoNA/NIST style Comments field
    assert ethanol.metadata["smiles"] == "CCO"
    assert ethanol.metadata["nominal_mass"] == "46"
    assert ethanol.metadata["cas#"] == "64-17-5" and ethanol.metadata["nist_id"] == "1234"  # "CAS#: ..;  NIST#: .."
    # tab separated peaks, "Num peaks" in lower case, a record that starts without a blank line
    assert toluene.mz.tolist() == [39, 51, 65, 91, 92]
    assert toluene.peak_comments == {65.0: "C5H5+"}
    # a comment containing ";" does not split the peak list
    assert chlorobenzene.mz.tolist() == [51, 77, 112, 114]
    assert chlorobenzene.peak_comments[51.0] == "C4H3+; ring"


def test_msp_to_matchms_spectra_without_precursor_warnings(fixtures_dir, caplog):
    spectra = load_spectra(fixtures_dir / "nist_style.msp")
    assert all(isinstance(s, Spectrum) for s in spectra)
    assert spectra[1].get("smiles") == "Cc1ccccc1"
    assert spectra[0].get("compound_name") == "Ethanol"
    assert "precursor" not in caplog.text.lower()


def test_msp_round_trip(tmp_path, fixtures_dir):
    records = list(iter_msp(fixtures_dir / "nist_style.msp"))
    out = tmp_path / "copy.msp"
    assert write_spectra(records, out, intensity_scale=None) == 3
    again = list(iter_msp(out))
    for before, after in zip(records, again):
        np.testing.assert_array_equal(before.mz, after.mz)
        np.testing.assert_array_equal(before.intensities, after.intensities)
        assert after.metadata["compound_name"] == before.metadata["compound_name"]
        assert after.metadata.get("synonyms") == before.metadata.get("synonyms")
        assert after.metadata.get("smiles") == before.metadata.get("smiles")


def test_mgf_round_trip_and_reading(tmp_path, fixtures_dir):
    queries = list(iter_mgf(fixtures_dir / "queries.mgf"))
    assert [q.metadata["compound_name"] for q in queries] == ["toluene query", "unknown 2"]
    assert queries[0].metadata["smiles"] == "Cc1ccccc1"
    np.testing.assert_allclose(queries[1].mz, [51.02, 77.04, 112.01, 114.0])
    spectra = [Spectrum(mz=np.array([41.0, 43.0, 58.0]), intensities=np.array([0.5, 1.0, 0.25]),
                        metadata={"compound_name": "acetone", "smiles": "CC(C)=O"})]
    out = tmp_path / "a.mgf"
    write_spectra(spectra, out)
    (record,) = list(iter_records(out))
    assert record.mz.tolist() == [41, 43, 58]
    assert record.intensities.tolist() == [500, 999, 250]  # base peak 999 in files
    assert record.metadata["smiles"] == "CC(C)=O"


GOOD_RECORD = "Name: good {}\nNum Peaks: 2\n41 100\n43 999\n\n"
BAD_MSP_RECORDS = {
    "odd number of values": "Name: odd\nNum Peaks: 2\n41 100\n43\n\n",
    "non-numeric text": "Name: letters\nNum Peaks: 2\n41 100\n43 abc\n\n",
    "NaN or infinite": "Name: nan\nNum Peaks: 2\n41 nan\n43 999\n\n",
    "negative intensity": "Name: negative\nNum Peaks: 2\n41 -5\n43 999\n\n",
    "outside 0..100000": "Name: far\nNum Peaks: 2\n41 100\n430000 999\n\n",
    "binary data": "Name: binary\nNum Peaks: 2\n41 100\x00\n43 999\n\n",
}


@pytest.mark.parametrize("reason", sorted(BAD_MSP_RECORDS))
def test_bad_msp_records_are_skipped_and_reported(tmp_path, reason):
    path = tmp_path / "bad.msp"
    path.write_text(GOOD_RECORD.format(1) + BAD_MSP_RECORDS[reason] + GOOD_RECORD.format(2))
    problems = []
    assert [record.name for record in iter_msp(path, problems)] == ["good 1", "good 2"]
    (problem,) = problems
    assert reason in problem.reason and problem.file == "bad.msp" and 6 <= problem.line <= 9
    assert str(problem).startswith(f"bad.msp:{problem.line} (record ") and problem.record != ""
    with pytest.raises(SpectrumFileError, match=f"bad.msp:{problem.line}"):
        list(iter_msp(path, on_error="raise"))


def test_truncated_files_lose_only_their_last_record(tmp_path):
    msp = tmp_path / "cut.msp"
    msp.write_text(GOOD_RECORD.format(1) + "Name: cut\nNum Peaks: 5\n41 100\n42 3")
    problems = []
    assert [record.name for record in iter_msp(msp, problems)] == ["good 1"]
    assert "truncated: the file ends after 2 of the 5 peaks" in problems[0].reason and problems[0].record == "cut"
    mgf = tmp_path / "cut.mgf"
    mgf.write_text("BEGIN IONS\nTITLE=a\n41 100\nEND IONS\nBEGIN IONS\nTITLE=b\n41 100\nBEGIN IONS\nTITLE=c\n"
                   "41 1\nEND IONS\nBEGIN IONS\nTITLE=d\n41 10")
    problems = []
    assert [record.name for record in iter_mgf(mgf, problems)] == ["a", "c"]
    assert [(p.record, p.reason.split(":")[0]) for p in problems] == [("b", "no END IONS before the next BEGIN IONS"),
                                                                       ("d", "truncated")]


def test_missing_num_peaks_and_other_encodings(tmp_path):
    path = tmp_path / "no_count.msp"
    path.write_text("Name: no count\nMW: 58\n41 100; 43 999\n58 200\n\n" + GOOD_RECORD.format(1))
    first, second = iter_msp(path)
    assert first.mz.tolist() == [41, 43, 58] and second.name == "good 1"
    latin = tmp_path / "latin.msp"  # Windows-1252 names, as old vendor exports write them
    latin.write_bytes("Name: \u03b2-Carotene \u00b5g\nNum Peaks: 1\n41 100\n\n".encode("cp1252", errors="replace")
                      + "Name: caf\u00e9\nNum Peaks: 1\n41 100\n\n".encode("utf-8"))
    assert [record.name for record in iter_msp(latin)] == ["?-Carotene \u00b5g", "caf\u00e9"]
    utf16 = tmp_path / "utf16.msp"
    utf16.write_text(GOOD_RECORD.format("\u00e9"), encoding="utf-16")
    assert [record.name for record in iter_msp(utf16)] == ["good \u00e9"]


def test_unknown_extension(tmp_path):
    with pytest.raises(SpectrumFileError, match="unknown spectrum file type"):
        list(iter_records(tmp_path / "x.json"))


def test_write_is_atomic_on_error(tmp_path):
    out = tmp_path / "lib.msp"
    out.write_text("old content\n")

    def spectra():
        yield Spectrum(mz=np.array([41.0]), intensities=np.array([1.0]), metadata={"compound_name": "a"})
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_spectra(spectra(), out)
    assert out.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lib.msp"]


def test_a_never_ending_record_is_skipped_without_keeping_its_peaks(tmp_path, monkeypatch):
    import matchms_neims.io as io_module
    import matchms_neims.io.record_reading

    monkeypatch.setattr(matchms_neims.io.record_reading, "MAX_PEAKS_PER_RECORD", 1000)
    peaks = "".join(f"{i % 500 + 1} {i % 999 + 1}\n" for i in range(5000))
    path = tmp_path / "runaway.msp"
    path.write_text(f"Name: fine\nNum Peaks: 1\n41 999\n\nName: runaway\n{peaks}\nName: after\nNum Peaks: 1\n"
                    "43 999\n")
    problems: list = []
    records = list(io_module.iter_msp(path, problems))
    assert [r.name for r in records] == ["fine", "after"]
    assert len(problems) == 1 and problems[0].record == "runaway" and "more than 1,000 peaks" in problems[0].reason
    mgf = tmp_path / "runaway.mgf"
    mgf.write_text(f"BEGIN IONS\nTITLE=runaway\n{peaks}END IONS\nBEGIN IONS\nTITLE=after\n43 999\nEND IONS\n")
    problems = []
    assert [r.name for r in io_module.iter_mgf(mgf, problems)] == ["after"] and "more than" in problems[0].reason
