"""matchms filters of matchms-neims, and an EI cleaning preset.

Importing this package registers the filters with matchms, so that matchms ``SpectrumProcessor``
and ``Pipeline`` workflows (YAML files included) can name them like built-in filters, and puts them in
their natural place in matchms's filter order (:data:`matchms.filtering.filter_order.ALL_FILTERS`, by which
``SpectrumProcessor`` sorts the filters it is given): the ``require_*`` cleaning filters after matchms's
requirement filters on metadata, then ``add_predicted_spectrum``, all before the first peak filter
(``remove_profiled_spectra``, ``normalize_intensities``, ``select_by_mz``, ...). So peak filters such as
``select_by_mz`` act on the predicted peaks, and the cleaning filters check the experimental record.
"""

from matchms_neims.filters.add_predicted_spectrum import add_predicted_spectrum, predicted_spectrum_step
from matchms_neims.filters.require_mass_in_range import require_mass_in_range
from matchms_neims.filters.require_not_derivative import require_not_derivative
from matchms_neims.filters.require_parsable_smiles import require_parsable_smiles
from matchms_neims.filters.require_peaks import require_peaks
from matchms_neims.filters.require_structure_consistency import require_structure_consistency

#: The plugin's filters, in the order they take in matchms's filter order.
NEIMS_FILTERS = (
    require_parsable_smiles,
    require_not_derivative,
    require_mass_in_range,
    require_peaks,
    require_structure_consistency,
    add_predicted_spectrum,
)
#: The matchms filter before which :data:`NEIMS_FILTERS` are inserted: the first filter that acts on peaks.
FIRST_PEAK_FILTER = "remove_profiled_spectra"

#: matchms's standard presets are for LC-MS/MS: ``require_precursor_mz`` (DEFAULT_FILTERS) and
#: ``require_correct_ms_level`` with MS2 (LIBRARY_CLEANING) remove every EI spectrum. This preset cleans an
#: experimental EI library (MassBank, a NIST export) for matching and training: harmonised annotations, records
#: with a parsable structure that is not a derivative, peaks consistent with the molecular mass.
EI_LIBRARY_CLEANING = (
    "make_charge_int",
    "add_compound_name",
    "clean_compound_name",
    "add_retention_index",
    "add_retention_time",
    "derive_ionmode",
    "harmonize_undefined_inchikey",
    "harmonize_undefined_inchi",
    "harmonize_undefined_smiles",
    "repair_inchi_inchikey_smiles",
    "derive_smiles_from_inchi",
    "derive_inchi_from_smiles",
    "derive_inchikey_from_inchi",
    "derive_formula_from_smiles",
    "require_parsable_smiles",
    "require_not_derivative",
    "require_peaks",
    "require_structure_consistency",
    "normalize_intensities",
    ("select_by_mz", {"mz_from": 1.0, "mz_to": 1000.0}),
    ("require_minimum_number_of_peaks", {"n_required": 3}),
)


def register_matchms_filters() -> None:
    """Make the filters known to matchms by name and put them in matchms's filter order (idempotent)."""
    from matchms.filtering import filter_order

    for function in NEIMS_FILTERS:
        filter_order.FILTER_FUNCTION_NAMES.setdefault(function.__name__, function)
        if function in filter_order.ALL_FILTERS:
            filter_order.ALL_FILTERS.remove(function)
    names = [function.__name__ for function in filter_order.ALL_FILTERS]
    position = names.index(FIRST_PEAK_FILTER) if FIRST_PEAK_FILTER in names else len(names)
    filter_order.ALL_FILTERS[position:position] = list(NEIMS_FILTERS)


register_matchms_filters()
# the similarity of ``search``, for Pipeline YAML files (imported here: this is the plugin's one import for matchms)
from matchms_neims.similarity import register_matchms_similarity  # noqa: E402

register_matchms_similarity()

__all__ = [function.__name__ for function in NEIMS_FILTERS] + [
    "EI_LIBRARY_CLEANING", "FIRST_PEAK_FILTER", "NEIMS_FILTERS", "predicted_spectrum_step", "register_matchms_filters"]
