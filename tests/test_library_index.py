"""Tests of the library index (matchms_neims.library_index): same hits as the MSP file, settings and source
recorded, atomic and checked writing, damaged files refused, ``predict --index`` end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from matchms_neims import library_index
from matchms_neims.cli import main
from matchms_neims.io import SpectrumRecord, iter_records, write_spectra
from matchms_neims.library_index import (
    LibraryIndex,
    LibraryIndexError,
    build_index,
    default_index_path,
    is_library_index,
)
from matchms_neims.search import SpectralMatrix, search_library
from matchms_neims.utils import file_sha256

N_LIBRARY = 900


def _record(rng: np.random.Generator, i: int, mz=None, intensities=None) -> SpectrumRecord:
    if mz is None:
        n_peaks = int(rng.integers(3, 60))
        mz = np.sort(rng.choice(np.arange(0, 420), size=n_peaks, replace=False)).astype(float)
        intensities = rng.integers(1, 1000, size=n_peaks).astype(float)
        intensities[rng.integers(n_peaks)] = 999.0
        if i % 97 == 5:  # a peak above the default max_mz of the tests below (300)
            mz[-1] = 350.0
    metadata = {"compound_name": f"compound {i} \u03b2", "inchikey": f"KEY{i:011d}-UHFFFAOYSA-N",
                "smiles": "C" * (i % 9 + 1), "spectrum_id": f"lib{i}", "nominal_mass": str(100 + i % 200)}
    return SpectrumRecord(metadata, np.asarray(mz, float), np.asarray(intensities, float))


@pytest.fixture(scope="module")
def library_files(tmp_path_factory):
    """(library.msp, queries.msp): 900 spectra with identical pairs (exact ties) and 40 queries."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("index")
    records = [_record(rng, i) for i in range(N_LIBRARY)]
    for i in range(0, N_LIBRARY, 50):  # identical spectra under other names: ties broken by library order
        records[i + 1] = _record(rng, i + 1, records[i].mz, records[i].intensities)
    queries = []
    for i in range(40):
        source = records[int(rng.integers(N_LIBRARY))]
        intensities = np.maximum(1.0, np.round(source.intensities * rng.uniform(0.6, 1.4, source.mz.size)))
        queries.append(SpectrumRecord({"compound_name": f"query {i}", "nominal_mass": source.metadata["nominal_mass"]},
                                      source.mz, intensities))
    write_spectra(records, folder / "library.msp")
    write_spectra(queries, folder / "queries.msp")
    return folder / "library.msp", folder / "queries.msp"


def _assert_same_hits(expected, actual, tolerance: float = 1e-5) -> None:
    assert actual.n_library == expected.n_library and actual.n_queries == expected.n_queries
    assert actual.library_above_max_mz == expected.library_above_max_mz
    for hits_a, hits_b in zip(expected.hits, actual.hits):
        assert len(hits_a) == len(hits_b)
        for position, (a, b) in enumerate(zip(hits_a, hits_b)):
            assert b.score == pytest.approx(a.score, abs=tolerance)
            if a.library_index != b.library_index:  # only ties (within the tolerance) may swap
                tied = [h for h in hits_a if abs(h.score - a.score) <= tolerance]
                assert len(tied) > 1 or position == len(hits_a) - 1
                continue
            assert (a.name, a.inchikey, a.smiles, a.spectrum_id, a.matched_peaks) == (
                b.name, b.inchikey, b.smiles, b.spectrum_id, b.matched_peaks)


