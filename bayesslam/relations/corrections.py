"""Cross-survey corrections: the paper's ASPCAP [Fe/H] correction, and a learner of polynomial offsets.

The ASPCAP correction
---------------------
Qiu et al. (2025) compared ASPCAP (APOGEE DR17) with their SLAM labels of
SDSS-V BOSS M dwarfs and fitted the [Fe/H] offset as a quadratic in ASPCAP's
own Teff and [Fe/H]. The correction to *add* to ASPCAP [Fe/H] is

    Delta[Fe/H] = -0.427 x**2 - 0.158 y**2 + 0.431 x y + 2.767 x - 2.156 y - 4.405,

with ``x = Teff_ASPCAP / 1000`` (K) and ``y = [Fe/H]_ASPCAP``
(:func:`aspcap_feh_correction`). It holds where it was fitted: M dwarfs
with ASPCAP Teff of about 3000-4000 K and [Fe/H] of about -1.0 to +0.5
(:data:`ASPCAP_TEFF_RANGE`, :data:`ASPCAP_FEH_RANGE`). Outside, a quadratic
runs away, so stars there are flagged (``valid`` False) and get NaN unless
``extrapolate=True`` is asked for.

The learner
-----------
:func:`learn_offset` infers such a correction from a cross-match: the offset
``B - A`` between two catalogs as a polynomial of chosen variables (any
degree; the paper's full quadratic in ``x``, ``y`` by default) plus an
intrinsic scatter ``s``, with both catalogs' errors in the likelihood::

    B_i - A_i ~ Normal(sum_k c_k phi_k(v_i), sqrt(err_A_i**2 + err_B_i**2 + s**2)).

The variables are centred and scaled and the design columns standardized
inside (so NUTS sees a well-conditioned posterior), and the coefficients
are reported for the monomials of the user's variables. It is sampled with
NumPyro's NUTS; ``ignore_errors=True`` drops the catalog errors from the
likelihood (the negative control: the scatter then absorbs them and comes
out too large). :meth:`OffsetPosterior.predict` gives the correction with
its uncertainty at new points.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bayesslam.relations.errors import RelationsError

__all__ = [
    "ASPCAP_TEFF_RANGE",
    "ASPCAP_FEH_RANGE",
    "PAPER_ASPCAP_COEFFICIENTS",
    "FehCorrection",
    "aspcap_feh_correction",
    "polynomial_terms",
    "term_names",
    "design_matrix",
    "OffsetPrediction",
    "OffsetPosterior",
    "learn_offset",
    "learn_offsets",
]

logger = logging.getLogger(__name__)

# The domain of the ASPCAP correction. These are the paper's fitted range as far as it is known: Qiu et al. (2025)
# fitted the offset on their BOSS-APOGEE cross-match of M dwarfs, whose ASPCAP Teff lie roughly within 3000-4000 K
# and ASPCAP [Fe/H] roughly within -1.0 to +0.5 dex. Outside it the quadratic is an extrapolation.
#: ASPCAP Teff (K) over which :func:`aspcap_feh_correction` holds (inclusive).
ASPCAP_TEFF_RANGE = (3000.0, 4000.0)
#: ASPCAP [Fe/H] (dex) over which :func:`aspcap_feh_correction` holds (inclusive).
ASPCAP_FEH_RANGE = (-1.0, 0.5)
#: The paper's coefficients of Delta[Fe/H], by monomial of ``x = Teff / 1000`` and ``y = [Fe/H]`` (names of
#: :func:`term_names` for variables ``("x", "y")``).
PAPER_ASPCAP_COEFFICIENTS: dict[str, float] = {"1": -4.405, "x": 2.767, "y": -2.156, "x^2": -0.427, "x*y": 0.431,
                                               "y^2": -0.158}


class FehCorrection(NamedTuple):
    """What :func:`aspcap_feh_correction` returns (unpacks as ``delta, valid``).

    Attributes
    ----------
    delta : numpy.ndarray
        Delta[Fe/H] to add to ASPCAP [Fe/H] (NaN outside the domain unless
        extrapolated, and where an input is NaN).
    valid : numpy.ndarray of bool
        Inside the domain (:data:`ASPCAP_TEFF_RANGE`, :data:`ASPCAP_FEH_RANGE`).
    """

    delta: np.ndarray
    valid: np.ndarray


def aspcap_feh_correction(teff: np.ndarray | float, fe_h: np.ndarray | float, *,
                          extrapolate: bool = False) -> FehCorrection:
    """The correction to add to ASPCAP [Fe/H] of M dwarfs (Qiu et al. 2025), flagged outside its domain.

    ``Delta = -0.427 x**2 - 0.158 y**2 + 0.431 x y + 2.767 x - 2.156 y - 4.405``
    with ``x = teff / 1000`` and ``y = fe_h``.

    Parameters
    ----------
    teff : array_like
        ASPCAP effective temperature, K.
    fe_h : array_like
        ASPCAP [Fe/H], dex.
    extrapolate : bool
        Also give the polynomial's value outside the domain (still flagged
        ``valid`` False); default NaN there.

    Returns
    -------
    FehCorrection
        ``delta`` and ``valid``, broadcast to the inputs' common shape.

    Examples
    --------
    >>> delta, valid = aspcap_feh_correction(3500.0, 0.0)
    >>> round(float(delta), 5), bool(valid)
    (0.04875, True)
    """
    teff, fe_h = np.broadcast_arrays(np.asarray(teff, dtype=float), np.asarray(fe_h, dtype=float))
    x, y = teff / 1000.0, fe_h
    c = PAPER_ASPCAP_COEFFICIENTS
    delta = c["x^2"] * x**2 + c["y^2"] * y**2 + c["x*y"] * x * y + c["x"] * x + c["y"] * y + c["1"]
    valid = ((teff >= ASPCAP_TEFF_RANGE[0]) & (teff <= ASPCAP_TEFF_RANGE[1])
             & (fe_h >= ASPCAP_FEH_RANGE[0]) & (fe_h <= ASPCAP_FEH_RANGE[1]))
    if not extrapolate:
        delta = np.where(valid, delta, np.nan)
    n_out = int(np.sum(~valid & np.isfinite(teff) & np.isfinite(fe_h)))
    if n_out:
        logger.info("aspcap_feh_correction: %d of %d stars outside Teff %s K, [Fe/H] %s (flagged%s)", n_out,
                    valid.size, ASPCAP_TEFF_RANGE, ASPCAP_FEH_RANGE, ", extrapolated" if extrapolate else ", NaN")
    return FehCorrection(delta, valid)


# --- polynomials ------------------------------------------------------------------------------------------------

def polynomial_terms(n_variables: int, degree: int) -> list[tuple[int, ...]]:
    """Exponents of every monomial of ``n_variables`` variables with total degree up to ``degree``.

    Ordered by total degree, then with the first variable's powers first:
    for ``(x, y)`` and degree 2, ``1, x, y, x^2, x*y, y^2``.

    Parameters
    ----------
    n_variables : int
    degree : int

    Returns
    -------
    list of tuple of int
        One exponent tuple per monomial.
    """
    if n_variables < 1 or degree < 0:
        raise RelationsError(f"a polynomial needs at least one variable and a degree >= 0; got {n_variables} "
                             f"variables, degree {degree}.")
    terms = []
    for total in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(n_variables), total):
            terms.append(tuple(combo.count(j) for j in range(n_variables)))
    return terms


def term_names(names: Sequence[str], terms: Sequence[tuple[int, ...]]) -> list[str]:
    """Readable names of monomials: ``"1"``, ``"x"``, ``"x^2"``, ``"x*y"``."""
    out = []
    for exponents in terms:
        parts = [name if k == 1 else f"{name}^{k}" for name, k in zip(names, exponents) if k > 0]
        out.append("*".join(parts) or "1")
    return out


def design_matrix(values: np.ndarray, terms: Sequence[tuple[int, ...]]) -> np.ndarray:
    """The monomials ``(n_rows, n_terms)`` of ``values`` ``(n_rows, n_variables)``."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    return np.stack([np.prod(values ** np.asarray(e, dtype=float), axis=1) for e in terms], axis=1)


