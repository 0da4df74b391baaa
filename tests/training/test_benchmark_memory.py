"""The memory tool: estimates per mode, advice for a RAM size, measured resident memory, the command."""

from __future__ import annotations

import json

import pytest

from matchms_neims.cli import main
from matchms_neims_training.commands.benchmark_memory import (
    METADATA_BYTES_PER_SPECTRUM,
    MODES,
    benchmark,
    estimate,
    format_plan,
    load_and_measure,
    memoized_fingerprint_bytes,
)
from matchms_neims_training.config import DataConfig
from matchms_neims_training.data.cache import build_cache
from matchms_neims_training.data.dataset import LazyMassSpecDataset


def test_estimate_counts_bytes_per_mode():
    plan = estimate(1_000_000, n_bins=501, n_features=6144)
    assert plan.bytes_per_spectrum["in_memory"] == METADATA_BYTES_PER_SPECTRUM + 4 * (501 + 6144)
    assert plan.bytes_per_spectrum["lazy_memoized"] == METADATA_BYTES_PER_SPECTRUM + memoized_fingerprint_bytes(6144)
    assert memoized_fingerprint_bytes(6144) < 6144 / 10
    assert plan.total_bytes("lazy") == METADATA_BYTES_PER_SPECTRUM * 1_000_000
    # each DataLoader worker keeps its own memoised fingerprints
    workers = estimate(1000, 501, 6144, num_workers=4)
    assert workers.total_bytes("lazy_memoized") == 1000 * (METADATA_BYTES_PER_SPECTRUM
                                                             + 4 * memoized_fingerprint_bytes(6144))


@pytest.mark.parametrize(("ram_gb", "advice"), [(64, "lazy_memoized"), (1.5, "memoize_features: false"),
                                                (0.5, "none fits")])
def test_recommendation_follows_the_ram(ram_gb, advice):
    # 1 M spectra: in memory 27 GB, memoised 1.0 GB, metadata 0.6 GB; half of the RAM may be used
    assert advice in estimate(1_000_000, 501, 6144, ram_gb=ram_gb).recommendation()


def test_measured_memory_orders_the_modes(tmp_path, fixtures_dir):
    config = DataConfig(spectra=str(fixtures_dir / "massbank_mini.msp"), cache=str(tmp_path / "cache.h5"))
    cache = build_cache(config, progress=False)
    featurizer = {"kind": "student_fingerprint", "max_mz": 500, "n_bits": 4096, "radius": 2, "n_count_bits": 2048}
    # each mode in a fresh process, as the tool runs them: memory this test process freed earlier would be
    # reused and hide the growth
    results = {result["mode"]: result for result in benchmark(str(cache), featurizer, 10_000)}
    n = results["in_memory"]["n_spectra"]
    assert n > 50 and all(result["n_spectra"] == n for result in results.values())
    # the float32 arrays alone are 4 * (501 + 6144) bytes per spectrum
    assert results["in_memory"]["rss_bytes"] >= 0.9 * n * 4 * (501 + 6144)
    assert results["lazy"]["rss_bytes"] < results["in_memory"]["rss_bytes"]
    with pytest.raises(ValueError, match="unknown mode"):
        load_and_measure("mmap", str(cache), featurizer, 10)


def test_lazy_dataset_without_memo_keeps_no_features(tmp_path, fixtures_dir):
    from matchms_neims.featurize import Featurizer

    config = DataConfig(spectra=str(fixtures_dir / "massbank_mini.msp"), cache=str(tmp_path / "cache.h5"))
    cache = build_cache(config, progress=False)
    memo = LazyMassSpecDataset(cache, "train", Featurizer(n_bits=512))
    plain = LazyMassSpecDataset(cache, "train", Featurizer(n_bits=512), memoize_features=False)
    for item in range(5):
        assert (memo[item]["features"] == plain[item]["features"]).all()
    assert len(memo._feature_cache) > 0 and len(plain._feature_cache) == 0


def test_estimate_command(tmp_path, capsys):
    output = tmp_path / "plan.json"
    assert main(["benchmark-memory", "--mode", "estimate", "--n-compounds", "2000000", "--ram-gb", "3",
                 "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "2,000,000 spectra" in printed and "recommendation: lazy with data.memoize_features: false" in printed
    report = json.loads(output.read_text())
    assert report["measured"] is None and set(report["estimate"]) == set(MODES)
    assert main(["benchmark-memory", "--mode", "estimate"]) == 2  # needs --n-compounds


def test_format_plan_with_measurements_reports_measured_ratios():
    plan = estimate(100, 501, 6144)
    measured = [{"mode": "in_memory", "rss_bytes": 3_000_000, "bytes_per_spectrum": 30_000},
                {"mode": "lazy_memoized", "rss_bytes": 600_000, "bytes_per_spectrum": 6_000},
                {"mode": "lazy", "rss_bytes": 100_000, "bytes_per_spectrum": 1_000}]
    text = format_plan(plan, measured)
    assert "in_memory / lazy_memoized: 5.0x (measured)" in text and "in_memory / lazy: 30.0x (measured)" in text
