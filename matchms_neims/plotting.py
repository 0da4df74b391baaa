"""Pictures of search hits: mirror plots of two unit-resolution spectra and RDKit structure depictions.

:func:`mirror_plot` draws a query spectrum upwards and a library (hit) spectrum downwards, both binned to
nominal m/z exactly as :func:`matchms_neims.search.search_library` bins them, with the peaks the two share
(the search's ``matched_peaks``) highlighted. :func:`structure_svg` and :func:`structure_png` depict a
molecule from its SMILES, or draw a placeholder that says why there is no structure.

matplotlib (Agg backend, no pyplot state) and RDKit's drawing code are imported inside the functions, so
importing this module is cheap. matchms's own :func:`matchms.plotting.plot_spectra_mirror` is not used: it
does not mark matched peaks, fails on a spectrum without peaks and draws on pyplot's global figure.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matchms import Spectrum

from matchms_neims.io import SpectrumRecord, as_record
from matchms_neims.spectra import bin_peak_lists
from matchms_neims.utils import atomic_output

#: Highest m/z a mirror plot shows by default: that of :func:`matchms_neims.search.search_library`.
DEFAULT_PLOT_MAX_MZ = 1000
#: Peaks labelled with their m/z in each half of a mirror plot (the most intense ones).
LABELLED_PEAKS = 5

QUERY_COLOR = "#1f4e9c"
HIT_COLOR = "#c2410c"
UNMATCHED_COLOR = "#a8b0bd"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class UnitPeaks:
    """A spectrum binned to nominal m/z: the occupied bins and their intensities (base peak 1)."""

    mz: np.ndarray
    intensities: np.ndarray

    def __len__(self) -> int:
        return int(self.mz.size)


def unit_peaks(spectrum: Spectrum | SpectrumRecord, max_mz: int = DEFAULT_PLOT_MAX_MZ) -> UnitPeaks:
    """Bin a spectrum to nominal m/z ``0..max_mz`` as the search does, base peak 1.

    Peaks are rounded with :func:`numpy.rint`; intensities of one bin are summed; peaks with a non-finite
    m/z or intensity, a non-positive intensity or an m/z outside ``0..max_mz`` are dropped.

    Parameters
    ----------
    spectrum
        A :class:`matchms.Spectrum` or :class:`~matchms_neims.io.SpectrumRecord`.
    max_mz
        Highest nominal m/z kept.

    Returns
    -------
    UnitPeaks
        Integer m/z (as float64, ascending) and relative intensities in ``(0, 1]``.
    """
    record = as_record(spectrum)
    if np.size(record.mz) != np.size(record.intensities):
        raise ValueError(f"record {record.name or '(unnamed)'!r}: {np.size(record.mz)} m/z values but "
                         f"{np.size(record.intensities)} intensities")
    vector = bin_peak_lists([record.mz], [record.intensities], max_mz)[0][0]
    occupied = np.flatnonzero(vector > 0)
    return UnitPeaks(occupied.astype(np.float64), vector[occupied])




def _label(record: SpectrumRecord, given: str | None, fallback: str) -> str:
    if given is not None:
        return given
    return record.name or fallback


def ellipsized(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and an ellipsis when longer (labels of plots and reports)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _labelled_peaks(peaks: UnitPeaks, count: int = LABELLED_PEAKS, spacing: float = 6.0,
                    floor: float = 0.05) -> list[int]:
    """Indices of the most intense peaks to label: at least ``spacing`` m/z apart and ``floor`` of the base peak."""
    chosen: list[int] = []
    for index in np.argsort(-peaks.intensities, kind="stable"):
        if len(chosen) == count or peaks.intensities[index] < floor:
            break
        if all(abs(peaks.mz[index] - peaks.mz[other]) >= spacing for other in chosen):
            chosen.append(int(index))
    return chosen


def _draw_half(ax, peaks: UnitPeaks, matched: np.ndarray, sign: float, color: str) -> None:
    """Stems of one spectrum (``sign`` +1 up, -1 down), matched peaks in ``color``, the rest grey."""
    heights = sign * 100.0 * peaks.intensities
    for mask, stem_color, width in ((~matched, UNMATCHED_COLOR, 0.9), (matched, color, 1.3)):
        if mask.any():
            ax.vlines(peaks.mz[mask], 0.0, heights[mask], colors=stem_color, linewidth=width, zorder=3)
    if not len(peaks):
        ax.text(0.5, 0.5 if sign > 0 else -0.5, "no peaks", transform=ax.get_yaxis_transform(),
                ha="center", va="center", color="#666666", fontsize=9)
        return
    for index in _labelled_peaks(peaks):
        ax.annotate(f"{peaks.mz[index]:.0f}", (peaks.mz[index], heights[index]),
                    xytext=(0, 2 if sign > 0 else -2), textcoords="offset points", ha="center",
                    va="bottom" if sign > 0 else "top", fontsize=7, color="#333333", zorder=4)


def mirror_plot(
    query: Spectrum | SpectrumRecord,
    hit: Spectrum | SpectrumRecord,
    output: str | os.PathLike | None = None,
    *,
    query_label: str | None = None,
    hit_label: str | None = None,
    score: float | None = None,
    max_mz: int = DEFAULT_PLOT_MAX_MZ,
    title: str | None = None,
    width: float = 7.2,
    height: float = 3.4,
    dpi: int = 110,
    palette: bool = True,
) -> bytes | Path:
    """Draw the query spectrum up and the hit spectrum down (unit resolution) as a PNG.

    Both spectra are binned to nominal m/z as the search bins them (:func:`unit_peaks`) and scaled to a base
    peak of 100 %. Peaks at an m/z present in both spectra (the search's ``matched_peaks``) are drawn in
    colour, the others in grey; the most intense peaks carry their m/z.

    Parameters
    ----------
    query, hit
        The two spectra (:class:`matchms.Spectrum` or :class:`~matchms_neims.io.SpectrumRecord`).
    output
        PNG file to write (atomically); ``None`` returns the PNG bytes instead.
    query_label, hit_label
        Text of the two legends (default: the records' compound names).
    score
        Score shown in the title; ``None`` computes it with the search's default weighting.
    max_mz
        Highest nominal m/z considered, as in the search.
    title
        Title line (default: score and matched peaks).
    width, height, dpi
        Figure size in inches and resolution.
    palette
        Store the PNG with a 64-colour palette (a third of the size of the RGBA image, no visible change).

    Returns
    -------
    bytes or pathlib.Path
        The PNG bytes, or the path written when ``output`` is given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    query_record, hit_record = as_record(query), as_record(hit)
    query_peaks, hit_peaks = unit_peaks(query_record, max_mz), unit_peaks(hit_record, max_mz)
    shared = np.intersect1d(query_peaks.mz, hit_peaks.mz)
    query_matched, hit_matched = np.isin(query_peaks.mz, shared), np.isin(hit_peaks.mz, shared)
    if score is None:  # the search's score of the pair, default weighting
        from matchms_neims.similarity import NeimsCosine

        score = float(NeimsCosine(max_mz=max_mz).pair(query_record, hit_record)["score"])
    if title is None:
        title = f"cosine score {score:.3f}  \u00b7  {shared.size} matched peaks (coloured; grey: not matched)"

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    _draw_half(ax, query_peaks, query_matched, 1.0, QUERY_COLOR)
    _draw_half(ax, hit_peaks, hit_matched, -1.0, HIT_COLOR)

    all_mz = np.concatenate([query_peaks.mz, hit_peaks.mz])
    low = max(0.0, np.floor((all_mz.min() - 10) / 10) * 10) if all_mz.size else 0.0
    high = np.ceil((all_mz.max() + 10) / 10) * 10 if all_mz.size else 100.0
    ax.set_xlim(low, high)
    ax.set_ylim(-118, 118)
    ax.set_yticks([-100, -50, 0, 50, 100])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{abs(value):.0f}"))
    ax.axhline(0.0, color="#555555", linewidth=0.8, zorder=4)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6, zorder=0)
    ax.set_xlabel("m/z", style="italic", fontsize=9)
    ax.set_ylabel("relative intensity (%)", fontsize=9)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.text(0.995, 0.98, "query", transform=ax.transAxes, ha="right", va="top", fontsize=8, color=QUERY_COLOR)
    ax.text(0.995, 0.02, "hit", transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color=HIT_COLOR)

    handles = [
        Line2D([], [], color=QUERY_COLOR, linewidth=2,
               label=ellipsized(f"query: {_label(query_record, query_label, 'query')}", 48)),
        Line2D([], [], color=HIT_COLOR, linewidth=2,
               label=ellipsized(f"hit: {_label(hit_record, hit_label, 'hit')}", 48)),
    ]
    # fixed margins in inches (title line, legend line, axis labels), whatever the figure size
    top = 1.0 - 0.62 / height
    figure.subplots_adjust(left=0.62 / width, right=1.0 - 0.22 / width, bottom=0.45 / height, top=top)
    figure.suptitle(title, fontsize=9.5, y=1.0 - 0.06 / height, va="top")
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, top + 0.04 / height), ncol=2,
                  fontsize=7.5, frameon=False, handlelength=1.2, columnspacing=1.5, borderpad=0.1)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    png = _palette_png(buffer.getvalue()) if palette else buffer.getvalue()
    if output is None:
        return png
    path = Path(output)
    with atomic_output(path, "wb") as handle:
        handle.write(png)
    return path