def _shift_matrix(terms: Sequence[tuple[int, ...]], centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """``T`` with ``monomials(u) = monomials(w) @ T`` for ``u = (w - centre) / width`` (binomial expansion)."""
    index = {e: k for k, e in enumerate(terms)}
    out = np.zeros((len(terms), len(terms)))
    for k, exponents in enumerate(terms):
        for powers in itertools.product(*(range(e + 1) for e in exponents)):
            coefficient = 1.0
            for e, i, m, s in zip(exponents, powers, centre, width):
                coefficient *= math.comb(e, i) * (-m) ** (e - i) / s**e
            out[index[tuple(powers)], k] += coefficient
    return out


@dataclass(frozen=True)
class _Standardization:
    """The map from the user's variables to the standardized design, and back for the coefficients."""

    terms: tuple[tuple[int, ...], ...]
    scales: np.ndarray  # w = v / scales: the polynomial's variables
    centre: np.ndarray  # u = (w - centre) / width
    width: np.ndarray
    column_mean: np.ndarray  # design column k >= 1: (monomial_k(u) - mean) / sd
    column_sd: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, terms: Sequence[tuple[int, ...]], scales: np.ndarray,
            names: Sequence[str]) -> _Standardization:
        w = values / scales
        centre, width = np.mean(w, axis=0), np.std(w, axis=0)
        flat = [name for name, sd in zip(names, width) if not sd > 0]
        if flat:
            raise RelationsError(f"variable(s) {', '.join(flat)} take a single value; a polynomial in them cannot "
                                 "be learnt (leave them out).")
        monomials = design_matrix((w - centre) / width, terms)
        mean, sd = np.mean(monomials, axis=0), np.std(monomials, axis=0)
        mean[0], sd[0] = 0.0, 1.0
        if np.any(~(sd[1:] > 0)):
            raise RelationsError("two terms of the polynomial coincide on these data (too few distinct values for "
                                 "the degree); lower the degree or add rows.")
        return cls(tuple(terms), scales, centre, width, mean, sd)

    def design(self, values: np.ndarray) -> np.ndarray:
        monomials = design_matrix((values / self.scales - self.centre) / self.width, self.terms)
        return np.concatenate([monomials[:, :1], (monomials[:, 1:] - self.column_mean[1:]) / self.column_sd[1:]],
                              axis=1)

    def to_raw(self) -> np.ndarray:
        """``M`` with ``design = monomials(w) @ M``: standardized coefficients ``beta`` -> raw ``M @ beta``."""
        columns = np.diag(1.0 / self.column_sd)
        columns[0, 1:] = -self.column_mean[1:] / self.column_sd[1:]
        return _shift_matrix(self.terms, self.centre, self.width) @ columns


