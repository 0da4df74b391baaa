"""One run comparing library search engines on the same queries at several library sizes, as ratios
(issue 19, item 5; docs/performance.md).

Usage (from the repository root)::

    matchms-neims predict ../shared/data/nist17_molecules.smi -o WORK/nist.msp         # the bundled model
    awk 'BEGIN{RS="";ORS="\\n\\n"} NR<=1000' ../shared/data/massbank_ei.msp > WORK/q1000.msp
    python benchmarks/search_ratios.py WORK/nist.msp WORK/q1000.msp --work WORK \\
        -o benchmarks/results/search_ratios.json --sizes 10000 100000 1000000

For each size a library of that many entries is cut from the predicted library, repeated where it is smaller, every
copy after the first with jittered intensities (``faiss_recall.replicate``: near duplicates, not exact ties). Each
engine then runs in a fresh process on one thread (``OMP_NUM_THREADS=1`` and the like), which reports its own time
and peak RSS:

- ``msp``: ``search_library`` reading the MSP file (what ``matchms-neims search LIB.msp`` does);
- ``index_build`` and ``index``: ``build_index`` once, then ``search_library`` from the ``.nidx``;
- ``cosine_greedy``: matchms ``CosineGreedy(tolerance=0.5, mz_power=1, intensity_power=0.5)`` (the same score) on
  the first ``--greedy-queries`` queries against the first ``--greedy-entries`` entries, extrapolated per pair to the
  whole product (marked ``extrapolated``);
- ``flash_build`` and ``flash``: ms-entropy's ``FlashEntropySearch`` (open search, entropy similarity, m/z
  tolerance 0.45 so that unit-m/z peaks stay apart, no noise removal), index built once, then the queries one by
  one with the top 10 taken from its score array.

The hits tables of ``msp`` and ``index`` are compared byte for byte. The JSON holds every time, RSS and ratio to
``index``; the PNG draws the times per size on a log scale.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faiss_recall import replicate  # noqa: E402

ENGINES = ("msp", "index_build", "index", "cosine_greedy", "flash_build", "flash")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMBA_NUM_THREADS")}


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts anew at exec (``ru_maxrss`` keeps the parent's peak at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _library(work: Path, base: Path, size: int) -> Path:
    """The first ``size`` entries of the base library repeated (jittered copies), as an MSP file in ``work``."""
    path = work / f"library_{size}.msp"
    if path.is_file():
        return path
    n_base = sum(1 for record in base.read_text(encoding="utf-8").split("\n\n") if record.strip())
    copies = -(-size // n_base)
    whole = work / f"library_{size}.copies.msp"
    replicate(base, whole, copies, jitter=0.1, seed=0)
    records = whole.read_text(encoding="utf-8").split("\n\n")[:size]
    path.write_text("\n\n".join(records) + "\n\n", encoding="utf-8")
    whole.unlink()
    return path


def _flash_spectra(path: Path) -> list[dict]:
    from matchms_neims.io import iter_records

    spectra = []
    for number, record in enumerate(iter_records(path)):
        keep = record.intensities > 0
        peaks = np.column_stack([record.mz[keep], record.intensities[keep]]).astype(np.float32)
        if len(peaks):
            # open search ignores the precursor; above every peak, so that no peak is removed as the precursor's
            spectra.append({"id": number, "precursor_mz": float(peaks[:, 0].max()) + 10.0, "peaks": peaks})
    return spectra


def run_one(engine: str, queries: Path, library: Path, index: Path, hits: Path, greedy_queries: int,
            greedy_entries: int) -> dict:
    """Run one engine in this process; returns its seconds (the work alone) and figures."""
    from matchms_neims.library_index import build_index
    from matchms_neims.search import search_library

    if engine in ("msp", "index"):  # the same search, from the MSP file or from its index
        start = time.perf_counter()
        result = search_library(queries, library if engine == "msp" else index, library_block_size=20_000)
        seconds = time.perf_counter() - start
        result.to_tsv(hits)
        return {"seconds": seconds, "n_library": result.n_library}
    if engine == "index_build":
        start = time.perf_counter()
        summary = build_index(library, index, force=True)
        return {"seconds": time.perf_counter() - start, "bytes": index.stat().st_size,
                "n_library": summary.n_spectra}
    if engine == "cosine_greedy":
        from matchms import calculate_scores
        from matchms.similarity import CosineGreedy

        from matchms_neims.io import iter_records

        query_spectra = [record.to_spectrum() for _, record in zip(range(greedy_queries), iter_records(queries))]
        references = [record.to_spectrum() for _, record in zip(range(greedy_entries), iter_records(library))]
        cosine = CosineGreedy(tolerance=0.5, mz_power=1.0, intensity_power=0.5)
        calculate_scores(references[:2], query_spectra[:2], cosine)  # numba compiles on the first call
        start = time.perf_counter()
        calculate_scores(references, query_spectra, cosine)
        seconds = time.perf_counter() - start
        return {"seconds_measured": seconds, "pairs_measured": len(references) * len(query_spectra)}
    if engine in ("flash_build", "flash"):
        import shutil

        from ms_entropy import FlashEntropySearch

        flash_dir = index.with_suffix(".flash")
        if engine == "flash_build":
            start = time.perf_counter()
            flash = FlashEntropySearch(max_ms2_tolerance_in_da=0.45)
            flash.build_index(_flash_spectra(library), precursor_ions_removal_da=None, noise_threshold=0.0,
                              min_ms2_difference_in_da=0.9, clean_spectra=True)
            seconds = time.perf_counter() - start
            shutil.rmtree(flash_dir, ignore_errors=True)
            flash.write(flash_dir)  # for the "flash" run (not timed)
            return {"seconds": seconds}
        flash = FlashEntropySearch(max_ms2_tolerance_in_da=0.45)
        flash.read(flash_dir)
        start = time.perf_counter()
        n_queries = 0
        for spectrum in _flash_spectra(queries):
            scores = flash.search(precursor_mz=spectrum["precursor_mz"], peaks=spectrum["peaks"],
                                  ms2_tolerance_in_da=0.45, method="open", precursor_ions_removal_da=None,
                                  noise_threshold=0.0, min_ms2_difference_in_da=0.9)["open_search"]
            top = np.argpartition(-scores, min(10, len(scores) - 1))[:10]
            top[np.argsort(-scores[top], kind="stable")]
            n_queries += 1
        return {"seconds": time.perf_counter() - start, "n_queries": n_queries}
    raise ValueError(f"unknown engine {engine!r}")


def _in_fresh_process(engine: str, args, library: Path, index: Path, hits: Path) -> dict:
    command = [sys.executable, __file__, "--one", engine, str(args.library), str(args.queries), "--work",
               str(args.work), "--library-path", str(library), "--index-path", str(index), "--hits-path", str(hits),
               "--greedy-queries", str(args.greedy_queries), "--greedy-entries", str(args.greedy_entries)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, check=False)
    if done.returncode:
        raise RuntimeError(f"{engine} on {library.name} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_seconds"] = time.perf_counter() - start
    return figures


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"msp": "search, MSP", "index": "search, index", "cosine_greedy": "matchms CosineGreedy (extrap.)",
              "flash": "ms-entropy flash search", "index_build": "index build", "flash_build": "flash index build"}
    sizes = [int(size) for size in results["sizes"]]
    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    width = 0.8 / len(labels)
    for position, engine in enumerate(labels):
        values = [results["sizes"][str(size)][engine]["seconds"] for size in sizes]
        axis.bar(np.arange(len(sizes)) + (position - len(labels) / 2 + 0.5) * width, values, width,
                 label=labels[engine])
    axis.set_xticks(np.arange(len(sizes)), [f"{size:,} entries" for size in sizes])
    axis.set_yscale("log")
    axis.set_ylabel(f"seconds, {results['n_queries']:,} queries, one thread")
    axis.set_title(f"Library search: {results['n_queries']:,} EI queries against predicted libraries")
    axis.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path, help="the predicted library (MSP) the sizes are cut from")
    parser.add_argument("queries", type=Path, help="the query spectra (MSP), e.g. 1,000 MassBank spectra")
    parser.add_argument("--work", type=Path, required=True, help="folder for the libraries, indexes and hits")
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON to write (a PNG beside it)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--greedy-queries", type=int, default=100)
    parser.add_argument("--greedy-entries", type=int, default=10_000)
    parser.add_argument("--one", default=None, choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--library-path", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--index-path", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hits-path", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        figures = run_one(args.one, args.queries, args.library_path, args.index_path, args.hits_path,
                          args.greedy_queries, args.greedy_entries)
        print(json.dumps({**figures, "peak_rss_mb": _peak_rss_mb()}))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    from matchms_neims.io import count_records, detect_format

    n_queries = count_records(args.queries, detect_format(args.queries))
    results: dict = {"queries": str(args.queries), "n_queries": n_queries, "threads": 1, "sizes": {},
                     "machine": os.uname().machine, "cores": os.cpu_count()}
    for size in args.sizes:
        library = _library(args.work, args.library, size)
        index = args.work / f"library_{size}.nidx"
        row = {}
        for engine in ENGINES:
            hits = args.work / f"hits_{size}_{engine}.tsv"
            row[engine] = _in_fresh_process(engine, args, library, index, hits)
            print(size, engine, json.dumps(row[engine]), flush=True)
        greedy = row["cosine_greedy"]
        greedy["seconds"] = greedy["seconds_measured"] / greedy["pairs_measured"] * n_queries * size
        greedy["extrapolated"] = True
        same = (args.work / f"hits_{size}_msp.tsv").read_bytes() == (args.work / f"hits_{size}_index.tsv").read_bytes()
        row["index_hits_equal_msp_hits"] = same
        row["ratios_to_index_search"] = {engine: row[engine]["seconds"] / row["index"]["seconds"]
                                         for engine in ENGINES}
        results["sizes"][str(size)] = row
        if args.output:
            args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.output:
        _plot(results, args.output.with_suffix(".png"))


if __name__ == "__main__":
    main()
