"""Wavelength conversions: air to vacuum and the Doppler shift to the rest frame.

Pure functions on numpy arrays, wavelengths in Angstrom.
"""

from __future__ import annotations

import numpy as np

from bayesslam.errors import SpectrumValidationError

__all__ = ["SPEED_OF_LIGHT_KMS", "air_to_vacuum", "vacuum_to_air", "to_rest_frame"]

SPEED_OF_LIGHT_KMS: float = 299792.458


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Convert air wavelengths to vacuum (Angstrom).

    Uses the inversion by N. Piskunov (VALD3) of the IAU standard
    vacuum-to-air relation of Morton (2000, ApJS 130, 403, eq. 8), accurate to
    a few 1e-5 A in the optical and near-infrared. Wavelengths below 2000 A
    are returned unchanged (air is not used there by convention).

    Parameters
    ----------
    wave_air : numpy.ndarray
        Air wavelengths in Angstrom.

    Returns
    -------
    numpy.ndarray
        Vacuum wavelengths in Angstrom.
    """
    wave_air = np.asarray(wave_air, dtype=float)
    s2 = (1e4 / wave_air) ** 2
    n = (
        1.0
        + 0.00008336624212083
        + 0.02408926869968 / (130.1065924522 - s2)
        + 0.0001599740894897 / (38.92568793293 - s2)
    )
    return np.where(wave_air >= 2000.0, wave_air * n, wave_air)


def vacuum_to_air(wave_vac: np.ndarray) -> np.ndarray:
    """Convert vacuum wavelengths to air (Angstrom), Morton (2000) eq. 8.

    Parameters
    ----------
    wave_vac : numpy.ndarray
        Vacuum wavelengths in Angstrom.

    Returns
    -------
    numpy.ndarray
        Air wavelengths in Angstrom (unchanged below 2000 A).
    """
    wave_vac = np.asarray(wave_vac, dtype=float)
    s2 = (1e4 / wave_vac) ** 2
    n = 1.0 + 0.0000834254 + 0.02406147 / (130.0 - s2) + 0.00015998 / (38.9 - s2)
    return np.where(wave_vac >= 2000.0, wave_vac / n, wave_vac)


def to_rest_frame(wave_observed: np.ndarray, v_rad_kms: float) -> np.ndarray:
    """Shift observed wavelengths to the rest frame of a star.

    Follows the SDSS convention ``v_rad = c z``: ``lambda_rest =
    lambda_obs / (1 + v_rad / c)``.

    Parameters
    ----------
    wave_observed : numpy.ndarray
        Observed wavelengths in Angstrom.
    v_rad_kms : float
        Radial velocity in km/s (positive = receding).

    Returns
    -------
    numpy.ndarray
        Rest-frame wavelengths in Angstrom.

    Raises
    ------
    SpectrumValidationError
        If the velocity is not finite or not below the speed of light.
    """
    v = float(v_rad_kms)
    if not np.isfinite(v) or abs(v) >= SPEED_OF_LIGHT_KMS:
        raise SpectrumValidationError(
            f"radial velocity {v_rad_kms!r} km/s is not a usable velocity; give a finite value "
            "in km/s, or skip the rest-frame correction."
        )
    return np.asarray(wave_observed, dtype=float) / (1.0 + v / SPEED_OF_LIGHT_KMS)