def _palette_png(png: bytes, colors: int = 64) -> bytes:
    """The PNG re-encoded with a palette of ``colors`` colours (Pillow, which matplotlib depends on)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        quantized = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    quantized.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- structures

def _molecule(smiles: str | None):
    """``(mol, None)`` for a SMILES RDKit parses, else ``(None, reason)``."""
    from rdkit import Chem

    from matchms_neims.chemistry import MAX_SMILES_LENGTH  # importing it also silences RDKit's parse errors

    text = "" if smiles is None else str(smiles).strip()
    if not text:
        return None, "no structure (SMILES missing)"
    if len(text) > MAX_SMILES_LENGTH:
        return None, "no structure (SMILES too long)"
    mol = Chem.MolFromSmiles(text)
    if mol is None or mol.GetNumAtoms() == 0:
        return None, "no structure (unparsable SMILES)"
    return mol, None


def _draw_molecule(drawer, mol) -> None:
    from rdkit.Chem.Draw import rdMolDraw2D

    options = drawer.drawOptions()
    options.clearBackground = True
    options.fixedBondLength = 28
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()


def _placeholder_svg(reason: str, width: int, height: int) -> str:
    """A light box with ``reason`` centred in it."""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}px' height='{height}px' "
            f"viewBox='0 0 {width} {height}'><rect x='1' y='1' width='{width - 2}' height='{height - 2}' "
            "fill='#f8fafc' stroke='#cbd5e1' stroke-dasharray='4 3'/>"
            f"<text x='{width / 2:g}' y='{height / 2:g}' text-anchor='middle' dominant-baseline='middle' "
            f"font-family='sans-serif' font-size='13' fill='#64748b'>{html.escape(reason)}</text></svg>")


def _placeholder_png(reason: str, width: int, height: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    figure.patches.append(Rectangle((0.005, 0.005), 0.99, 0.99, transform=figure.transFigure, facecolor="#f8fafc",
                                    edgecolor="#cbd5e1", linestyle="--"))
    figure.text(0.5, 0.5, reason, ha="center", va="center", fontsize=9.5, color="#64748b")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def structure_svg(smiles: str | None, width: int = 260, height: int = 200) -> str:
    """An SVG depiction of a molecule (RDKit), or a placeholder text when the SMILES is missing or unparsable.

    Parameters
    ----------
    smiles
        The molecule; ``None`` or ``""`` draws "no structure (SMILES missing)".
    width, height
        Size in pixels.

    Returns
    -------
    str
        A complete SVG document (without the XML declaration, so that it can be inlined in HTML).
    """
    from rdkit.Chem.Draw import rdMolDraw2D

    svg = _depiction(smiles, width, height, rdMolDraw2D.MolDraw2DSVG, _placeholder_svg)
    if svg.startswith("<?xml"):
        svg = svg.split("?>", 1)[1].lstrip()
    return svg


def structure_png(smiles: str | None, width: int = 260, height: int = 200) -> bytes:
    """A PNG depiction of a molecule (RDKit's Cairo drawer); a placeholder text when there is no structure.

    Parameters
    ----------
    smiles
        The molecule; ``None``, ``""`` or an unparsable SMILES draws a placeholder saying so.
    width, height
        Size in pixels.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    from rdkit.Chem.Draw import rdMolDraw2D

    return _depiction(smiles, width, height, rdMolDraw2D.MolDraw2DCairo, _placeholder_png)


def _depiction(smiles: str | None, width: int, height: int, drawer_class, placeholder):
    """The drawing text of RDKit's ``drawer_class`` (SVG or Cairo PNG), or ``placeholder(reason, width, height)``
    when there is no structure to draw."""
    width, height = int(width), int(height)
    mol, reason = _molecule(smiles)
    if mol is None:
        return placeholder(reason, width, height)
    drawer = drawer_class(width, height)
    _draw_molecule(drawer, mol)
    return drawer.GetDrawingText()
