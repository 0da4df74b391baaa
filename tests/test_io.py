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


def test_bad_peak_line_names_the_record(tmp_path):
    path = tmp_path / "bad.msp"
    path.write_text("Name: broken\nNum Peaks: 2\n41 100\n43\n\n")
    with pytest.raises(SpectrumFileError, match="broken"):
        list(iter_msp(path))


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
