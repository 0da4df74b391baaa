"""Tests of the unit-resolution library search (matchms_neims.search)."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
from matchms import Spectrum
from matchms.similarity import CosineGreedy

from matchms_neims.io import SpectrumRecord, write_spectra
from matchms_neims.search import (
    DEFAULT_TOLERANCE,
    TSV_COLUMNS,
    SearchResult,
    SpectralMatrix,
    search_library,
)
from matchms_neims.spectra import bin_peak_lists, bin_spectrum, vector_to_spectrum

POWER_PAIRS = [(0.0, 1.0), (1.0, 0.5), (3.0, 0.6)]


def _metadata(prefix: str, i: int) -> dict:
    return {
        "compound_name": f"{prefix}-compound-{i}",
        "inchikey": f"{prefix.upper()}KEY{i:010d}-UHFFFAOYSA-N",
        "smiles": "C" * (i % 7 + 1),
        "spectrum_id": f"{prefix}{i}",
    }


def _spectrum(mz: np.ndarray, intensities: np.ndarray, metadata: dict) -> Spectrum:
    return Spectrum(
        mz=np.asarray(mz, dtype=float),
        intensities=np.asarray(intensities, dtype=float),
        metadata=metadata,
        metadata_harmonization=False,
    )


def _random_peaks(rng: np.random.Generator, mz_high: int = 150, max_peaks: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Integer m/z peaks with integer intensities and base peak 999 (survives MSP/MGF round trips exactly)."""
    n_peaks = int(rng.integers(1, max_peaks + 1))
    mz = np.sort(rng.choice(np.arange(1, mz_high + 1), size=n_peaks, replace=False)).astype(float)
    intensities = rng.integers(1, 1000, size=n_peaks).astype(float)
    intensities[rng.integers(n_peaks)] = 999.0
    return mz, intensities


