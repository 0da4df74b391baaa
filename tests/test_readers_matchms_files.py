"""The readers on matchms's own MSP test files (RIKEN and Golm styles) and the search's ``--max-mz`` report.

The files are copies of matchms's ``tests/testdata`` files (see ``tests/fixtures/README.md``); the expected
values are read off the files themselves, and compared with what matchms's ``load_from_msp`` reads.
"""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
from matchms.importing import load_from_msp

from matchms_neims.cli import main
from matchms_neims.io import RecordProblem, SpectrumRecord, iter_msp, iter_records, write_spectra
from matchms_neims.library import read_molecules
from matchms_neims.search import PeaksAboveMaxMz, SpectralMatrix, search_library

RIKEN_NAMES = ["ADP", "Kojic acid", "Cyclizine", "Metoclopramide", "Tentotoxin"]
RIKEN_INCHIKEYS = ["XTWYTFMLZFPYCI-UHFFFAOYSA-N", "BEJNERDRQOWKJM-UHFFFAOYSA-N", "UVKZSORBKUEBAZ-UHFFFAOYSA-N",
                   "TTWJBBZEZQICBI-UHFFFAOYSA-N", "SIIRBDOFKDACOK-UHFFFAOYSA-N"]


def _matchms_spectra(path) -> list:
    with pytest.MonkeyPatch.context() as patch:  # matchms warns about precursor m/z per spectrum
        patch.setattr(logging.getLogger("matchms"), "disabled", True)
        return list(load_from_msp(str(path)))


# ------------------------------------------------------------------------------------ RIKEN: Name not first


def test_riken_records_whose_name_is_not_the_first_line(fixtures_dir):
    path = fixtures_dir / "riken_style_five_spectra.msp"
    problems: list[RecordProblem] = []
    records = list(iter_records(path, problems))
    assert problems == []
    assert len(records) == 5  # was 10: the lines before NAME were read as a record of their own
    assert [r.metadata["compound_name"] for r in records] == RIKEN_NAMES
    assert [r.metadata["inchikey"] for r in records] == RIKEN_INCHIKEYS
    assert [r.mz.size for r in records] == [2, 1, 3, 3, 32]
    adp = records[0]
    assert adp.metadata["smiles"] == "C1=NC2=C(C(=N1)N)N=CN2C3C(C(C(O3)COP(=O)(O)OP(=O)(O)O)O)O"
    assert adp.metadata["formula"] == "C10H15N5O10P2"
    assert adp.metadata["precursormz"] == "428.31" and adp.metadata["ionmode"] == "positive"
    assert adp.mz.tolist() == [135.0, 136.0] and adp.intensities.tolist() == [83.0, 999.0]
    assert records[1].metadata["precursortype"] == "[M-H]-"
    spectrum = adp.to_spectrum()  # matchms's harmonised keys
    assert spectrum.get("precursor_mz") == pytest.approx(428.31)
    assert spectrum.get("instrument_type") == "LC-ESI-QQ"
    # the same records, metadata and peaks as matchms's own reader
    for ours, theirs in zip(records, _matchms_spectra(path), strict=True):
        np.testing.assert_array_equal(ours.mz, theirs.peaks.mz)
        np.testing.assert_array_equal(ours.intensities, theirs.peaks.intensities)
        for key in ("compound_name", "inchikey", "smiles", "formula", "precursor_mz", "ionmode"):
            assert ours.to_spectrum().get(key) == theirs.get(key), key


def test_predict_reads_every_riken_record_with_its_smiles(fixtures_dir):
    molecules = list(read_molecules(fixtures_dir / "riken_style_five_spectra.msp"))
    assert [m.name for m in molecules] == RIKEN_NAMES  # was 10 inputs, 5 of them without SMILES
    assert all(m.smiles and not m.problem for m in molecules)
    assert molecules[2].smiles == "CN1CCN(CC1)C(C2=CC=CC=C2)C3=CC=CC=C3"


def test_riken_records_run_together_without_blank_lines(tmp_path, fixtures_dir):
    text = (fixtures_dir / "riken_style_five_spectra.msp").read_text()
    packed = tmp_path / "packed.msp"
    packed.write_text("\n".join(line for line in text.splitlines() if line.strip()) + "\n")
    records = list(iter_msp(packed))
    assert [r.metadata["compound_name"] for r in records] == RIKEN_NAMES
    assert [r.metadata["inchikey"] for r in records] == RIKEN_INCHIKEYS
    assert [r.mz.size for r in records] == [2, 1, 3, 3, 32]


