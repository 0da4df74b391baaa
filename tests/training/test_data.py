"""Molecule-level splits, the HDF5 cache and the lazy dataset."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from matchms_neims.chemistry import parse_smiles
from matchms_neims.featurize import Featurizer, compact_features, expand_features, student_fingerprint
from matchms_neims_training.config import DataConfig
from matchms_neims_training.data.cache import build_cache, read_spectra
from matchms_neims_training.data.dataset import LazyMassSpecDataset
from matchms_neims_training.data.splits import assign_splits, contributor_of, scaffold_of


def test_random_split_by_molecule_is_deterministic_and_never_leaks():
    keys = [f"KEY{i % 300:04d}" for i in range(900)]  # 300 molecules, 3 spectra each
    a = assign_splits(keys, seed=1)
    assert a == assign_splits(list(reversed(keys)), seed=1)
    assert a != assign_splits(keys, seed=2)
    counts = {name: sum(v == name for v in a.values()) for name in ("train", "val", "test")}
    assert counts == {"train": 240, "val": 30, "test": 30}
    assert set(a) == set(keys)  # one split per molecule by construction of the mapping


def test_scaffold_split_keeps_scaffolds_together():
    smiles = ["c1ccccc1C", "c1ccccc1CC", "c1ccccc1O", "C1CCCCC1C", "C1CCCCC1O", "c1ccncc1C", "c1ccncc1O",
              "CCO", "CCCO", "c1ccc2ccccc2c1", "c1ccc2ccccc2c1C", "O=C1CCCC1", "O=C1CCCC1C"] * 2
    keys = [f"M{i}" for i in range(len(smiles))]
    assignment = assign_splits(keys, smiles, method="scaffold", fractions=(0.6, 0.2, 0.2), seed=0)
    by_scaffold = {}
    for key, smi in zip(keys, smiles):
        by_scaffold.setdefault(scaffold_of(smi), set()).add(assignment[key])
    assert all(len(splits) == 1 for splits in by_scaffold.values())
    assert scaffold_of("c1ccccc1CC") == "c1ccccc1" and scaffold_of("CCO") == ""


def test_contributor_split_holds_out_the_molecules_of_other_labs():
    keys = ["A", "A", "B", "C", "C", "D", "E", "F", "G", "H"]
    contributors = ["Tokyo", "Osaka", "Osaka", "RIKEN", "RIKEN", "Tokyo", "Tokyo", "Tokyo", "Tokyo", "Tokyo"]
    assignment = assign_splits(keys, method="contributor", fractions=(0.8, 0.2, 0.0), seed=0,
                               contributors=contributors)
    assert {key for key, name in assignment.items() if name == "test"} == {"B", "C"}  # never measured by Tokyo
    assert assignment["A"] != "test"  # measured by Tokyo too
    assert sum(name == "val" for name in assignment.values()) == 1  # 6 Tokyo molecules * 0.2 / (0.8 + 0.2)
    assert set(assignment) == set(keys)
    with pytest.raises(ValueError, match="contributor of every record"):
        assign_splits(keys, method="contributor")


def test_contributor_of_massbank_accessions():
    assert contributor_of("MSBNK-Fac_Eng_Univ_Tokyo-JP000001") == "Fac_Eng_Univ_Tokyo"
    assert contributor_of("MSBNK-RIKEN-PR100001") == "RIKEN"
    assert contributor_of("NIST-12345") == "NIST"
    assert contributor_of("") == ""


def test_all_split_puts_every_molecule_in_training():
    assert set(assign_splits(["A", "B", "C"], method="all").values()) == {"train"}


def test_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(["A"], fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="unknown split method"):
        assign_splits(["A"], method="cluster")


def test_cache_is_built_reused_and_rebuilt(tmp_path, fixtures_dir):
    source = tmp_path / "spectra.msp"
    shutil.copy(fixtures_dir / "massbank_mini.msp", source)
    config = DataConfig(spectra=str(source), cache=str(tmp_path / "cache.h5"))
    cache = build_cache(config, progress=False)
    with h5py.File(cache, "r") as handle:
        n = handle["spectra"].shape[0]
        assert handle["spectra"].shape[1] == 501 and handle["spectra"].compression == "gzip"
        keys = handle["molecule_key"].asstr()[:]
        split = handle["split"][:]
        fingerprint = handle.attrs["fingerprint"]
    assert 0 < n < 117  # derivatives and inconsistent records were dropped
    for key in set(keys):  # a molecule never lands in two splits
        assert len(set(split[keys == key])) == 1
    mtime = cache.stat().st_mtime_ns
    assert build_cache(config, progress=False) == cache and cache.stat().st_mtime_ns == mtime  # reused
    with open(source, "a") as handle:  # source changed -> rebuilt
        handle.write("\nName: extra\nSMILES: CCO\nNum Peaks: 2\n31 999\n46 200\n")
    build_cache(config, progress=False)
    with h5py.File(cache, "r") as handle:
        assert handle.attrs["fingerprint"] != fingerprint
        assert handle["spectra"].shape[0] == n + 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing column", "short column", "old format"])
def test_corrupt_or_stale_cache_is_detected_and_rebuilt(tmp_path, fixtures_dir, caplog, damage):
    config = DataConfig(spectra=str(fixtures_dir / "massbank_mini.msp"), cache=str(tmp_path / "cache.h5"))
    cache = build_cache(config, progress=False)
    good = read_spectra(cache, np.arange(5))
    if damage == "garbage":
        cache.write_bytes(b"not an HDF5 file at all" * 100)
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    else:
        with h5py.File(cache, "r+") as handle:
            if damage == "missing column":
                del handle["inchikey"]
            elif damage == "short column":
                data = handle["nominal_mass"][:-1]
                del handle["nominal_mass"]
                handle["nominal_mass"] = data
            else:
                handle.attrs["fingerprint"] = "written by an older cache format"
    with caplog.at_level("WARNING", logger="matchms_neims_training.data.cache"):
        assert build_cache(config, progress=False) == cache
    expected = {"garbage": "unreadable", "truncated": "unreadable", "missing column": "incomplete (no inchikey)",
                "short column": "different lengths", "old format": "stale"}[damage]
    assert expected in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(read_spectra(cache, np.arange(5)), good)


def test_lazy_dataset_reads_spectra_from_disk(tmp_path, fixtures_dir):
    config = DataConfig(spectra=str(fixtures_dir / "massbank_mini.msp"), cache=str(tmp_path / "cache.h5"))
    cache = build_cache(config, progress=False)
    dataset = LazyMassSpecDataset(cache, "train", Featurizer(n_bits=512))
    assert not hasattr(dataset, "spectra")  # only metadata is held in RAM
    item = dataset[3]
    row = int(dataset.indices[3])
    np.testing.assert_array_equal(item["target"].numpy(), read_spectra(cache, [row])[0])
    assert item["features"].shape == (512,)
    assert item["target"].max() == pytest.approx(1.0)
    assert int(item["nominal_mass"]) == dataset.metadata.nominal_mass[row]
    assert item["target"][int(item["nominal_mass"]) + 6 :].sum() == 0  # consistent with its structure


def test_memoised_fingerprints_are_compact_and_expand_to_the_same_features(tmp_path, fixtures_dir):
    fingerprint = student_fingerprint(parse_smiles("CCCCCCCCc1ccccc1O"))
    compact = compact_features(fingerprint)
    assert compact.dtype == np.int32 and compact.nbytes < fingerprint.nbytes / 50
    np.testing.assert_array_equal(expand_features(compact, fingerprint.size), fingerprint)
    capped = expand_features(compact_features(np.array([0, 3, 0, 300], dtype=np.float32)), 4)
    np.testing.assert_array_equal(capped, [0, 3, 0, 255])  # counts above 255 are capped, as in the cache
    assert expand_features(compact_features(np.zeros(5, dtype=np.float32)), 5).sum() == 0

    config = DataConfig(spectra=str(fixtures_dir / "massbank_mini.msp"), cache=str(tmp_path / "cache.h5"))
    featurizer = Featurizer(kind="student_fingerprint")
    dataset = LazyMassSpecDataset(build_cache(config, progress=False), "train", featurizer)
    first = dataset[0]["features"]
    smiles = dataset.metadata.columns["smiles"][int(dataset.indices[0])]
    assert smiles in dataset._feature_cache  # memoised compactly, read back equal
    np.testing.assert_array_equal(dataset[0]["features"].numpy(), first.numpy())
    np.testing.assert_array_equal(first.numpy(), np.minimum(featurizer.features_of_mol(parse_smiles(smiles)), 255))