def _perturb(rng: np.random.Generator, mz: np.ndarray, intensities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A noisy variant of a spectrum: some peaks dropped, some added, intensities jittered."""
    keep = rng.random(mz.size) > 0.3
    keep[np.argmax(intensities)] = True
    extra = rng.choice(np.arange(1, 151), size=5, replace=False).astype(float)
    new_mz = np.union1d(mz[keep], extra)
    new_int = rng.integers(1, 1000, size=new_mz.size).astype(float)
    lookup = dict(zip(mz[keep], intensities[keep]))
    for j, value in enumerate(new_mz):
        if value in lookup:
            new_int[j] = max(1.0, np.round(lookup[value] * rng.uniform(0.7, 1.3)))
    new_int = np.round(new_int / new_int.max() * 999)
    return new_mz, np.maximum(new_int, 1.0)


@pytest.fixture(scope="module")
def spectra() -> tuple[list[Spectrum], list[Spectrum]]:
    """(queries, library): 12 queries, most of them noisy variants of library spectra, and 40 library spectra."""
    rng = np.random.default_rng(20240611)
    library = [_spectrum(*_random_peaks(rng), _metadata("lib", i)) for i in range(40)]
    queries = []
    for i in range(12):
        if i % 4 == 3:
            mz, intensities = _random_peaks(rng)
        else:
            source = library[int(rng.integers(len(library)))]
            mz, intensities = _perturb(rng, source.peaks.mz, source.peaks.intensities)
        queries.append(_spectrum(mz, intensities, _metadata("q", i)))
    return queries, library


def _cosine_greedy(library: list[Spectrum], queries: list[Spectrum], mz_power: float, intensity_power: float):
    similarity = CosineGreedy(tolerance=DEFAULT_TOLERANCE, mz_power=mz_power, intensity_power=intensity_power)
    return similarity.matrix(library, queries, progress_bar=False)  # shape (n_library, n_queries)


def _assert_matches_cosine_greedy(result: SearchResult, reference) -> None:
    for query_index, hits in enumerate(result.hits):
        for hit in hits:
            expected = reference[hit.library_index, query_index]
            assert hit.score == pytest.approx(float(expected["score"]), abs=1e-6)
            assert hit.matched_peaks == int(expected["matches"])


@pytest.mark.parametrize(("mz_power", "intensity_power"), POWER_PAIRS)
def test_scores_and_matches_equal_cosine_greedy(spectra, mz_power, intensity_power):
    queries, library = spectra
    result = search_library(
        queries, library, top_k=len(library), mz_power=mz_power, intensity_power=intensity_power, block_size=5
    )
    assert result.n_queries == len(queries)
    assert result.n_library == len(library)
    assert all(len(hits) == len(library) for hits in result.hits)
    reference = _cosine_greedy(library, queries, mz_power, intensity_power)
    _assert_matches_cosine_greedy(result, reference)
    # The noisy variants really overlap with their source, so the comparison is not only on zeros.
    assert max(hits[0].score for hits in result.hits) > 0.5


def test_binning_names_the_spectrum_whose_peak_lists_differ_in_length():
    mz = [np.array([10.0, 20.0, 30.0]), np.array([40.0, 50.0])]
    intensities = [np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])]  # same total, wrong per spectrum
    with pytest.raises(ValueError, match="spectrum 0 has 3 m/z values but 2 intensities"):
        bin_peak_lists(mz, intensities, max_mz=100)
    with pytest.raises(ValueError, match="2 m/z lists but 1 intensity lists"):
        bin_peak_lists(mz, intensities[:1], max_mz=100)
    vectors, _ = bin_peak_lists(mz, [np.ones(3), np.ones(2)], max_mz=100)
    assert vectors[0, [10, 20, 30]].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("mz_power", "intensity_power"), POWER_PAIRS)
def test_non_integer_mz_is_binned_and_high_mz_dropped(spectra, mz_power, intensity_power):
    _, library = spectra
    rng = np.random.default_rng(7)
    max_mz = 100
    queries = []
    for i in range(6):
        mz, intensities = _random_peaks(rng, mz_high=140, max_peaks=40)
        # Jitter m/z below the rounding boundary and add a second peak in the same nominal bin.
        jittered = mz + rng.uniform(-0.3, 0.3, size=mz.size)
        mz_all = np.concatenate([jittered, mz[:3] + 0.2])
        int_all = np.concatenate([intensities, intensities[:3] * 0.5])
        order = np.argsort(mz_all)
        queries.append(_spectrum(mz_all[order], int_all[order], _metadata("hr", i)))
    result = search_library(
        queries, library, top_k=len(library), mz_power=mz_power, intensity_power=intensity_power, max_mz=max_mz
    )

    def binned(spectrum: Spectrum) -> Spectrum:
        vector = bin_spectrum(spectrum.peaks.mz, spectrum.peaks.intensities, max_mz)
        return vector_to_spectrum(vector, dict(spectrum.metadata))

    reference = _cosine_greedy([binned(s) for s in library], [binned(s) for s in queries], mz_power, intensity_power)
    _assert_matches_cosine_greedy(result, reference)


def test_matrix_rows_are_normalised_binned_spectra(spectra):
    _, library = spectra
    matrix = SpectralMatrix.from_spectra(library, max_mz=200, mz_power=0.0, intensity_power=1.0)
    assert matrix.vectors.shape == (len(library), 201)
    assert matrix.vectors.dtype == np.float32
    for row, spectrum in zip(matrix.vectors, library):
        vector = bin_spectrum(spectrum.peaks.mz, spectrum.peaks.intensities, 200)
        np.testing.assert_allclose(row, vector / np.linalg.norm(vector), rtol=1e-6, atol=1e-7)
    assert matrix.metadata[3] == {
        "name": "lib-compound-3",
        "inchikey": _metadata("lib", 3)["inchikey"],
        "smiles": _metadata("lib", 3)["smiles"],
        "spectrum_id": "lib3",
    }


def test_top_k_ordering_and_identical_spectrum_first(spectra):
    queries, library = spectra
    probe = library[17]
    result = search_library([probe, *queries], library, top_k=5)
    assert all(len(hits) == 5 for hits in result.hits)
    first = result.hits[0][0]
    assert first.library_index == 17
    assert first.score == pytest.approx(1.0, abs=1e-6)
    assert first.score <= 1.0
    assert first.matched_peaks == len(probe.peaks.mz)
    assert (first.name, first.spectrum_id) == ("lib-compound-17", "lib17")
    assert first.inchikey == _metadata("lib", 17)["inchikey"]

    full = search_library([probe, *queries], library, top_k=len(library))
    for hits, all_hits in zip(result.hits, full.hits):
        assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
        keys = [(-hit.score, hit.library_index) for hit in all_hits]
        assert keys == sorted(keys)
        # The top 5 are the first 5 of the complete ranking.
        assert [hit.library_index for hit in hits] == [hit.library_index for hit in all_hits[:5]]


def test_top_k_larger_than_library(spectra):
    queries, library = spectra
    result = search_library(queries[:3], library[:4], top_k=50)
    assert result.n_library == 4
    for hits in result.hits:
        assert [hit.rank for hit in hits] == [1, 2, 3, 4]
        assert sorted(hit.library_index for hit in hits) == [0, 1, 2, 3]


def test_ties_are_broken_by_library_index():
    # The query shares peaks with library spectra 3 and 6 only; everything else scores 0.
    library = [_spectrum([10.0 + i], [1.0], _metadata("lib", i)) for i in range(9)]
    library[3] = _spectrum([50.0, 60.0], [1.0, 1.0], _metadata("lib", 3))
    library[6] = _spectrum([50.0, 70.0], [1.0, 0.5], _metadata("lib", 6))
    query = _spectrum([50.0, 60.0], [1.0, 1.0], _metadata("q", 0))
    hits = search_library([query], library, top_k=5).hits[0]
    assert [hit.library_index for hit in hits] == [3, 6, 0, 1, 2]
    assert [hit.score for hit in hits[2:]] == [0.0, 0.0, 0.0]


def test_empty_spectra_score_zero(spectra):
    _, library = spectra
    empty = _spectrum(np.zeros(0), np.zeros(0), _metadata("empty", 0))
    above_range = _spectrum([900.0, 950.0], [1.0, 2.0], _metadata("high", 0))  # all peaks above max_mz
    result = search_library([empty, above_range], [*library[:5], empty], top_k=3, max_mz=500)
    for hits in result.hits:
        assert [hit.score for hit in hits] == [0.0, 0.0, 0.0]
        assert [hit.matched_peaks for hit in hits] == [0, 0, 0]
        assert [hit.library_index for hit in hits] == [0, 1, 2]
    # An empty spectrum inside the library never matches.
    result = search_library(library[:5], [*library[:5], empty], top_k=6)
    for hits in result.hits:
        empty_hit = next(hit for hit in hits if hit.library_index == 5)
        assert (empty_hit.score, empty_hit.matched_peaks) == (0.0, 0)


@pytest.mark.parametrize("extension", ["msp", "mgf"])
def test_files_give_the_same_results_as_spectrum_lists(spectra, tmp_path, extension):
    queries, library = spectra
    query_path = tmp_path / f"queries.{extension}"
    library_path = tmp_path / f"library.{extension}"
    write_spectra(queries, query_path, intensity_scale=None)
    write_spectra(library, library_path, intensity_scale=None)
    from_lists = search_library(queries, library, top_k=7)
    from_files = search_library(str(query_path), library_path, top_k=7)
    assert from_files.to_rows() == from_lists.to_rows()
    assert from_files.queries[0]["name"] == "q-compound-0"
    # A prebuilt SpectralMatrix is reused as is.
    matrix = SpectralMatrix.from_file(library_path)
    assert search_library(query_path, matrix, top_k=7).to_rows() == from_lists.to_rows()


def test_spectral_matrix_settings_must_match(spectra):
    queries, library = spectra
    matrix = SpectralMatrix.from_spectra(library, mz_power=0.0, intensity_power=1.0)
    with pytest.raises(ValueError, match="mz_power"):
        search_library(queries, matrix)
    result = search_library(queries, matrix, mz_power=0.0, intensity_power=1.0)
    assert result.n_library == len(library)


def test_records_are_accepted(spectra):
    queries, library = spectra
    records = [SpectrumRecord(dict(s.metadata), s.peaks.mz, s.peaks.intensities) for s in library]
    assert search_library(queries, records, top_k=4).to_rows() == search_library(queries, library, top_k=4).to_rows()


def _same_hits(rows: list[dict], expected: list[dict]) -> bool:
    """Equal hit tables, scores to float32 rounding (matrix products of other shapes round differently)."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert row["score"] == pytest.approx(want["score"], abs=1e-6)
        assert {**row, "score": 0} == {**want, "score": 0}
    return True


@pytest.mark.parametrize("library_block_size", [1, 3, 7, 40])
def test_streamed_library_blocks_give_the_same_hits(spectra, tmp_path, library_block_size):
    queries, library = spectra
    probe = library[17]
    expected = search_library([probe, *queries], library, top_k=6).to_rows()
    streamed = search_library([probe, *queries], library, top_k=6, library_block_size=library_block_size, block_size=5)
    assert _same_hits(streamed.to_rows(), expected) and streamed.n_library == len(library)
    path = tmp_path / "library.msp"
    write_spectra(library, path, intensity_scale=None)
    from_file = search_library([probe, *queries], path, top_k=6, library_block_size=library_block_size)
    assert _same_hits(from_file.to_rows(), expected)
    # ties across block borders are still broken by the library index
    flat = [_spectrum([10.0 + i], [1.0], _metadata("lib", i)) for i in range(9)]
    hits = search_library([_spectrum([99.0], [1.0], _metadata("q", 0))], flat, top_k=4, library_block_size=2).hits[0]
    assert [hit.library_index for hit in hits] == [0, 1, 2, 3]


def test_mass_window_prefilter(spectra):
    queries, library = spectra
    library = [spectrum.clone() for spectrum in library]
    for i, spectrum in enumerate(library):
        spectrum.set("nominal_mass", 100 + i)
    library[5].set("nominal_mass", None)  # unknown mass: never filtered out
    query = library[17].clone()
    query.set("nominal_mass", 117)
    no_mass = library[20].clone()
    no_mass.set("nominal_mass", None)
    result = search_library([query, no_mass], library, top_k=10, mass_window=1, library_block_size=8)
    assert sorted(hit.library_index for hit in result.hits[0]) == [5, 16, 17, 18]
    assert result.hits[0][0].library_index == 17 and [hit.rank for hit in result.hits[0]] == [1, 2, 3, 4]
    assert len(result.hits[1]) == 10 and result.hits[1][0].library_index == 20
    exact = library[17].clone()
    exact.set("nominal_mass", None)
    exact.set("exact_mass", 116.9)
    assert [hit.library_index for hit in search_library([exact], library, top_k=2, mass_window=0).hits[0]] == [17, 5]
    with pytest.raises(ValueError, match="mass_window"):
        search_library([query], library, mass_window=-1)


def test_to_tsv(spectra, tmp_path):
    queries, library = spectra
    result = search_library(queries, library, top_k=4)
    path = result.to_tsv(tmp_path / "out" / "hits.tsv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert tuple(rows[0]) == TSV_COLUMNS
    assert len(rows) == 1 + len(queries) * 4
    first = dict(zip(rows[0], rows[1]))
    assert first["query_index"] == "0"
    assert first["query_name"] == "q-compound-0"
    assert first["rank"] == "1"
    assert len(first["score"].split(".")[1]) == 6
    assert float(first["score"]) == pytest.approx(result.hits[0][0].score, abs=1e-6)
    assert first["library_id"] == result.hits[0][0].spectrum_id
    assert first["library_smiles"] == result.hits[0][0].smiles
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.benchmark
def test_benchmark_1000_queries_against_25000_library_files(tmp_path):
    rng = np.random.default_rng(0)
    n_library, n_queries = 25_000, 1_000
    mz_range = np.arange(20, 601)
    records = []
    for i in range(n_library):
        n_peaks = int(rng.integers(10, 151))
        mz = np.sort(rng.choice(mz_range, size=n_peaks, replace=False)).astype(float)
        intensities = rng.integers(1, 1000, size=n_peaks).astype(float)
        records.append(SpectrumRecord(_metadata("lib", i), mz, intensities))
    library_path = tmp_path / "library.msp"
    query_path = tmp_path / "queries.msp"
    write_spectra(records, library_path)
    query_records = []
    for i in range(n_queries):
        source = records[int(rng.integers(n_library))]
        mz, intensities = _perturb(rng, source.mz, source.intensities)
        query_records.append(SpectrumRecord(_metadata("q", i), mz, intensities))
    write_spectra(query_records, query_path)

    start = time.perf_counter()
    result = search_library(query_path, library_path, top_k=10)
    elapsed = time.perf_counter() - start
    print(f"\nsearch_library: {n_queries} queries x {n_library} library spectra from MSP files: {elapsed:.2f} s")
    assert result.n_queries == n_queries
    assert result.n_library == n_library
    assert all(len(hits) == 10 for hits in result.hits)
    assert elapsed < 15.0


def test_hits_do_not_depend_on_the_block_sizes_and_identical_spectra_tie_by_library_order():
    """Identical library spectra (stereoisomers) must score exactly alike whatever the BLAS shapes."""
    rng = np.random.default_rng(7)
    spectra = []
    for i in range(997):
        mz = np.sort(rng.choice(np.arange(30, 400), size=40, replace=False)).astype(float)
        spectra.append(_spectrum(mz, rng.random(40) ** 3 + 1e-3, _metadata("lib", i)))
    twins = [15, 402, 690, 901]  # the same spectrum four times, far apart
    for i in twins[1:]:
        spectra[i] = _spectrum(spectra[twins[0]].peaks.mz, spectra[twins[0]].peaks.intensities, _metadata("lib", i))
    queries = [_spectrum(spectra[15].peaks.mz, spectra[15].peaks.intensities * rng.uniform(0.5, 1.5, 40),
                         _metadata("q", 0)), *spectra[::97]]
    results = [search_library(queries, spectra, top_k=10, library_block_size=size, block_size=query_block).to_rows()
               for size, query_block in ((997, 1024), (500, 3), (97, 1), (13, 7))]
    assert all(rows == results[0] for rows in results[1:])
    first = [row for row in results[0] if row["query_index"] == 0][:4]
    assert [row["library_index"] for row in first] == twins and len({row["score"] for row in first}) == 1


def test_huge_intensities_do_not_overflow_into_nan_scores():
    query = _spectrum([41.0, 41.2, 43.0], [1e308, 1e308, 5e307], _metadata("q", 0))  # two peaks in bin 41
    library = [_spectrum([41.0, 43.0], [1.0, 0.25], _metadata("lib", 0)), _spectrum([43.0], [1.0], _metadata("lib", 1))]
    hits = search_library([query], library, top_k=2).hits[0]
    assert all(np.isfinite(hit.score) for hit in hits)
    assert hits[0].library_index == 0 and hits[0].score == pytest.approx(1.0, abs=1e-6)
    # the single-spectrum binning (training data, evaluation) sums the bin the same way
    vector = bin_spectrum(query.peaks.mz, query.peaks.intensities, 100)
    assert np.isfinite(vector).all() and vector[41] == 1.0 and vector[43] == pytest.approx(0.25)
