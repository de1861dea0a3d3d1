"""Published relations that give the mock its labels: spectral type -> Teff, and Teff, [Fe/H] -> log g.

Spectral type to effective temperature
--------------------------------------
Pecaut & Mamajek (2013, ApJS 208, 9), Table 5, as maintained online by
E. Mamajek, "A Modern Mean Dwarf Stellar Color and Effective Temperature
Sequence", version 2024.05.15
(http://www.pas.rochester.edu/~emamajek/EEM_dwarf_UBVIJHK_colors_Teff.txt).
The dwarf values used (K) are in :data:`PECAUT_MAMAJEK_TEFF`.

Surface gravity of M dwarfs
---------------------------
Mann et al. (2015, ApJ 804, 64; erratum 2016, ApJ 819, 87), Table 1:

* radius from Teff and [Fe/H] (their eq. 5 form with ``X = Teff / 3500``),
  ``R = (a + b X + c X**2 + d X**3) (1 + f [Fe/H])`` with
  a = 16.7700, b = -54.3210, c = 57.6627, d = -19.6994, f = 0.4565;
  fractional scatter 9.3 %; calibrated for 2700 < Teff < 4100 K;
* radius from the absolute 2MASS Ks magnitude,
  ``R = a + b M_K + c M_K**2`` with a = 1.9515, b = -0.3520, c = 0.01680
  (scatter 2.89 %), inverted here to give M_K from R;
* mass from M_K (their eq. 10),
  ``M = a + b M_K + c M_K**2 + d M_K**3 + e M_K**4`` with a = 0.5858,
  b = 0.3872, c = -0.1217, d = 0.0106, e = -2.7262e-4 (scatter 1.8 %).

The chain Teff, [Fe/H] -> R -> M_K -> M gives ``log g = log10(G M / R**2)``
with the nominal IAU solar value ``log g_sun = 4.438`` (cgs). Propagating the
published scatters (9.3 % on the radius *before* M_K and M are derived from
it, so the mass-radius correlation is kept, and 1.8 % on the mass) gives a
log g scatter of about 0.04 dex at fixed Teff and [Fe/H]
(:func:`mdwarf_logg_scatter`); the mock uses :data:`MDWARF_LOGG_SCATTER`.
"""

from __future__ import annotations

import re

import numpy as np

from bayesslam.mock.errors import LabelRangeError

__all__ = [
    "PECAUT_MAMAJEK_TEFF",
    "PECAUT_MAMAJEK_VERSION",
    "MANN2015_RADIUS_TEFF_FEH",
    "MANN2015_RADIUS_MK",
    "MANN2015_MASS_MK",
    "MANN2015_TEFF_RANGE",
    "LOGG_SUN",
    "MDWARF_LOGG_SCATTER",
    "spectral_type_to_teff",
    "mann2015_radius",
    "mann2015_mk_from_radius",
    "mann2015_mass",
    "surface_gravity",
    "mdwarf_logg",
    "mdwarf_logg_scatter",
]

#: Version of Mamajek's online table the values were copied from.
PECAUT_MAMAJEK_VERSION: str = "2024.05.15"

#: Dwarf Teff (K) by spectral type, Pecaut & Mamajek (2013) Table 5 / Mamajek 2024.05.15.
PECAUT_MAMAJEK_TEFF: dict[str, float] = {
    "K5": 4440.0,
    "K6": 4300.0,
    "K7": 4090.0,
    "K8": 3990.0,
    "K9": 3930.0,
    "M0": 3850.0,
    "M0.5": 3770.0,
    "M1": 3660.0,
    "M1.5": 3620.0,
    "M2": 3560.0,
    "M2.5": 3470.0,
    "M3": 3430.0,
    "M3.5": 3270.0,
    "M4": 3210.0,
    "M4.5": 3110.0,
    "M5": 3060.0,
    "M5.5": 2930.0,
    "M6": 2810.0,
    "M6.5": 2740.0,
    "M7": 2680.0,
    "M7.5": 2630.0,
    "M8": 2570.0,
    "M8.5": 2420.0,
    "M9": 2380.0,
}