@pytest.mark.parametrize(("mz_power", "intensity_power", "mass_window"), [(1.0, 0.5, None), (0.0, 1.0, 2.0)])
def test_the_index_gives_the_hits_of_the_msp_file(library_files, tmp_path, mz_power, intensity_power, mass_window):
    library, queries = library_files
    index = tmp_path / "library.nidx"
    settings = {"max_mz": 300, "mz_power": mz_power, "intensity_power": intensity_power}
    summary = build_index(library, index, chunk_rows=128, **settings)  # 8 chunks; blocks cross them
    assert summary.n_spectra == N_LIBRARY and not summary.up_to_date
    options = {"top_k": 12, "mass_window": mass_window, **settings}
    expected = search_library(SpectralMatrix.from_file(queries, **settings),  # one block: no running floor
                              SpectralMatrix.from_file(library, **settings), **options)
    from_msp = search_library(queries, library, library_block_size=300, **options)
    from_index = search_library(queries, index, library_block_size=300, **options)
    with LibraryIndex(index) as opened:
        in_other_blocks = search_library(queries, opened, library_block_size=1000, block_size=7, **options)
    for result in (from_msp, from_index, in_other_blocks):
        _assert_same_hits(expected, result)
    assert [[hit.library_index for hit in hits] for hits in from_index.hits] == [
        [hit.library_index for hit in hits] for hits in from_msp.hits]
    assert from_index.library_above_max_mz.peaks > 0
    tied = [hits for hits in from_index.hits if len({round(h.score, 9) for h in hits[:2]}) == 1]
    assert tied and all(hits[0].library_index < hits[1].library_index for hits in tied)


def test_the_index_holds_the_binned_vectors_metadata_settings_and_source(library_files, tmp_path):
    library, _ = library_files
    index = build_index(library, tmp_path / "lib.nidx", chunk_rows=100, max_mz=300).path
    matrix = SpectralMatrix.from_file(library, max_mz=300)
    with LibraryIndex(index) as opened:
        assert len(opened) == N_LIBRARY and opened.n_chunks == 9 and opened.dtype == "float32"
        assert opened.settings == (300, 1.0, 0.5)
        assert opened.source["sha256"] == file_sha256(library)
        assert opened.source["size"] == library.stat().st_size and opened.source["name"] == "library.msp"
        assert opened.info["version"] == library_index.FORMAT_VERSION
        opened.verify()
        block = opened.matrix(150, 420)  # rows from three chunks
        np.testing.assert_array_equal(block.vectors, matrix.vectors[150:420])
        np.testing.assert_array_equal(block.peaks, matrix.peaks[150:420])
        np.testing.assert_array_equal(block.masses, matrix.masses[150:420])
        np.testing.assert_array_equal(block.above_max_mz, matrix.above_max_mz[150:420])
        assert list(block.metadata) == matrix.metadata[150:420]
        assert block.metadata[0]["name"] == "compound 150 \u03b2"
        assert opened.nnz == int(matrix.peaks.sum())


def test_other_search_settings_are_refused_naming_the_index(library_files, tmp_path):
    library, queries = library_files
    index = build_index(library, tmp_path / "lib.nidx", mz_power=0.0, intensity_power=1.0).path
    with pytest.raises(LibraryIndexError, match=r"lib\.nidx.*built with.*'mz_power': 0\.0.*asks for.*'mz_power': 1\.0"):
        search_library(queries, index)
    # the command line takes the index's settings when none is given, and refuses a different one
    hits = tmp_path / "hits.tsv"
    assert main(["search", str(queries), str(index), "-o", str(hits)]) == 0
    expected = search_library(queries, library, mz_power=0.0, intensity_power=1.0)
    rows = list(csv.DictReader(hits.open(), delimiter="\t"))
    assert [float(row["score"]) for row in rows[:10]] == pytest.approx([h.score for h in expected.hits[0]], abs=1e-6)
    assert main(["search", str(queries), str(index), "-o", str(tmp_path / "other.tsv"), "--mz-power", "2"]) == 2
    assert not (tmp_path / "other.tsv").exists()


def test_an_index_is_kept_when_up_to_date_and_rebuilt_when_the_source_changes(library_files, tmp_path):
    library, _ = library_files
    copy = tmp_path / "lib.msp"
    copy.write_bytes(library.read_bytes())
    first = build_index(copy)
    assert first.path == tmp_path / "lib.nidx" == default_index_path(copy)
    assert build_index(copy).up_to_date
    assert not build_index(copy, force=True).up_to_date
    assert not build_index(copy, mz_power=2.0).up_to_date  # other settings
    with copy.open("a") as handle:
        handle.write("\nName: one more\nNum Peaks: 1\n50 999\n")
    again = build_index(copy)
    assert not again.up_to_date and again.n_spectra == N_LIBRARY + 1
    # --errors needs the records read, so an up-to-date index is rebuilt and the errors file written
    with copy.open("a") as handle:
        handle.write("\nName: broken\nNum Peaks: 1\n50 abc\n")
    build_index(copy)
    errors = tmp_path / "errors.tsv"
    listed = build_index(copy, errors_path=errors)
    assert not listed.up_to_date and errors.is_file() and "broken" in errors.read_text()
    assert default_index_path("x/lib.msp.gz") == default_index_path("x/lib.mgf")


