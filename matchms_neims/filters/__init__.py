"""matchms filters of matchms-neims.

Importing this package registers the filters with matchms, so that matchms ``SpectrumProcessor``
and ``Pipeline`` workflows (YAML files included) can name them like built-in filters.
"""

from matchms_neims.filters.add_predicted_spectrum import add_predicted_spectrum
from matchms_neims.filters.require_mass_in_range import require_mass_in_range
from matchms_neims.filters.require_not_derivative import require_not_derivative
from matchms_neims.filters.require_parsable_smiles import require_parsable_smiles
from matchms_neims.filters.require_peaks import require_peaks
from matchms_neims.filters.require_structure_consistency import require_structure_consistency

NEIMS_FILTERS = (
    require_peaks,
    require_parsable_smiles,
    require_not_derivative,
    require_mass_in_range,
    require_structure_consistency,
    add_predicted_spectrum,
)


def register_matchms_filters() -> None:
    """Make the filters known to matchms by name (idempotent)."""
    from matchms.filtering import filter_order

    for function in NEIMS_FILTERS:
        filter_order.FILTER_FUNCTION_NAMES.setdefault(function.__name__, function)
        if function not in filter_order.ALL_FILTERS:
            filter_order.ALL_FILTERS.append(function)


register_matchms_filters()

__all__ = [function.__name__ for function in NEIMS_FILTERS] + ["NEIMS_FILTERS", "register_matchms_filters"]