#: Mann et al. (2015) Table 1, R(Teff, [Fe/H]): (a, b, c, d, f) and fractional scatter.
MANN2015_RADIUS_TEFF_FEH: dict[str, float] = {
    "a": 16.7700, "b": -54.3210, "c": 57.6627, "d": -19.6994, "f": 0.4565, "scatter": 0.093,
}
#: Mann et al. (2015) Table 1, R(M_K): (a, b, c) and fractional scatter.
MANN2015_RADIUS_MK: dict[str, float] = {"a": 1.9515, "b": -0.3520, "c": 0.01680, "scatter": 0.0289}
#: Mann et al. (2015) eq. 10, M(M_K): (a, b, c, d, e) and fractional scatter.
MANN2015_MASS_MK: dict[str, float] = {
    "a": 0.5858, "b": 0.3872, "c": -0.1217, "d": 0.0106, "e": -2.7262e-4, "scatter": 0.018,
}
#: Teff range (K) over which Mann et al. (2015) calibrated the Teff-radius relations.
MANN2015_TEFF_RANGE: tuple[float, float] = (2700.0, 4100.0)

#: Scatter (dex) of log g about :func:`mdwarf_logg` used by the mock population
#: (:func:`mdwarf_logg_scatter` gives 0.037-0.048 dex over 3100-3900 K and -0.5..+0.4 dex).
MDWARF_LOGG_SCATTER: float = 0.04

#: log10 of the nominal solar surface gravity in cgs (IAU 2015 B3: GM_sun / R_sun**2).
LOGG_SUN: float = 4.438

_SPT_PATTERN = re.compile(r"^\s*([KM])\s*(\d(?:\.5)?)\s*V?\s*$", re.IGNORECASE)


def spectral_type_to_teff(spectral_type: str) -> float:
    """Return the Pecaut & Mamajek (2013) dwarf Teff of a K5-M9 spectral type.

    Parameters
    ----------
    spectral_type : str
        E.g. ``"M3"``, ``"M3V"``, ``"K7"``, ``"M4.5"``.

    Returns
    -------
    float
        Effective temperature in K.

    Raises
    ------
    LabelRangeError
        If the type is not in the table (K5-M9 in half subtypes where listed).
    """
    match = _SPT_PATTERN.match(str(spectral_type))
    key = f"{match.group(1).upper()}{match.group(2)}" if match else None
    if key not in PECAUT_MAMAJEK_TEFF:
        raise LabelRangeError(
            f"spectral type {spectral_type!r} is not in the Pecaut & Mamajek dwarf table used here "
            f"(known: {', '.join(PECAUT_MAMAJEK_TEFF)})."
        )
    return PECAUT_MAMAJEK_TEFF[key]


def mann2015_radius(teff: np.ndarray, fe_h: np.ndarray) -> np.ndarray:
    """Radius (R_sun) from Teff and [Fe/H], Mann et al. (2015) Table 1.

    Parameters
    ----------
    teff : array_like
        Effective temperature in K.
    fe_h : array_like
        Metallicity [Fe/H] in dex.

    Returns
    -------
    numpy.ndarray
        ``(a + b X + c X**2 + d X**3) (1 + f [Fe/H])``, ``X = Teff / 3500``.
    """
    k = MANN2015_RADIUS_TEFF_FEH
    x = np.asarray(teff, dtype=float) / 3500.0
    poly = k["a"] + x * (k["b"] + x * (k["c"] + x * k["d"]))
    return poly * (1.0 + k["f"] * np.asarray(fe_h, dtype=float))


def mann2015_mk_from_radius(radius: np.ndarray) -> np.ndarray:
    """Absolute Ks magnitude from radius, inverting Mann et al. (2015) ``R = a + b M_K + c M_K**2``.

    The root on the M-dwarf branch (``M_K < -b / (2 c)`` = 10.5 mag, where
    the quadratic has its minimum) is returned.

    Parameters
    ----------
    radius : array_like
        Radius in R_sun, above the quadratic's minimum of about 0.108 R_sun.

    Returns
    -------
    numpy.ndarray
        M_K in mag.

    Raises
    ------
    LabelRangeError
        If a radius lies below the minimum of the relation.
    """
    k = MANN2015_RADIUS_MK
    radius = np.asarray(radius, dtype=float)
    disc = k["b"] ** 2 - 4.0 * k["c"] * (k["a"] - radius)
    if np.any(disc < 0):
        r_min = k["a"] - k["b"] ** 2 / (4.0 * k["c"])
        raise LabelRangeError(
            f"radius below {r_min:.3f} R_sun is outside the Mann et al. (2015) M_K-radius relation."
        )
    return (-k["b"] - np.sqrt(disc)) / (2.0 * k["c"])


