"""Mock populations: true labels of field stars, wide binaries and clusters.

Labels are ``teff`` (K), ``logg`` (dex), ``fe_h`` (dex) and ``alpha_m`` (dex),
held in numpy structured arrays of :data:`LABEL_DTYPE`.

* ``teff`` and ``fe_h``: by default resampled from the real APOGEE M-dwarf
  labels of Birky et al. (2020, ApJ 892, 31; Table 6 "safe" sample, 5,875
  stars) inside the domain, each pair jittered by a Gaussian of
  :data:`TEFF_JITTER` K and :data:`FE_H_JITTER` dex so that no two mock stars
  share labels (a kernel density estimate with those bandwidths). The
  ``"uniform"`` distribution draws them uniformly in the domain instead.
* ``logg``: not informed by the templates. The mean relation of Mann et al.
  (2015) (:func:`bayesslam.mock.relations.mdwarf_logg`) plus Gaussian scatter
  :data:`~bayesslam.mock.relations.MDWARF_LOGG_SCATTER` = 0.04 dex, truncated
  to the domain's log g range (drawn from the truncated normal, so the Teff
  and [Fe/H] distribution is not changed by the log g cut). Below about
  3350 K the relation lies above the paper's upper limit of 4.95, so there the
  truncated draws pile up near 4.95.
* ``alpha_m``: not informed by the templates. Normal, mean
  :data:`ALPHA_M_MEAN` = 0.0, sd :data:`ALPHA_M_SD` = 0.05 dex, independent of
  the other labels.

The mock spectra do not depend on ``logg`` or ``alpha_m``.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.stats import truncnorm

from bayesslam.mock.errors import LabelRangeError
from bayesslam.mock.relations import MDWARF_LOGG_SCATTER, mdwarf_logg

__all__ = [
    "LABEL_NAMES",
    "LABEL_DTYPE",
    "ALPHA_M_MEAN",
    "ALPHA_M_SD",
    "TEFF_JITTER",
    "FE_H_JITTER",
    "Domain",
    "PAPER_DOMAIN",
    "birky2020_labels",
    "draw_teff_fe_h",
    "draw_logg",
    "draw_alpha_m",
    "make_labels",
    "draw_labels",
    "draw_binary_labels",
    "draw_cluster_labels",
]

logger = logging.getLogger(__name__)

#: The mock labels, in order: Teff (K), log g, [Fe/H] and [alpha/M] (dex).
LABEL_NAMES: tuple[str, ...] = ("teff", "logg", "fe_h", "alpha_m")
#: Structured dtype of label arrays: one float64 field per name in :data:`LABEL_NAMES`.
LABEL_DTYPE = np.dtype([(name, "f8") for name in LABEL_NAMES])

#: Mean of the normal distribution of [alpha/M] (dex).
ALPHA_M_MEAN: float = 0.0
#: Standard deviation of the normal distribution of [alpha/M] (dex).
ALPHA_M_SD: float = 0.05
#: Gaussian jitter of the resampled Birky et al. (2020) Teff (K).
TEFF_JITTER: float = 20.0
#: Gaussian jitter of the resampled Birky et al. (2020) [Fe/H] (dex).
FE_H_JITTER: float = 0.02

_DISTRIBUTIONS = ("birky2020", "uniform")
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Domain:
    """A box in label space.

    Parameters
    ----------
    teff : (float, float)
        Teff range in K.
    fe_h : (float, float)
        [Fe/H] range in dex.
    logg : (float, float) or None
        log g range in dex; None leaves log g unrestricted.
    """

    teff: tuple[float, float] = (3100.0, 3900.0)
    fe_h: tuple[float, float] = (-0.6, 0.5)
    logg: tuple[float, float] | None = (4.45, 4.95)

    def __post_init__(self) -> None:
        for name in ("teff", "fe_h", "logg"):
            rng = getattr(self, name)
            if rng is None and name == "logg":
                continue
            lo, hi = (float(x) for x in rng)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise LabelRangeError(f"domain {name} range must be two finite increasing numbers, got {rng!r}.")
            object.__setattr__(self, name, (lo, hi))

    def contains(self, labels: np.ndarray) -> np.ndarray:
        """True for rows of a :data:`LABEL_DTYPE` array inside the box."""
        ok = _inside(labels["teff"], self.teff) & _inside(labels["fe_h"], self.fe_h)
        if self.logg is not None:
            ok &= _inside(labels["logg"], self.logg)
        return ok


#: The training domain of Qiu et al. (2025): 3100-3900 K, -0.6..+0.5 dex, log g 4.45-4.95.
PAPER_DOMAIN = Domain()


def _inside(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return (values >= bounds[0]) & (values <= bounds[1])


@lru_cache(maxsize=1)
def _birky_table() -> tuple[np.ndarray, np.ndarray]:
    path = resources.files("bayesslam.mock") / "data" / "birky2020_safe_labels.csv.gz"
    with gzip.open(str(path), "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1)
    teff, fe_h = data[:, 0].copy(), data[:, 1].copy()
    teff.setflags(write=False)
    fe_h.setflags(write=False)
    return teff, fe_h


def birky2020_labels() -> tuple[np.ndarray, np.ndarray]:
    """Teff (K) and [Fe/H] (dex) of the Birky et al. (2020) safe sample (5,875 APOGEE M dwarfs)."""
    return _birky_table()


def draw_teff_fe_h(
    n: int, rng: np.random.Generator, domain: Domain = PAPER_DOMAIN, distribution: str = "birky2020"
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` (Teff, [Fe/H]) pairs inside the domain's Teff and [Fe/H] ranges.

    Parameters
    ----------
    n : int
        Number of stars.
    rng : numpy.random.Generator
        Random numbers.
    domain : Domain
        Label box.
    distribution : {"birky2020", "uniform"}
        Resampled real labels with Gaussian jitter (a KDE), or uniform in the box.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Teff and [Fe/H].

    Raises
    ------
    LabelRangeError
        If the domain holds no Birky et al. star, or the distribution is unknown.
    """
    if distribution not in _DISTRIBUTIONS:
        raise LabelRangeError(f"unknown label distribution {distribution!r}; choose one of {_DISTRIBUTIONS}.")
    if distribution == "uniform":
        return rng.uniform(*domain.teff, n), rng.uniform(*domain.fe_h, n)
    teff_all, fe_h_all = birky2020_labels()
    pool = np.flatnonzero(_inside(teff_all, domain.teff) & _inside(fe_h_all, domain.fe_h))
    if pool.size == 0:
        raise LabelRangeError(f"no Birky et al. (2020) star lies in Teff {domain.teff}, [Fe/H] {domain.fe_h}.")
    teff = np.empty(n)
    fe_h = np.empty(n)
    todo = np.arange(n)
    for _ in range(_MAX_TRIES):
        if todo.size == 0:
            break
        pick = rng.choice(pool, size=todo.size)
        t = teff_all[pick] + rng.normal(0.0, TEFF_JITTER, todo.size)
        f = fe_h_all[pick] + rng.normal(0.0, FE_H_JITTER, todo.size)
        ok = _inside(t, domain.teff) & _inside(f, domain.fe_h)
        teff[todo[ok]] = t[ok]
        fe_h[todo[ok]] = f[ok]
        todo = todo[~ok]
    if todo.size:
        raise LabelRangeError("could not draw labels inside the domain; widen it.")
    return teff, fe_h


