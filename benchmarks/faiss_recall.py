"""Recall and speed of the approximate (FAISS) search against the exact search (docs/performance.md).

Usage (from the repository root; see docs/performance.md for the whole sequence)::

    python benchmarks/faiss_recall.py replicate nist.msp nist10.msp --copies 10
    python benchmarks/faiss_recall.py sweep q1000.msp nist10.nidx -o benchmarks/results/faiss_recall.json

``replicate`` writes ``copies`` versions of an MSP library with distinct names and spectrum ids; every copy but the
first has each peak's intensity multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` (seeded), so that the
copies are near duplicates, not exact ones, and the exact top 10 is not an arbitrary choice among tied copies.

``sweep`` runs the exact search once and the approximate one for each FAISS index kind and ``nprobe`` /
``ef_search`` / candidate count, in one process on one thread, and writes the recall of the exact top 10, the
search times and the build times as JSON. Two recalls are given: by library row (the share of the exact top-10
rows found), and tie-aware (an approximate hit also counts when its exact score equals the exact 10th score to
1e-9: identical spectra, e.g. stereoisomers, tie and either is a correct hit).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def replicate(source: Path, output: Path, copies: int, jitter: float, seed: int) -> None:
    """``copies`` versions of an MSP library, the later ones with jittered intensities (see the module docstring)."""
    text = source.read_text(encoding="utf-8")
    records = [record for record in text.split("\n\n") if record.strip()]
    rng = np.random.default_rng(seed)
    with open(output, "w", encoding="utf-8") as handle:
        for copy in range(copies):
            for record in records:
                lines = []
                for line in record.splitlines():
                    if line.startswith("Name: ") or line.startswith("spectrum_id: "):
                        line = f"{line} #{copy}"
                    elif copy and line[:1].isdigit():
                        mz, intensity = line.split()[:2]
                        factor = 1.0 + jitter * (2.0 * rng.random() - 1.0)
                        line = f"{mz} {float(intensity) * factor:.2f}"
                    lines.append(line)
                handle.write("\n".join(lines) + "\n\n")


def _recalls(exact, approximate, k: int) -> dict:
    strict, tie_aware, top1, same_set = [], [], [], []
    for exact_hits, found in zip(exact.hits, approximate.hits):
        truth = [hit.library_index for hit in exact_hits[:k]]
        if not truth:
            continue
        kth = exact_hits[min(k, len(exact_hits)) - 1].score
        rows = {hit.library_index for hit in found[:k]}
        strict.append(len(rows & set(truth)) / len(truth))
        tied = sum(1 for hit in found[:k] if hit.library_index in truth or hit.score >= kth - 1e-9)
        tie_aware.append(min(tied, len(truth)) / len(truth))
        best = exact_hits[0].score
        top1.append(bool(found) and (found[0].library_index == truth[0] or found[0].score >= best - 1e-9))
        same_set.append(rows == set(truth))
    return {"recall_at_10": float(np.mean(strict)), "recall_at_10_tie_aware": float(np.mean(tie_aware)),
            "top1_found": float(np.mean(top1)), "same_top10_set": float(np.mean(same_set))}


def _score_check(exact, approximate) -> float:
    """Largest difference between the approximate and exact score of the same (query, library row)."""
    worst = 0.0
    for exact_hits, found in zip(exact.hits, approximate.hits):
        truth = {hit.library_index: hit.score for hit in exact_hits}
        for hit in found:
            if hit.library_index in truth:
                worst = max(worst, abs(hit.score - truth[hit.library_index]))
    return worst


def sweep(queries_path: Path, index_path: Path, output: Path, kinds: list[str], work: Path, nlist: int | None,
          train_size: int | None, iterations: int | None) -> None:
    import faiss

    from matchms_neims.approximate_index import ApproximateIndex, build_approximate_index, search_approximate
    from matchms_neims.library_index import LibraryIndex
    from matchms_neims.search import SpectralMatrix, search_library

    faiss.omp_set_num_threads(1)
    index = LibraryIndex(index_path)
    queries = SpectralMatrix.from_file(queries_path, *index.settings)
    start = time.perf_counter()
    exact = search_library(queries, index, top_k=10, max_mz=index.max_mz, mz_power=index.settings[1],
                           intensity_power=index.settings[2], library_block_size=20_000)
    exact_seconds = time.perf_counter() - start
    print(f"exact: {exact_seconds:.1f} s", flush=True)
    exact_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    report = {"library_index": str(index_path), "n_library": len(index), "n_queries": len(queries),
              "threads": 1, "exact_seconds": exact_seconds, "exact_peak_rss_gb": exact_rss,
              "faiss_version": faiss.__version__, "runs": []}
    grids = {"ivf-pq": [(nprobe, factor) for nprobe in (8, 32, 64) for factor in (5, 10)],
             "ivf-flat": [(nprobe, 1) for nprobe in (8, 32, 64)],
             "hnsw": [(ef, 1) for ef in (32, 64, 128, 256)]}
    for kind in kinds:
        path = work / f"{index_path.name}.{kind}.faiss"
        summary = build_approximate_index(index, path, kind=kind, threads=1, force=True, nlist=nlist,
                                          train_size=train_size, kmeans_iterations=iterations)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(summary, f"(process peak RSS so far {rss:.2f} GB)", flush=True)
        vector_index = ApproximateIndex(path, index)
        build = {"kind": kind, "factory": summary.factory, "build_seconds": summary.seconds, "peak_rss_gb": rss,
                 "kmeans_iterations": iterations,
                 "file_mb": summary.file_size / 1e6, "train_spectra": summary.train_spectra, "dim": summary.dim}
        for knob, factor in grids[kind]:
            start = time.perf_counter()
            found = search_approximate(queries, index, top_k=10, approximate=vector_index,
                                       nprobe=knob if kind != "hnsw" else None,
                                       ef_search=knob if kind == "hnsw" else None,
                                       candidates=max(18, 10 * factor))
            seconds = time.perf_counter() - start
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            run = {**build, "peak_rss_gb_after_search": rss, "nprobe" if kind != "hnsw" else "ef_search": knob,
                   "candidates": max(18, 10 * factor),
                   "search_seconds": seconds, **_recalls(exact, found, 10),
                   "max_score_difference_shared_hits": _score_check(exact, found)}
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
        del vector_index
        path.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rep = commands.add_parser("replicate")
    rep.add_argument("source", type=Path)
    rep.add_argument("output", type=Path)
    rep.add_argument("--copies", type=int, default=10)
    rep.add_argument("--jitter", type=float, default=0.1)
    rep.add_argument("--seed", type=int, default=0)
    swp = commands.add_parser("sweep")
    swp.add_argument("queries", type=Path)
    swp.add_argument("index", type=Path)
    swp.add_argument("-o", "--output", type=Path, required=True)
    swp.add_argument("--kinds", nargs="+", default=["ivf-pq", "ivf-flat", "hnsw"])
    swp.add_argument("--nlist", type=int, default=None)
    swp.add_argument("--train-size", type=int, default=None)
    swp.add_argument("--iterations", type=int, default=None, help="k-means iterations (default FAISS's)")
    swp.add_argument("--work", type=Path, default=None, help="folder of the FAISS files built (default: the index's)")
    args = parser.parse_args()
    if args.command == "replicate":
        replicate(args.source, args.output, args.copies, args.jitter, args.seed)
    else:
        sweep(args.queries, args.index, args.output, args.kinds, args.work or args.index.parent, args.nlist,
              args.train_size, args.iterations)


if __name__ == "__main__":
    main()