def test_a_bad_riken_record_is_named_and_the_rest_is_read(tmp_path, fixtures_dir):
    text = (fixtures_dir / "riken_style_five_spectra.msp").read_text()
    bad = tmp_path / "bad.msp"
    bad.write_text(text.replace("141.0194    999.0", "141.0194    lots"))
    problems: list[RecordProblem] = []
    records = list(iter_msp(bad, problems))
    assert [r.metadata["compound_name"] for r in records] == ["ADP", "Cyclizine", "Metoclopramide", "Tentotoxin"]
    assert [r.metadata["inchikey"] for r in records] == [RIKEN_INCHIKEYS[0]] + RIKEN_INCHIKEYS[2:]
    (problem,) = problems
    line = text.splitlines().index("141.0194    999.0") + 1
    assert (problem.file, problem.line, problem.record) == ("bad.msp", line, "Kojic acid")
    assert "non-numeric text" in problem.reason
    assert str(problem).startswith(f"bad.msp:{line} (record 'Kojic acid'): ")


def test_a_second_name_line_still_starts_a_record(tmp_path):
    # NIST-style records run together: the Name line ends the record before it, even before its peaks
    path = tmp_path / "names.msp"
    path.write_text("Name: first\nName: second\nNum Peaks: 1\n41 999\nName: third\nNum Peaks: 1\n43 999\n")
    records = list(iter_msp(path))
    assert [r.metadata["compound_name"] for r in records] == ["first", "second", "third"]
    assert [r.mz.tolist() for r in records] == [[], [41.0], [43.0]]


# ------------------------------------------------------------------------------------ Golm: Synon-coded keys


def test_golm_keys_plain_and_synon_coded(fixtures_dir):
    path = fixtures_dir / "golm.msp"
    problems: list[RecordProblem] = []
    unknown, glycine, propanediol = iter_records(path, problems)
    assert problems == []
    assert unknown.metadata["compound_name"] == "M000000_A097001-101-xxx_NA_959,45_PRED_VAR5_ALK_Unknown#bth-pae-001"
    assert unknown.mz.size == 50 and (unknown.mz[0], unknown.intensities[0]) == (70.0, 10.0)
    assert "inchikey" not in unknown.metadata and "retention_index" not in unknown.metadata

    # GMD keys as plain lines
    meta = glycine.metadata
    assert meta["inchikey"] == "FFDGPVCHZBVARC-UHFFFAOYSA-N"
    assert meta["inchi"] == "InChI=1S/C4H9NO2/c1-5(2)3-4(6)7/h3H2,1-2H3,(H,6,7)"
    assert meta["retention_index"] == "986.97"  # "RI: 986,97"
    assert meta["nominal_mass"] == "175.301"  # "MW: 175,301"
    assert meta["cas"] == "1118-68-9" and meta["kegg"] == "C01026" and meta["mst_n"] == "Glycine, N,N-dimethyl- (1TMS)"
    assert meta["synonyms"][0] == "(dimethylamino)acetic acid" and len(meta["synonyms"]) == 8  # the METB N lines
    assert glycine.mz.size == 64

    # the same keys inside Synon lines
    meta = propanediol.metadata
    assert meta["inchikey"] == "DNIAPMSPPWPWGF-UHFFFAOYSA-N"
    assert meta["retention_index"] == "988"
    assert meta["formula"] == "C9H24O2Si2" and meta["nominal_mass"] == "220.457"
    assert meta["kegg"] == "C00583" and meta["mst_n"] == "Propane-1,2-diol (2TMS)"
    assert meta["gmd_link"] == "http://gmd.mpimp-golm.mpg.de/Analytes/47a8343a-d0f4-46ec-b275-ab24c12097f2.aspx"
    assert meta["synonyms"] == ["1,2-Dihydroxypropan", "1,2-Propanediol", "propane-1,2-diol", "Propane-1,2-diol",
                                "Propane-1.2-diol", "Propylene glycol", "Sirlene"]
    assert meta["cas#"] == "17887-27-3" and meta["spectrum_id"] == "18"
    assert propanediol.mz.size == 173

    # as matchms Spectrum: matchms's own values for the keys matchms reads
    theirs = _matchms_spectra(path)
    for ours, their in zip((glycine, propanediol), theirs[1:], strict=True):
        spectrum = ours.to_spectrum()
        assert spectrum.get("retention_index") == pytest.approx(their.get("retention_index"))
        np.testing.assert_array_equal(ours.mz, their.peaks.mz)
    assert propanediol.to_spectrum().get("inchikey") == theirs[2].get("inchikey")
    assert glycine.to_spectrum().get("retention_index") == pytest.approx(986.97)