# --- the learner -------------------------------------------------------------------------------------------------

class OffsetPrediction(NamedTuple):
    """The learnt offset at given points: posterior summary of ``sum_k c_k phi_k(v)``.

    Attributes
    ----------
    mean, sd, median, q16, q84 : numpy.ndarray
        Posterior mean, standard deviation, median, and 15.87 and 84.13
        percentiles, one per point.
    """

    mean: np.ndarray
    sd: np.ndarray
    median: np.ndarray
    q16: np.ndarray
    q84: np.ndarray


def _summaries(draws: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, sd, median, q16, q84 over the first axis."""
    q16, median, q84 = np.percentile(draws, [15.865525, 50.0, 84.134475], axis=0)
    return {"mean": np.mean(draws, axis=0), "sd": np.std(draws, axis=0, ddof=1), "median": median, "q16": q16,
            "q84": q84}


@dataclass(frozen=True)
class OffsetPosterior:
    """The posterior of a polynomial offset ``B - A`` with intrinsic scatter (:func:`learn_offset`).

    Attributes
    ----------
    variables : tuple of str
        The variables' names, in the order :meth:`predict` takes them.
    scales : tuple of float
        Each variable is divided by its scale before entering the
        polynomial (``x = teff / 1000``).
    terms : tuple of tuple of int
        Exponents of each monomial (:func:`polynomial_terms`).
    names : tuple of str
        The monomials' names (:func:`term_names`; a scaled variable as
        ``(teff/1000)``).
    coefficient_draws : numpy.ndarray, ``(n_draws, n_terms)``
        Posterior draws of the coefficients, chains concatenated.
    scatter_draws : numpy.ndarray, ``(n_draws,)``
        Posterior draws of the intrinsic scatter (units of ``B - A``).
    idata : arviz.InferenceData
        ``posterior`` with ``coefficients`` (dim ``term``) and ``scatter``;
        ``sample_stats`` with ``diverging``.
    n : int
        Rows used.
    n_dropped : int
        Rows dropped for a non-finite value.
    ignore_errors : bool
        Whether the likelihood ignored the catalog errors.
    """

    variables: tuple[str, ...]
    scales: tuple[float, ...]
    terms: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]
    coefficient_draws: np.ndarray
    scatter_draws: np.ndarray
    idata: Any = field(repr=False)
    n: int = 0
    n_dropped: int = 0
    ignore_errors: bool = False

    @property
    def coefficients(self) -> dict[str, float]:
        """Posterior mean of each coefficient, by monomial name."""
        return {name: float(v) for name, v in zip(self.names, np.mean(self.coefficient_draws, axis=0))}

    @property
    def n_divergent(self) -> int:
        """Divergent NUTS transitions (should be 0)."""
        return int(np.sum(self.idata.sample_stats["diverging"].values))

    def interval(self, level: float = 0.6827) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval of each coefficient: ``(low, high)``, each ``(n_terms,)``."""
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(self.coefficient_draws, [tail, 100.0 - tail], axis=0)
        return low, high

    def scatter_interval(self, level: float = 0.6827) -> tuple[float, float]:
        """Central credible interval of the intrinsic scatter."""
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(self.scatter_draws, [tail, 100.0 - tail])
        return float(low), float(high)

    def summary(self) -> dict[str, Any]:
        """Posterior mean, sd, median, q16, q84 of every coefficient and of the scatter (JSON-able)."""
        coefficient = _summaries(self.coefficient_draws)
        scatter = _summaries(self.scatter_draws[:, None])
        return {
            "variables": list(self.variables),
            "scales": list(self.scales),
            "coefficients": {name: {k: float(v[j]) for k, v in coefficient.items()}
                             for j, name in enumerate(self.names)},
            "scatter": {k: float(v[0]) for k, v in scatter.items()},
            "n": self.n, "n_dropped": self.n_dropped, "n_divergent": self.n_divergent,
            "ignore_errors": self.ignore_errors,
        }

    def predict(self, *values: Any, chunk: int = 4096, **named: Any) -> OffsetPrediction:
        """The offset ``B - A`` at given points, with its posterior uncertainty.

        Add it to A to put A on B's scale. The scatter is not included: it is
        the spread of single stars around the offset, not an uncertainty of it.

        Parameters
        ----------
        *values : array_like
            One array per variable, in the order of :attr:`variables`...
        chunk : int
            Points evaluated at once (memory: ``chunk`` x draws floats).
        **named : array_like
            ... or by name (e.g. ``predict(teff=3500.0, fe_h=-0.2)``).

        Returns
        -------
        OffsetPrediction
            Arrays of the points' broadcast shape.
        """
        if values and named:
            raise RelationsError("give the variables either in order or by name, not both.")
        if named:
            unknown = sorted(set(named) - set(self.variables))
            missing = [v for v in self.variables if v not in named]
            if unknown or missing:
                raise RelationsError(f"predict takes the variables {', '.join(self.variables)}; got "
                                     f"{', '.join(sorted(named))}.")
            values = tuple(named[v] for v in self.variables)
        if len(values) != len(self.variables):
            raise RelationsError(f"predict takes {len(self.variables)} variable(s) ({', '.join(self.variables)}); "
                                 f"got {len(values)}.")
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))
        shape = arrays[0].shape
        points = np.stack([a.ravel() for a in arrays], axis=1) / np.asarray(self.scales)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in OffsetPrediction._fields}
        for start in range(0, points.shape[0], chunk):
            draws = design_matrix(points[start:start + chunk], self.terms) @ self.coefficient_draws.T
            for key, value in _summaries(draws.T).items():
                parts[key].append(value)
        return OffsetPrediction(*(np.concatenate(parts[k]).reshape(shape) if parts[k] else np.zeros(shape)
                                  for k in OffsetPrediction._fields))