def test_a_failed_build_leaves_no_index_and_no_temporary_file(library_files, tmp_path, monkeypatch):
    library, _ = library_files
    index = tmp_path / "lib.nidx"
    calls = []

    def failing(block, *args):
        calls.append(len(block))
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return encode(block, *args)

    encode = library_index._encode_chunk
    monkeypatch.setattr(library_index, "_encode_chunk", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_index(library, index, chunk_rows=100)
    assert list(tmp_path.iterdir()) == []
    # an index already there is left as it was
    monkeypatch.setattr(library_index, "_encode_chunk", encode)
    build_index(library, index, chunk_rows=100)
    before = index.read_bytes()
    calls.clear()
    monkeypatch.setattr(library_index, "_encode_chunk", failing)
    with pytest.raises(RuntimeError):
        build_index(library, index, chunk_rows=100, force=True)
    assert index.read_bytes() == before and [path.name for path in tmp_path.iterdir()] == ["lib.nidx"]


def test_truncated_or_damaged_indexes_are_refused_naming_the_file(library_files, tmp_path, caplog):
    library, queries = library_files
    good = build_index(library, tmp_path / "good.nidx", chunk_rows=200).path
    data = good.read_bytes()
    footer = json.loads(data[data.rindex(b'{"format"'):-32])

    truncated = tmp_path / "truncated.nidx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(LibraryIndexError, match=r"truncated\.nidx: truncated or incomplete"):
        LibraryIndex(truncated)
    empty = tmp_path / "empty.nidx"
    empty.write_bytes(b"")
    with pytest.raises(LibraryIndexError, match=r"empty\.nidx: truncated or empty"):
        search_library(queries, empty)
    not_index = tmp_path / "library.nidx"
    not_index.write_bytes(library.read_bytes())
    with pytest.raises(LibraryIndexError, match=r"library\.nidx: not a matchms-neims library index"):
        search_library(queries, not_index)

    offset, count, _crc = footer["chunks"][2]["arrays"]["values"]
    flipped = bytearray(data)
    flipped[offset + 4 * (count // 2)] ^= 0x40
    damaged = tmp_path / "damaged.nidx"
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(LibraryIndexError, match=r"damaged\.nidx: damaged library index: chunk 2 \(spectra "
                                                r"400\.\.599\), array 'values' fails its checksum"):
        search_library(queries, damaged)
    footer_damaged = bytearray(data)
    footer_damaged[len(data) - 40] ^= 0x01
    (tmp_path / "footer.nidx").write_bytes(bytes(footer_damaged))
    with pytest.raises(LibraryIndexError, match="footer fails its checksum"):
        LibraryIndex(tmp_path / "footer.nidx")

    hits = tmp_path / "hits.tsv"
    assert main(["search", str(queries), str(truncated), "-o", str(hits)]) == 2
    assert not hits.exists() and "truncated.nidx" in caplog.text
    assert is_library_index(good) and is_library_index(not_index) and not is_library_index(library)


def test_float16_index_is_smaller_with_scores_close_to_float32(library_files, tmp_path):
    library, queries = library_files
    full = build_index(library, tmp_path / "f32.nidx")
    half = build_index(library, tmp_path / "f16.nidx", dtype="float16")
    assert half.file_size < 0.8 * full.file_size
    _assert_same_hits(search_library(queries, full.path), search_library(queries, half.path), tolerance=2e-3)


def test_index_command_and_search_with_report_need_the_source(library_files, tmp_path, capsys):
    library, queries = library_files
    copy = tmp_path / "lib.msp"
    copy.write_bytes(library.read_bytes())
    assert main(["index", str(copy), "--max-mz", "300", "-q"]) == 0
    assert "indexed 900 spectra" in capsys.readouterr().out
    assert main(["index", str(copy), "--max-mz", "300", "-q"]) == 0
    assert "up to date" in capsys.readouterr().out
    copy.unlink()
    hits = tmp_path / "hits.tsv"
    assert main(["search", str(queries), str(tmp_path / "lib.nidx"), "-o", str(hits), "--report",
                 str(tmp_path / "report.html")]) == 2
    assert not hits.exists()


def test_predict_index_writes_the_index_of_the_library_beside_it(tmp_path, tiny_model_path, fixtures_dir, capsys):
    library = tmp_path / "predicted.msp"
    assert main(["predict", str(fixtures_dir / "molecules_small.smi"), "-o", str(library), "--model",
                 str(tiny_model_path), "--index", "-q"]) == 0
    index = tmp_path / "predicted.nidx"
    assert "indexed" in capsys.readouterr().out and index.exists()
    with LibraryIndex(index) as opened:
        assert len(opened) == len(list(iter_records(library)))
        assert opened.source["sha256"] == file_sha256(library)
    from_msp, from_index = tmp_path / "msp.tsv", tmp_path / "index.tsv"
    queries = fixtures_dir / "queries.mgf"
    assert main(["search", str(queries), str(library), "-o", str(from_msp), "-q"]) == 0
    assert main(["search", str(queries), str(index), "-o", str(from_index), "-q"]) == 0
    assert from_index.read_text() == from_msp.read_text()
    # an explicit path; --index may not name the library itself
    assert main(["predict", str(fixtures_dir / "molecules_small.smi"), "-o", str(library), "--model",
                 str(tiny_model_path), "--index", str(tmp_path / "other.nidx"), "-q"]) == 0
    assert (tmp_path / "other.nidx").exists()
    assert main(["predict", str(fixtures_dir / "molecules_small.smi"), "-o", str(library), "--model",
                 str(tiny_model_path), "--index", str(library), "-q"]) == 2


def test_the_running_floor_selects_what_a_full_selection_selects_above_it():
    from matchms_neims.search import _top_k, _top_k_above

    rng = np.random.default_rng(3)
    scores = np.round(rng.random((60, 2000), dtype=np.float32), 3)  # many exact ties
    scores[5] = 0.5  # a row where everything ties: crowded, full selection
    floor = np.quantile(scores, 0.995, axis=1).astype(np.float32)
    floor[7] = 2.0  # nothing above: all fillers
    full, above = _top_k(scores, 20), _top_k_above(scores, 20, floor)
    assert above.shape == full.shape
    for row in range(len(scores)):
        assert len(set(above[row])) == 20
        kept = [i for i in full[row] if scores[row, i] >= floor[row]]
        assert list(above[row][: len(kept)]) == kept


def test_shards_of_the_index_merge_to_the_hits_of_one_search(library_files, tmp_path):
    from matchms_neims.search import merge_search_results

    library, queries = library_files
    index = build_index(library, tmp_path / "library.nidx", chunk_rows=128, max_mz=300).path
    options = {"top_k": 12, "max_mz": 300, "library_block_size": 300}
    whole = search_library(queries, index, **options)
    parts = [search_library(queries, index, library_rows=(start, min(start + 300, N_LIBRARY)), **options)
             for start in range(0, N_LIBRARY, 300)]
    assert [part.n_library for part in parts] == [300, 300, 300]
    assert all(hit.library_index >= 300 for hits in parts[1].hits for hit in hits)  # rows of the whole index
    merged = merge_search_results(parts[::-1], top_k=12)  # the order of the parts does not matter
    assert merged.hits == whole.hits and merged.n_library == whole.n_library
    assert merged.library_above_max_mz == whole.library_above_max_mz
    with pytest.raises(ValueError, match="library index"):
        search_library(queries, library, library_rows=(0, 300), **options)


def test_sharded_search_writes_the_hits_table_of_one_search_and_resumes(library_files, tmp_path, monkeypatch):
    from matchms_neims import sharded_search
    from matchms_neims.sharded_search import search_sharded

    library, queries = library_files
    index = build_index(library, tmp_path / "library.nidx", chunk_rows=128, max_mz=300).path
    plain = tmp_path / "plain.tsv"
    search_library(queries, index, top_k=12, max_mz=300, library_block_size=150).to_tsv(plain)
    output = tmp_path / "sharded.tsv"
    options = {"top_k": 12, "library_block_size": 150, "shard_entries": 300, "progress": False}
    real_search = sharded_search.search_library
    calls = []

    def failing_third_shard(*args, **kwargs):
        calls.append(kwargs["library_rows"])
        if kwargs["library_rows"][0] == 600:
            raise RuntimeError("node lost")
        return real_search(*args, **kwargs)

    monkeypatch.setattr(sharded_search, "search_library", failing_third_shard)
    with pytest.raises(RuntimeError, match="node lost"):
        search_sharded(queries, index, output, **options)
    assert not output.exists() and sorted(p.name for p in (tmp_path / "sharded.tsv.shards").glob("shard-*")) == [
        "shard-000000.json", "shard-000001.json"]
    monkeypatch.setattr(sharded_search, "search_library", real_search)
    with pytest.raises(ValueError, match="settings differ"):  # resuming with another top k is refused
        search_sharded(queries, index, output, **{**options, "top_k": 5}, resume=True)
    calls.clear()
    monkeypatch.setattr(sharded_search, "search_library",
                        lambda *a, **k: calls.append(k["library_rows"]) or real_search(*a, **k))
    result = search_sharded(queries, index, output, **options, resume=True)
    assert calls == [(600, 900)]  # the finished shards are kept
    assert output.read_bytes() == plain.read_bytes() and result.n_library == N_LIBRARY
    assert not (tmp_path / "sharded.tsv.shards").exists()
    with pytest.raises(ValueError, match="multiple of library_block_size"):
        search_sharded(queries, index, output, **{**options, "shard_entries": 200})


def test_search_command_with_two_processes_gives_the_hits_of_one(library_files, tmp_path):
    import subprocess
    import sys

    library, queries = library_files
    index = build_index(library, tmp_path / "library.nidx", chunk_rows=128, max_mz=300).path
    command = [sys.executable, "-m", "matchms_neims.cli", "-q", "search", str(queries), str(index),
               "--library-block-size", "150"]
    subprocess.run([*command, "-o", str(tmp_path / "one.tsv")], check=True, timeout=300)
    done = subprocess.run([*command, "-o", str(tmp_path / "two.tsv"), "--devices", "2"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "two.tsv").read_bytes() == (tmp_path / "one.tsv").read_bytes()
    assert done.stdout.count("hits written") == 1  # printed by rank 0 alone
    assert sorted(path.name for path in tmp_path.iterdir()) == ["library.nidx", "one.tsv", "two.tsv"]


def test_a_folder_of_indexes_is_one_library(library_files, tmp_path, capsys, caplog):
    library, queries = library_files
    records = list(iter_records(library))
    whole = build_index(library, tmp_path / "whole.nidx", max_mz=300).path
    folder = tmp_path / "parts"
    folder.mkdir()
    for number, (start, stop) in enumerate([(0, 450), (450, N_LIBRARY)]):  # built apart, e.g. on two nodes
        write_spectra(records[start:stop], tmp_path / f"part{number}.msp")
        build_index(tmp_path / f"part{number}.msp", folder / f"part-{number:03d}.nidx", max_mz=300)
    common = ["search", str(queries), "--library-block-size", "150", "--top-k", "7", "-q"]
    assert main([*common, str(whole), "-o", str(tmp_path / "whole.tsv")]) == 0
    assert main([*common, str(folder), "-o", str(tmp_path / "parts.tsv"), "--shard-entries", "300"]) == 0
    assert (tmp_path / "parts.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    assert f"searched against {N_LIBRARY} library spectra" in capsys.readouterr().out
    build_index(tmp_path / "part1.msp", folder / "part-002.nidx", max_mz=400)  # other settings
    assert main([*common, str(folder), "-o", str(tmp_path / "other.tsv")]) != 0
    assert "built with different settings" in caplog.text and not (tmp_path / "other.tsv").exists()
