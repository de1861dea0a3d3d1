"""The paper's science tools: an M-dwarf selection from Gaia, catalog comparisons and cross-survey corrections.

Tools of Qiu et al. (2025, SDSS-V BOSS M dwarfs with SLAM) around the
labels rather than the spectra:

* :mod:`~bayesslam.relations.selection`: M dwarfs from a Gaia table
  (absolute magnitude from the parallax, dereddening, the paper's
  colour-magnitude and RUWE cuts, one boolean column per cut) and the
  colour-magnitude diagram;
* :mod:`~bayesslam.relations.comparison`: two catalogs cross-matched by
  identifier or on the sky, and per label the offset, scatter and
  z-scores, also in bins of a second quantity, with 1:1 and residual plots;
* :mod:`~bayesslam.relations.corrections`: the paper's ASPCAP [Fe/H]
  correction with its domain of validity, and a learner of polynomial
  offsets with intrinsic scatter (NumPyro NUTS) from a cross-match;
* :mod:`~bayesslam.relations.errors`: the named errors (missing columns,
  no matches, values in the wrong units).

``bayesslam select`` and ``bayesslam compare`` run the first two from the
command line (docs/relations.md).
"""

from bayesslam.relations.comparison import (
    DEFAULT_LABELS,
    DEFAULT_MATCH_RADIUS,
    ID_COLUMNS,
    CatalogComparison,
    LabelComparison,
    binned_statistics,
    compare_catalogs,
    error_column,
    label_column,
    match_by_id,
    match_on_sky,
    parse_radius,
    plot_comparison,
)
from bayesslam.relations.corrections import (
    ASPCAP_FEH_RANGE,
    ASPCAP_TEFF_RANGE,
    PAPER_ASPCAP_COEFFICIENTS,
    FehCorrection,
    OffsetPosterior,
    OffsetPrediction,
    aspcap_feh_correction,
    design_matrix,
    learn_offset,
    learn_offsets,
    polynomial_terms,
    term_names,
)
from bayesslam.relations.errors import MissingColumnError, NoMatchError, RelationsError, UnitsError
from bayesslam.relations.selection import (
    CUT_COLUMNS,
    EXTINCTION_COLUMNS,
    GAIA_COLUMNS,
    MDwarfCuts,
    MDwarfSelection,
    absolute_magnitude,
    apply_cuts,
    deredden,
    plot_cmd,
    select_mdwarfs,
)

__all__ = [
    "ASPCAP_FEH_RANGE",
    "ASPCAP_TEFF_RANGE",
    "CUT_COLUMNS",
    "DEFAULT_LABELS",
    "DEFAULT_MATCH_RADIUS",
    "EXTINCTION_COLUMNS",
    "GAIA_COLUMNS",
    "ID_COLUMNS",
    "PAPER_ASPCAP_COEFFICIENTS",
    "CatalogComparison",
    "FehCorrection",
    "LabelComparison",
    "MDwarfCuts",
    "MDwarfSelection",
    "MissingColumnError",
    "NoMatchError",
    "OffsetPosterior",
    "OffsetPrediction",
    "RelationsError",
    "UnitsError",
    "absolute_magnitude",
    "apply_cuts",
    "aspcap_feh_correction",
    "binned_statistics",
    "compare_catalogs",
    "deredden",
    "design_matrix",
    "error_column",
    "label_column",
    "learn_offset",
    "learn_offsets",
    "match_by_id",
    "match_on_sky",
    "parse_radius",
    "plot_cmd",
    "plot_comparison",
    "polynomial_terms",
    "select_mdwarfs",
    "term_names",
]