def _offset_model(design, response, variance, mask, prior_scale):
    """NumPyro model: standardized ``response ~ Normal(design @ beta, sqrt(variance + scatter**2))``.

    ``mask`` is 1 for a catalog's rows and 0 for the padding that gives
    catalogs of different sizes one shape (padded rows add nothing).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale).expand([design.shape[-1]]).to_event(1))
    scatter = numpyro.sample("scatter", dist.HalfNormal(1.0))
    log_like = dist.Normal(design @ beta, jnp.sqrt(variance + scatter**2)).log_prob(response)
    numpyro.factor("offset_likelihood", jnp.sum(jnp.where(mask > 0, log_like, 0.0)))


#: Padding of the sampler's shapes, so that one compiled sampler serves calls of similar sizes: rows of a catalog
#: and runs (catalogs x chains) are rounded up to a power of two, at least these (runs only for catalogs of up to
#: _MAX_PADDED_ROWS rows); lanes advance at most 64 runs at once.
_MIN_ROWS, _MIN_RUNS, _MAX_PADDED_ROWS, _MAX_LANES = 64, 32, 4096, 64


def _bucket(n: int, least: int) -> int:
    """The smallest power of two >= ``n`` and >= ``least``."""
    return max(least, 1 << max(0, int(n) - 1).bit_length())


@functools.lru_cache(maxsize=8)
def _offset_runner(n_terms: int, n_rows: int, num_warmup: int, num_samples: int, n_lanes: int,
                   target_accept_prob: float, dtype: str):
    """The package's batched NUTS (:func:`bayesslam.infer.nuts.build_nuts_runner`) on :func:`_offset_model`.

    One run per catalog and chain; kept per shape, settings and precision
    (``dtype``: JAX's default float type when it was built), so repeated
    calls (and many catalogs in one call) compile once. Returns the runner,
    the starting point (unconstrained, flat), ``unravel`` and NumPyro's
    ``postprocess`` (unconstrained -> constrained sites).
    """
    import jax.numpy as jnp
    from numpyro.infer import init_to_value

    from bayesslam.infer.nuts import model_nuts_runner

    example = (jnp.zeros((n_rows, n_terms)), jnp.zeros(n_rows), jnp.ones(n_rows), jnp.ones(n_rows), jnp.ones(()))
    start = {"beta": jnp.zeros(n_terms), "scatter": jnp.asarray(0.5)}
    return model_nuts_runner(_offset_model, example, init_to_value(values=start), num_warmup=num_warmup,
                             num_samples=num_samples, n_lanes=n_lanes, target_accept_prob=target_accept_prob)


def _finite_rows(arrays: Sequence[np.ndarray], names: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows where every array is finite, and that mask; the arrays must have one length."""
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) != 1:
        raise RelationsError(f"{', '.join(names)} have lengths {lengths}; pass one value per row in each.")
    good = np.all([np.isfinite(a) for a in arrays], axis=0)
    return [a[good] for a in arrays], good