def test_edge_golm_record_with_every_key_in_synon_lines(fixtures_dir):
    (record,) = iter_records(fixtures_dir / "edge_golm.msp")
    meta = record.metadata
    assert meta["inchikey"] == "HHLFWLYXYJOTON-UHFFFAOYSA-N"
    assert meta["retention_index"] == "986.12"
    assert meta["compound_class"] == "Acid (Oxo)" and meta["cas"] == "298-12-4" and meta["kegg"] == "C00048"
    assert meta["mst_sel_mass"] == "160|116|89|100|144" and meta["ri_var5_alk"] == "TRUE"
    assert len(meta["synonyms"]) == 11 and meta["synonyms"][-1] == "oxoethanoic acid"
    assert meta["formula"] == "C6H13NO3Si" and meta["nominal_mass"] == "175.258"
    assert record.mz.size == 26 and record.intensities.max() == 1000
    (theirs,) = _matchms_spectra(fixtures_dir / "edge_golm.msp")
    spectrum = record.to_spectrum()
    for key in ("inchikey", "retention_index", "compound_class", "cas", "kegg"):
        assert spectrum.get(key) == theirs.get(key), key
    assert spectrum.get("synonyms") == theirs.get("synonyms")


def test_golm_records_round_trip(tmp_path, fixtures_dir):
    records = list(iter_records(fixtures_dir / "golm.msp")) + list(iter_records(fixtures_dir / "edge_golm.msp"))
    out = tmp_path / "copy.msp"
    assert write_spectra(records, out, intensity_scale=None) == 4
    again = list(iter_records(out))
    for before, after in zip(records, again, strict=True):
        for key in ("compound_name", "inchikey", "retention_index", "synonyms", "nominal_mass", "mst_n"):
            assert after.metadata.get(key) == before.metadata.get(key), key
        np.testing.assert_array_equal(after.mz, before.mz)


def test_nist_synon_codes(tmp_path):
    path = tmp_path / "nist_codes.msp"
    path.write_text(
        "Name: Caffeine\nSynon: Guaranine\nSynon: $:00in-source\nSynon: $:03[M+H]+\nSynon: $:04195.0877\n"
        "Synon: $:0535\nSynon: $:06Q-TOF\nSynon: $:11P\nSynon: $:28RYYVLZVUVIJVGH-UHFFFAOYSA-N\nSynon: $:99what\n"
        "Num Peaks: 1\n138 999\n\n"
        "Name: Ethanol\nInChIKey: LFQSCWFLJHTTHZ-UHFFFAOYSA-N\nSynon: $:28XXXXXXXXXXXXXX-XXXXXXXXXX-X\nSynon: $:11N\n"
        "Num Peaks: 1\n31 999\n"
    )
    caffeine, ethanol = iter_msp(path)
    meta = caffeine.metadata
    assert meta["inchikey"] == "RYYVLZVUVIJVGH-UHFFFAOYSA-N"
    assert meta["adduct"] == "[M+H]+" and meta["precursor_mz"] == "195.0877" and meta["collision_energy"] == "35"
    assert meta["instrument_type"] == "Q-TOF" and meta["ionmode"] == "positive"
    assert meta["synonyms"] == ["Guaranine", "$:00in-source", "$:99what"]  # names and unknown codes as written
    assert ethanol.metadata["inchikey"] == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"  # the InChIKey line wins
    assert ethanol.metadata["ionmode"] == "negative"
    assert caffeine.to_spectrum().get("inchikey") == "RYYVLZVUVIJVGH-UHFFFAOYSA-N"