def draw_logg(
    teff: np.ndarray, fe_h: np.ndarray, rng: np.random.Generator, domain: Domain = PAPER_DOMAIN
) -> np.ndarray:
    """Draw log g: Mann et al. (2015) mean relation + 0.04 dex scatter, truncated to the domain."""
    mean = mdwarf_logg(teff, fe_h)
    if domain.logg is None:
        return mean + rng.normal(0.0, MDWARF_LOGG_SCATTER, mean.shape)
    lo = (domain.logg[0] - mean) / MDWARF_LOGG_SCATTER
    hi = (domain.logg[1] - mean) / MDWARF_LOGG_SCATTER
    outside = np.mean((mean < domain.logg[0]) | (mean > domain.logg[1])) if mean.size else 0.0
    if outside > 0:
        logger.info("log g: %.1f%% of mean-relation values lie outside %s; drawn from the truncated normal",
                    100 * outside, domain.logg)
    return truncnorm.rvs(lo, hi, loc=mean, scale=MDWARF_LOGG_SCATTER, size=mean.shape, random_state=rng)


def draw_alpha_m(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw [alpha/M] ~ Normal(0.0, 0.05) (no spectral effect in the mock)."""
    return rng.normal(ALPHA_M_MEAN, ALPHA_M_SD, n)


def make_labels(teff, logg, fe_h, alpha_m) -> np.ndarray:
    """Pack label arrays (broadcast together) into a :data:`LABEL_DTYPE` structured array."""
    arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, dtype=float)) for a in (teff, logg, fe_h, alpha_m)))
    out = np.empty(arrays[0].shape, dtype=LABEL_DTYPE)
    for name, values in zip(LABEL_NAMES, arrays):
        out[name] = values
    return out


def draw_labels(
    n: int, rng: np.random.Generator, domain: Domain = PAPER_DOMAIN, distribution: str = "birky2020"
) -> np.ndarray:
    """Draw ``n`` field-star labels (see the module docstring for every distribution)."""
    teff, fe_h = draw_teff_fe_h(n, rng, domain, distribution)
    logg = draw_logg(teff, fe_h, rng, domain)
    return make_labels(teff, logg, fe_h, draw_alpha_m(n, rng))


def draw_binary_labels(
    n_pairs: int,
    rng: np.random.Generator,
    domain: Domain = PAPER_DOMAIN,
    distribution: str = "birky2020",
    min_delta_teff: float = 50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw wide-binary pairs that share [Fe/H] and [alpha/M] and differ in Teff (and log g).

    Both members are drawn from the field population; the secondary takes
    the primary's [Fe/H] and [alpha/M]; its Teff is redrawn until it differs
    from the primary's by at least ``min_delta_teff`` K. Each member gets its
    own log g from its own Teff.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Primary and secondary labels, row ``i`` of each forming pair ``i``.
    """
    primary = draw_labels(n_pairs, rng, domain, distribution)
    teff2 = np.empty(n_pairs)
    todo = np.arange(n_pairs)
    for _ in range(_MAX_TRIES):
        if todo.size == 0:
            break
        t, _ = draw_teff_fe_h(todo.size, rng, domain, distribution)
        ok = np.abs(t - primary["teff"][todo]) >= min_delta_teff
        teff2[todo[ok]] = t[ok]
        todo = todo[~ok]
    if todo.size:
        raise LabelRangeError("could not draw binary secondaries; lower min_delta_teff or widen the domain.")
    secondary = make_labels(
        teff2, draw_logg(teff2, primary["fe_h"], rng, domain), primary["fe_h"], primary["alpha_m"]
    )
    return primary, secondary


def draw_cluster_labels(
    n_stars: int,
    rng: np.random.Generator,
    fe_h: float,
    dispersion: float,
    domain: Domain = PAPER_DOMAIN,
    distribution: str = "birky2020",
) -> np.ndarray:
    """Draw cluster members: [Fe/H] ~ Normal(``fe_h``, ``dispersion``), shared [alpha/M].

    Teff is drawn from the field distribution at any [Fe/H] (Birky et al.
    Teff marginal inside the domain), log g from each star's Teff and [Fe/H];
    [alpha/M] is one value for the cluster (drawn as for the field) plus the
    same Gaussian ``dispersion``. Members' [Fe/H] falling outside the domain
    are redrawn (so choose ``fe_h`` a few ``dispersion`` inside it).

    Raises
    ------
    LabelRangeError
        If ``fe_h`` lies outside the domain or ``dispersion`` is negative.
    """
    if not domain.fe_h[0] <= fe_h <= domain.fe_h[1]:
        raise LabelRangeError(f"cluster [Fe/H] {fe_h} lies outside the domain {domain.fe_h}.")
    if not (np.isfinite(dispersion) and dispersion >= 0):
        raise LabelRangeError(f"cluster dispersion must be >= 0 dex, got {dispersion!r}.")
    teff, _ = draw_teff_fe_h(n_stars, rng, domain, distribution)
    members = np.empty(n_stars)
    todo = np.arange(n_stars)
    for _ in range(_MAX_TRIES):
        if todo.size == 0:
            break
        f = rng.normal(fe_h, dispersion, todo.size)
        ok = _inside(f, domain.fe_h)
        members[todo[ok]] = f[ok]
        todo = todo[~ok]
    if todo.size:
        raise LabelRangeError("could not draw cluster members inside the domain; move fe_h inside it.")
    alpha = draw_alpha_m(1, rng)[0] + rng.normal(0.0, dispersion, n_stars)
    return make_labels(teff, draw_logg(teff, members, rng, domain), members, alpha)