@dataclass(frozen=True)
class _Catalog:
    """One cross-match made ready for the sampler."""

    standard: _Standardization
    design: np.ndarray
    response: np.ndarray  # (B - A - mu) / sd
    variance: np.ndarray  # (err_a**2 + err_b**2) / sd**2, or zeros
    mu: float
    sd: float
    n_dropped: int


def _prepare(variables: Mapping[str, Any], values_a: Any, values_b: Any, errors_a: Any, errors_b: Any,
             degree: int, scales: Mapping[str, float] | None, ignore_errors: bool) -> tuple[tuple[str, ...], _Catalog]:
    """Check one catalog's inputs, drop non-finite rows and standardize."""
    names = tuple(variables)
    if not names:
        raise RelationsError("learn_offset needs at least one variable (e.g. {'teff': ..., 'fe_h': ...}).")
    scales = dict(scales or {})
    unknown = sorted(set(scales) - set(names))
    if unknown:
        raise RelationsError(f"scales names {', '.join(unknown)}, which are not variables ({', '.join(names)}).")
    scale = np.array([float(scales.get(n, 1.0)) for n in names])
    if np.any(~(scale > 0)) or np.any(~np.isfinite(scale)):
        raise RelationsError(f"scales must be positive and finite; got {dict(zip(names, scale.tolist()))}.")
    columns = [np.ravel(np.asarray(variables[n], dtype=float)) for n in names]
    a, b = (np.ravel(np.asarray(x, dtype=float)) for x in (values_a, values_b))
    if errors_a is None or errors_b is None:
        if not ignore_errors:
            raise RelationsError("learn_offset needs errors_a and errors_b (zeros for a catalog without errors), "
                                 "or ignore_errors=True.")
        ea = np.zeros_like(a) if errors_a is None else np.ravel(np.asarray(errors_a, dtype=float))
        eb = np.zeros_like(b) if errors_b is None else np.ravel(np.asarray(errors_b, dtype=float))
    else:
        ea, eb = (np.ravel(np.asarray(x, dtype=float)) for x in (errors_a, errors_b))
    (*columns, a, b, ea, eb), good = _finite_rows([*columns, a, b, ea, eb],
                                                  [*names, "values_a", "values_b", "errors_a", "errors_b"])
    if np.any(ea < 0) or np.any(eb < 0):
        raise RelationsError("errors must be >= 0 (one-sigma errors); check the error columns.")
    terms = polynomial_terms(len(names), degree)
    if a.size < len(terms) + 2:
        raise RelationsError(f"{a.size} usable rows for a polynomial of {len(terms)} terms; at least "
                             f"{len(terms) + 2} are needed (lower the degree or add rows).")
    values = np.stack(columns, axis=1)
    standard = _Standardization.fit(values, terms, scale, names)
    delta = b - a
    mu, sd = float(np.mean(delta)), float(np.std(delta))
    if not sd > 0:
        raise RelationsError("B - A is the same for every row; there is no offset pattern to learn.")
    variance = np.zeros_like(delta) if ignore_errors else (ea**2 + eb**2) / sd**2
    return names, _Catalog(standard, standard.design(values), (delta - mu) / sd, variance, mu, sd,
                           int(good.size - good.sum()))