def test_a_synonym_with_a_colon_stays_a_synonym(tmp_path):
    path = tmp_path / "names.msp"
    path.write_text("Name: x\nSynon: Vitamin B6: pyridoxine\nSynon: RI:\nNum Peaks: 1\n41 999\n")
    (record,) = iter_msp(path)
    assert record.metadata["synonyms"] == ["Vitamin B6: pyridoxine", "RI:"]
    assert "retention_index" not in record.metadata


# ------------------------------------------------------------------------------------ search --max-mz


def _record(name: str, mz: list[float], intensities: list[float]) -> SpectrumRecord:
    return SpectrumRecord({"compound_name": name}, np.array(mz), np.array(intensities))


def test_peaks_above_max_mz_are_counted_and_logged_and_scores_do_not_change(caplog):
    queries = [_record("heavy", [41, 99.6, 100.4, 150, 300], [50, 999, 10, 80, 5]),
               _record("light", [41, 43], [999, 300]),
               _record("zero", [41, 400], [999, 0])]  # a zero-intensity peak is not a dropped peak
    library = [_record("lib", [41, 100, 200], [999, 500, 20]), _record("lib2", [43, 1200], [999, 999])]
    with caplog.at_level(logging.WARNING, logger="matchms_neims"):
        result = search_library(queries, library, top_k=2, max_mz=100, query_label="queries.msp",
                                library_label="lib.msp")
    messages = [r.getMessage() for r in caplog.records if "max-mz" in r.getMessage()]
    assert messages == ["queries.msp: 2 peaks above m/z 100 (--max-mz) in 1 record were not compared",
                        "lib.msp: 2 peaks above m/z 100 (--max-mz) in 2 records were not compared"]
    assert result.query_above_max_mz == PeaksAboveMaxMz(peaks=2, records=1)
    assert result.library_above_max_mz == PeaksAboveMaxMz(peaks=2, records=2)
    assert result.max_mz == 100
    # the same scores as with those peaks removed beforehand
    cut = [_record(r.name, r.mz[np.rint(r.mz) <= 100], r.intensities[np.rint(r.mz) <= 100]) for r in queries]
    cut_library = [_record(r.name, r.mz[r.mz <= 100], r.intensities[r.mz <= 100]) for r in library]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="matchms_neims"):
        expected = search_library(cut, cut_library, top_k=2, max_mz=100)
    assert "max-mz" not in caplog.text  # nothing above: no warning
    assert expected.query_above_max_mz == PeaksAboveMaxMz() == expected.library_above_max_mz
    assert [[(h.library_index, h.score, h.matched_peaks) for h in row] for row in result.hits] == \
        [[(h.library_index, h.score, h.matched_peaks) for h in row] for row in expected.hits]


def test_spectral_matrix_counts_per_row_and_across_blocks():
    records = [_record(f"r{i}", [50, 1000, 1000.4, 1000.6, 2000], [1, 1, 1, 1, 1]) for i in range(3)]
    matrix = SpectralMatrix.from_records(records + [_record("none", [50], [1])])
    assert matrix.above_max_mz.tolist() == [2, 2, 2, 0]  # 1000.4 rounds to 1000 and is kept
    result = search_library(records, records, top_k=1, library_block_size=2)
    assert result.library_above_max_mz == PeaksAboveMaxMz(peaks=6, records=3)


def test_search_command_logs_peaks_above_max_mz_per_file(tmp_path, fixtures_dir, caplog):
    queries = tmp_path / "queries.msp"
    queries.write_text("Name: q1\nNum Peaks: 3\n41 100\n43 999\n120 50\n\nName: q2\nNum Peaks: 2\n41 999\n43 10\n\n"
                       "Name: q3\nNum Peaks: 3\n41 100\n150 999\n151 3\n")
    hits = tmp_path / "hits.tsv"
    with caplog.at_level(logging.INFO):
        assert main(["search", str(queries), str(fixtures_dir / "nist_style.msp"), "-o", str(hits),
                     "--max-mz", "100"]) == 0
    assert "queries.msp: 3 peaks above m/z 100 (--max-mz) in 2 records were not compared" in caplog.text
    assert "nist_style.msp: 2 peaks above m/z 100 (--max-mz) in 1 record were not compared" in caplog.text
    rows = list(csv.DictReader(hits.open(), delimiter="\t"))
    assert {row["query_name"] for row in rows} == {"q1", "q2", "q3"}
