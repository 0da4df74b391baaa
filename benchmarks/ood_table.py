"""Markdown table of ``matchms-neims evaluate`` reports, for comparing recipes on the out-of-distribution splits.

Usage::

    python benchmarks/ood_table.py LABEL=REPORT.json [LABEL=REPORT.json ...]

Each row: the label, sqrt cosine, Recall@1/10 of the decoy library, Recall@10 with the +-5 Da mass filter,
then sqrt cosine / Recall@10 per element class and per mass bin.
"""

from __future__ import annotations

import json
import sys

from matchms_neims.evaluation import ELEMENT_CLASSES, MASS_BINS

CLASSES = (*(name for name, _ in ELEMENT_CLASSES), "none")
MASSES = tuple(label for _, _, label in MASS_BINS)


def row(label: str, report: dict) -> str:
    matching = report["library_matching"]
    filtered = report.get("library_matching_mass_filter", {})
    cells = [label, f"{report['n_query_spectra']}", f"{report['library_size']:,}",
             f"{report['metrics']['cosine_sqrt']['mean']:.3f}", f"{matching['recall@1']:.3f}",
             f"{matching['recall@10']:.3f}", f"{filtered.get('recall@10', float('nan')):.3f}"]
    for title, labels in (("element_class", CLASSES), ("molecular_weight", MASSES)):
        bins = report["breakdowns"].get(title, {})
        for name in labels:
            entry = bins.get(name)
            cells.append(f"{entry['cosine_sqrt']:.3f} / {entry['recall@10']:.3f} ({entry['n_spectra']})"
                         if entry else "-")
    return "| " + " | ".join(cells) + " |"


def main(arguments: list[str]) -> int:
    header = ["model", "queries", "library", "sqrt cosine", "R@1", "R@10", "R@10 +-5 Da",
              *(f"{name}: cos / R@10 (n)" for name in CLASSES + MASSES)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for argument in arguments:
        label, _, path = argument.partition("=")
        with open(path, encoding="utf-8") as handle:
            print(row(label, json.load(handle)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