def learn_offset(variables: Mapping[str, Any], values_a: Any, values_b: Any, errors_a: Any = None,
                 errors_b: Any = None, *, degree: int = 2, scales: Mapping[str, float] | None = None,
                 ignore_errors: bool = False, prior_scale: float = 10.0, num_warmup: int = 500,
                 num_samples: int = 500, num_chains: int = 1, target_accept_prob: float = 0.8, seed: int = 0
                 ) -> OffsetPosterior:
    """Learn the offset ``B - A`` between two catalogs as a polynomial with intrinsic scatter (NUTS).

    ``B_i - A_i ~ Normal(sum_k c_k phi_k(v_i), sqrt(errors_a_i**2 + errors_b_i**2 + s**2))``,
    ``phi_k`` the monomials of the variables ``v`` (each divided by its
    scale) up to ``degree``, ``s`` the intrinsic scatter.

    Inside, the variables are centred and scaled, the monomial columns
    standardized and ``B - A`` scaled by its standard deviation; the
    priors are ``Normal(0, prior_scale)`` on the standardized coefficients
    and ``HalfNormal(1)`` on the standardized scatter (both weak). The
    draws are mapped back exactly to the coefficients of the monomials of
    the user's (scaled) variables. The model is a NumPyro model sampled
    with NumPyro's NUTS (the package's batched implementation,
    :mod:`bayesslam.infer.nuts`, so that one compiled sampler serves every
    catalog of the same shape; :func:`learn_offsets` runs many at once).

    Parameters
    ----------
    variables : mapping of str to array_like
        The variables the offset depends on, e.g. ``{"teff": teff_a,
        "fe_h": fe_h_a}`` (usually A's labels, so that the correction can be
        applied to A alone).
    values_a, values_b : array_like
        The label in catalogs A and B (the offset is ``B - A``).
    errors_a, errors_b : array_like, optional
        Their one-sigma errors (needed unless ``ignore_errors``; zero is
        allowed for a catalog without errors).
    degree : int
        Total degree of the polynomial (2: the paper's full quadratic).
    scales : mapping of str to float, optional
        Divisors of the variables (``{"teff": 1000.0}``: the polynomial is in
        ``teff / 1000``, as in the paper); default 1.
    ignore_errors : bool
        Leave the catalog errors out of the likelihood (negative control:
        the scatter absorbs them).
    prior_scale : float
        Prior standard deviation of the standardized coefficients.
    num_warmup, num_samples, num_chains : int
        NUTS settings.
    target_accept_prob : float
    seed : int

    Returns
    -------
    OffsetPosterior
        Rows with a non-finite value, variable or error are dropped
        (``n_dropped``).

    Raises
    ------
    RelationsError
        Unequal lengths, too few rows for the polynomial, missing or
        negative errors, a variable without spread.
    """
    return learn_offsets([variables], [values_a], [values_b], None if errors_a is None else [errors_a],
                         None if errors_b is None else [errors_b], degree=degree, scales=scales,
                         ignore_errors=ignore_errors, prior_scale=prior_scale, num_warmup=num_warmup,
                         num_samples=num_samples, num_chains=num_chains, target_accept_prob=target_accept_prob,
                         seed=seed)[0]