def mann2015_mass(mk: np.ndarray) -> np.ndarray:
    """Mass (M_sun) from the absolute Ks magnitude, Mann et al. (2015) eq. 10.

    Parameters
    ----------
    mk : array_like
        Absolute 2MASS Ks magnitude.

    Returns
    -------
    numpy.ndarray
        ``a + b M_K + c M_K**2 + d M_K**3 + e M_K**4``.
    """
    k = MANN2015_MASS_MK
    m = np.asarray(mk, dtype=float)
    return k["a"] + m * (k["b"] + m * (k["c"] + m * (k["d"] + m * k["e"])))


def surface_gravity(mass: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """``log10(g / cm s**-2)`` from mass (M_sun) and radius (R_sun)."""
    return LOGG_SUN + np.log10(np.asarray(mass, dtype=float)) - 2.0 * np.log10(np.asarray(radius, dtype=float))


def _logg_chain(teff: np.ndarray, fe_h: np.ndarray, radius_factor: np.ndarray, mass_factor: np.ndarray) -> np.ndarray:
    """Teff, [Fe/H] -> R (times ``radius_factor``) -> M_K -> M (times ``mass_factor``) -> log g."""
    k = MANN2015_RADIUS_MK
    r_min = k["a"] - k["b"] ** 2 / (4.0 * k["c"])
    radius = mann2015_radius(teff, fe_h) * radius_factor
    mass = mann2015_mass(mann2015_mk_from_radius(np.maximum(radius, r_min))) * mass_factor
    return surface_gravity(mass, radius)


def _check_teff(teff: np.ndarray) -> None:
    lo, hi = MANN2015_TEFF_RANGE
    bad = ~np.isfinite(teff) | (teff < lo) | (teff > hi)
    if np.any(bad):
        raise LabelRangeError(
            f"Teff must lie within {lo:.0f}-{hi:.0f} K for the Mann et al. (2015) relations; "
            f"{int(np.sum(bad))} value(s) do not (first: {np.atleast_1d(teff)[np.atleast_1d(bad)][0]!r})."
        )


def mdwarf_logg(teff: np.ndarray, fe_h: np.ndarray) -> np.ndarray:
    """Mean surface gravity of M dwarfs from Teff and [Fe/H] through Mann et al. (2015).

    Parameters
    ----------
    teff : array_like
        Effective temperature in K, within :data:`MANN2015_TEFF_RANGE`.
    fe_h : array_like
        [Fe/H] in dex.

    Returns
    -------
    numpy.ndarray
        log g in dex (cgs). Radii below the minimum of the M_K-radius
        quadratic (0.108 R_sun, reached only below about 2900 K at low
        metallicity) take the mass of that minimum.

    Raises
    ------
    LabelRangeError
        If a Teff lies outside the relations' calibration range.
    """
    teff, fe_h = np.broadcast_arrays(np.asarray(teff, dtype=float), np.asarray(fe_h, dtype=float))
    _check_teff(teff)
    return _logg_chain(teff, fe_h, 1.0, 1.0)


def mdwarf_logg_scatter(
    teff: float, fe_h: float, rng: np.random.Generator, n_draw: int = 4000
) -> float:
    """Scatter of log g at fixed Teff, [Fe/H] propagated from the published scatters.

    Draws the 9.3 % (lognormal) radius scatter of the Teff-[Fe/H]-radius
    relation *before* M_K and the mass are derived from the radius, and the
    1.8 % mass scatter after, so the mass-radius correlation is kept.

    Parameters
    ----------
    teff, fe_h : float
        Labels at which to evaluate the scatter.
    rng : numpy.random.Generator
        Random numbers.
    n_draw : int
        Monte Carlo draws.

    Returns
    -------
    float
        Standard deviation of log g in dex (about 0.04 over 3100-3900 K).
    """
    teff_arr = np.full(n_draw, float(teff))
    _check_teff(teff_arr)
    r_fac = np.exp(rng.normal(0.0, MANN2015_RADIUS_TEFF_FEH["scatter"], n_draw))
    m_fac = np.exp(rng.normal(0.0, MANN2015_MASS_MK["scatter"], n_draw))
    return float(np.std(_logg_chain(teff_arr, np.full(n_draw, float(fe_h)), r_fac, m_fac)))