def learn_offsets(variables: Sequence[Mapping[str, Any]], values_a: Sequence[Any], values_b: Sequence[Any],
                  errors_a: Sequence[Any] | None = None, errors_b: Sequence[Any] | None = None, *, degree: int = 2,
                  scales: Mapping[str, float] | None = None, ignore_errors: bool = False, prior_scale: float = 10.0,
                  num_warmup: int = 500, num_samples: int = 500, num_chains: int = 1,
                  target_accept_prob: float = 0.8, seed: int = 0) -> list[OffsetPosterior]:
    """:func:`learn_offset` for many cross-matches at once, in one compiled batched NUTS call.

    For repeated simulations (coverage checks) or several surveys. Each
    argument holds one entry per catalog (``errors_a``, ``errors_b``: a
    sequence or None); the catalogs must have the same variables and may
    differ in size (the shorter ones are padded with rows that add
    nothing). The settings are :func:`learn_offset`'s, shared by all.

    Returns
    -------
    list of OffsetPosterior
        One per catalog, in order.
    """
    from bayesslam._precision import float64  # imports JAX: only here, so that selection and comparison stay light

    with float64():
        return _learn_offsets(variables, values_a, values_b, errors_a, errors_b, degree=degree, scales=scales,
                              ignore_errors=ignore_errors, prior_scale=prior_scale, num_warmup=num_warmup,
                              num_samples=num_samples, num_chains=num_chains, target_accept_prob=target_accept_prob,
                              seed=seed)


def _learn_offsets(variables, values_a, values_b, errors_a, errors_b, *, degree, scales, ignore_errors, prior_scale,
                   num_warmup, num_samples, num_chains, target_accept_prob, seed) -> list[OffsetPosterior]:
    """:func:`learn_offsets` inside 64-bit JAX."""
    import arviz as az
    import jax
    import jax.numpy as jnp

    n_catalog = len(variables)
    if n_catalog == 0:
        raise RelationsError("learn_offsets needs at least one catalog.")
    lists = {"values_a": values_a, "values_b": values_b, "errors_a": errors_a, "errors_b": errors_b}
    wrong = {k: len(v) for k, v in lists.items() if v is not None and len(v) != n_catalog}
    if wrong:
        raise RelationsError(f"{n_catalog} catalogs of variables but {wrong}; give one entry per catalog.")
    if num_warmup < 1 or num_samples < 2 or num_chains < 1:
        raise RelationsError(f"num_warmup >= 1, num_samples >= 2 and num_chains >= 1 are needed; got {num_warmup}, "
                             f"{num_samples}, {num_chains}.")
    prepared = [_prepare(variables[i], values_a[i], values_b[i], None if errors_a is None else errors_a[i],
                         None if errors_b is None else errors_b[i], degree, scales, ignore_errors)
                for i in range(n_catalog)]
    names = prepared[0][0]
    if any(p[0] != names for p in prepared):
        raise RelationsError("the catalogs given to learn_offsets must have the same variables, in the same order.")
    catalogs = [p[1] for p in prepared]
    n_terms = len(catalogs[0].standard.terms)
    n_rows = _bucket(max(c.response.size for c in catalogs), _MIN_ROWS)
    n_run = n_catalog * num_chains
    # runs beyond n_run are padding, never started: one compile serves many calls (not for large catalogs, whose
    # padded copies would cost memory)
    n_slots = _bucket(n_run, _MIN_RUNS if n_rows <= _MAX_PADDED_ROWS else 1)
    runner, z0, unravel, postprocess = _offset_runner(n_terms, n_rows, int(num_warmup), int(num_samples),
                                                      min(n_slots, _MAX_LANES), float(target_accept_prob),
                                                      str(jnp.zeros(()).dtype))

    def padded(array: np.ndarray, fill: float) -> np.ndarray:
        pad = [(0, n_rows - array.shape[0])] + [(0, 0)] * (array.ndim - 1)
        return np.pad(array, pad, constant_values=fill)

    catalog_of = np.concatenate([np.repeat(np.arange(n_catalog), num_chains), np.zeros(n_slots - n_run, dtype=int)])
    stacked = (np.stack([padded(c.design, 0.0) for c in catalogs]),
               np.stack([padded(c.response, 0.0) for c in catalogs]),
               np.stack([padded(c.variance, 1.0) for c in catalogs]),
               np.stack([padded(np.ones(c.response.size), 0.0) for c in catalogs]),
               np.full(n_catalog, float(prior_scale)))
    data = tuple(jnp.asarray(x[catalog_of]) for x in stacked)
    out = runner(jax.random.split(jax.random.key(seed), n_slots), jnp.tile(jnp.asarray(z0), (n_slots, 1)),
                 jnp.ones((n_slots, z0.size)), data, n_run)
    constrained = jax.vmap(jax.vmap(lambda z: postprocess(unravel(z))))(jnp.asarray(out.z[:n_run]))
    beta_all = np.asarray(constrained["beta"], dtype=float)
    scatter_all = np.asarray(constrained["scatter"], dtype=float)
    diverging_all = np.asarray(out.diverging[:n_run])
    results = []
    for i, c in enumerate(catalogs):
        rows = slice(i * num_chains, (i + 1) * num_chains)
        raw = c.sd * np.einsum("kj,cdj->cdk", c.standard.to_raw(), beta_all[rows])
        raw[..., 0] += c.mu
        scatter = c.sd * scatter_all[rows]
        scale = c.standard.scales
        shown = [f"({n}/{s:g})" if s != 1.0 else n for n, s in zip(names, scale)]
        labels = term_names(shown, c.standard.terms)
        diverging = diverging_all[rows]
        idata = az.from_dict(posterior={"coefficients": raw, "scatter": scatter},
                             sample_stats={"diverging": diverging}, coords={"term": labels},
                             dims={"coefficients": ["term"]})
        n_divergent = int(diverging.sum())
        if n_divergent:
            logger.warning("learn_offset: %d divergent transitions (catalog %d); the posterior may be biased (raise "
                           "target_accept_prob or num_warmup).", n_divergent, i)
        results.append(OffsetPosterior(names, tuple(float(s) for s in scale), tuple(c.standard.terms),
                                       tuple(labels), raw.reshape(-1, n_terms), scatter.reshape(-1), idata,
                                       n=int(c.response.size), n_dropped=c.n_dropped,
                                       ignore_errors=bool(ignore_errors)))
    return results
