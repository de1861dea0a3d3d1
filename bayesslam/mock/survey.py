"""Mock BOSS M-dwarf surveys: labels -> raw observed-frame spectra -> files on disk.

A mock spectrum is the template model's rest-frame flux
(normalized flux x pseudo-continuum, :mod:`bayesslam.mock.template_model`) at
the star's Teff and [Fe/H], Doppler-shifted to the observed frame, binned
onto the SDSS-V BOSS pixels of the survey window, multiplied by a smooth
flux-calibration distortion, scaled to a flux level, and given noise at a
target SNR, sky-line residuals and bad pixels (:mod:`bayesslam.mock.observe`).
It is *raw* flux: users run ``prepare`` (read -> rest frame -> rebin ->
normalize) on it, exactly as on real data. log g and [alpha/M] do not enter
the spectrum.

Survey products are a :class:`~bayesslam.spectra.SpectrumBatch` plus an
:class:`astropy.table.Table` of the true labels matched by identifier.
Randomness comes only from the ``numpy.random.Generator`` passed in. Labels,
SNRs, velocities and flux levels are drawn first for all stars; the spectra
are then made chunk by chunk, so a survey is fixed by the seed and the chunk
size (default 1000): the same seed gives the same survey in memory
(:func:`make_survey`) and on disk (:func:`generate_survey_files`).

Identifiers are SDSS-style ``spec-PLATE-MJD-FIBER`` whose MJD names the
survey (:func:`survey_mjd`): ``60000 + seed mod 40000`` for a survey made
from an integer seed (``bayesslam mock --seed 42`` writes
``spec-90000-60042-0001.fits``, ...), so surveys of different seeds never
share a file name or identifier (unless their seeds differ by a multiple of
40000), and one seed always gives the same names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from astropy.table import Table, vstack

from bayesslam.errors import SpectrumValidationError, UnknownFormatError
from bayesslam.grid import BOSS_DLOGLAM, BOSS_LOGLAM0, model_wavelength
from bayesslam.io import write_spectrum
from bayesslam.mock.errors import LabelRangeError
from bayesslam.mock.observe import (
    ObservingSetup,
    add_noise,
    doppler_shift_sub_pixels,
    draw_distortion,
    draw_flux_level,
    draw_snr,
    draw_v_rad,
)
from bayesslam.mock.population import (
    LABEL_NAMES,
    PAPER_DOMAIN,
    Domain,
    draw_binary_labels,
    draw_cluster_labels,
    draw_labels,
    draw_teff_fe_h,
)
from bayesslam.mock.template_model import TemplateModel, load_template_model
from bayesslam.preparation.continuum import ContinuumSettings, normalize
from bayesslam.preparation.resample import rebin
from bayesslam.spectra import SpectrumBatch, SpectrumMeta
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS

__all__ = [
    "MOCK_MJD",
    "MOCK_PLATE0",
    "MOCK_SDSS_ID0",
    "MOCK_MJD_SPAN",
    "MOCK_SURVEY_STRIDE",
    "DEFAULT_CHUNK_SIZE",
    "default_template_model",
    "survey_wavelength",
    "survey_mjd",
    "mock_identifiers",
    "iter_observed",
    "observe_labels",
    "make_survey",
    "make_binaries",
    "make_cluster",
    "rest_frame_spectra",
    "noiseless_normalized",
    "write_survey",
    "generate_survey_files",
]

logger = logging.getLogger(__name__)

#: First MJD of mock surveys: a survey's MJD is MOCK_MJD + (seed mod MOCK_MJD_SPAN) (:func:`survey_mjd`);
#: plates start at MOCK_PLATE0 (1000 fibers each).
MOCK_MJD: int = 60000
MOCK_MJD_SPAN: int = 40000
MOCK_PLATE0: int = 90000
#: sdss_id of mock star 0 of the survey with MJD MOCK_MJD (SDSS-V mwmStar identifiers); each further MJD
#: adds MOCK_SURVEY_STRIDE, so the sdss_id of star k of a survey is
#: MOCK_SDSS_ID0 + (MJD - MOCK_MJD) * MOCK_SURVEY_STRIDE + k.
MOCK_SDSS_ID0: int = 900_000_000
MOCK_SURVEY_STRIDE: int = 10_000_000
DEFAULT_CHUNK_SIZE: int = 1000
_FORMATS = ("sdss-spec", "sdssv-mwm")


@lru_cache(maxsize=1)
def default_template_model() -> TemplateModel:
    """The template model shipped with the package (loaded once)."""
    return load_template_model()


def _layout(model: TemplateModel, window: tuple[float, float]) -> tuple[np.ndarray, int, int]:
    """Output BOSS pixels inside ``window``, the sub-pixel offset of the first one in the model, their number."""
    boss = model.boss_wave
    inside = np.flatnonzero((boss >= window[0]) & (boss <= window[1]))
    if inside.size < 10:
        raise LabelRangeError(f"the survey window {window} lies outside the template model's {boss[0]:.0f}-{boss[-1]:.0f} A.")
    return boss[inside], int(inside[0]) * model.oversample, int(inside.size)


def survey_wavelength(setup: ObservingSetup | None = None, model: TemplateModel | None = None) -> np.ndarray:
    """BOSS pixel centres (vacuum A) of the mock spectra for a setup's window."""
    setup = setup or ObservingSetup()
    model = model or default_template_model()
    return _layout(model, setup.window)[0]


def survey_mjd(seed: int | np.random.Generator) -> int:
    """The MJD that names a mock survey: ``MOCK_MJD + seed mod MOCK_MJD_SPAN`` (60000-99999).

    Parameters
    ----------
    seed : int or numpy.random.Generator
        The survey's seed, or the generator it is drawn from, before any
        draw. A generator fresh from ``numpy.random.default_rng(seed)`` with an
        integer seed gives the same MJD as ``seed``; any other generator (one
        already drawn from, or of another kind) an MJD from a hash of its
        state, so two surveys drawn one after the other from one generator
        get different names too.

    Returns
    -------
    int
    """
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return MOCK_MJD + int(seed) % MOCK_MJD_SPAN
    if not isinstance(seed, np.random.Generator):
        raise TypeError(f"survey_mjd needs an integer seed or a numpy Generator, not {type(seed).__name__}.")
    state = seed.bit_generator.state
    entropy = getattr(getattr(seed.bit_generator, "seed_seq", None), "entropy", None)
    if isinstance(entropy, int) and entropy >= 0 and np.random.default_rng(entropy).bit_generator.state == state:
        return MOCK_MJD + entropy % MOCK_MJD_SPAN
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=lambda v: np.asarray(v).tolist()).encode())
    return MOCK_MJD + int.from_bytes(digest.digest()[:8], "big") % MOCK_MJD_SPAN


def mock_identifiers(mock_id: np.ndarray, mjd: int = MOCK_MJD) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """SDSS-style identifiers ``spec-PLATE-MJD-FIBER`` and plate, fiber, sdss_id of mock stars of the survey ``mjd``.

    Raises
    ------
    LabelRangeError
        If ``mjd`` is outside ``MOCK_MJD`` to ``MOCK_MJD + MOCK_MJD_SPAN - 1``,
        or a mock id reaches ``MOCK_SURVEY_STRIDE``.
    """
    mock_id = np.asarray(mock_id, dtype=np.int64)
    if not MOCK_MJD <= int(mjd) < MOCK_MJD + MOCK_MJD_SPAN:
        raise LabelRangeError(f"a mock survey's MJD must be {MOCK_MJD}-{MOCK_MJD + MOCK_MJD_SPAN - 1}, not {mjd}.")
    if mock_id.size and (mock_id.min() < 0 or mock_id.max() >= MOCK_SURVEY_STRIDE):
        raise LabelRangeError(f"mock ids must be 0-{MOCK_SURVEY_STRIDE - 1} (at most {MOCK_SURVEY_STRIDE} stars).")
    plate = MOCK_PLATE0 + mock_id // 1000
    fiber = mock_id % 1000 + 1
    names = [f"spec-{p:05d}-{int(mjd):05d}-{f:04d}" for p, f in zip(plate, fiber)]
    return names, plate, fiber, MOCK_SDSS_ID0 + (int(mjd) - MOCK_MJD) * MOCK_SURVEY_STRIDE + mock_id


def _label_table(
    labels: np.ndarray, group: np.ndarray, group_id: np.ndarray, first_id: int, mjd: int
) -> Table:
    mock_id = first_id + np.arange(len(labels))
    names, plate, fiber, sdss_id = mock_identifiers(mock_id, mjd)
    table = Table()
    table["identifier"] = names
    for name in LABEL_NAMES:
        table[name] = np.asarray(labels[name], dtype=float)
    table["group"] = np.asarray(group, dtype=str)
    table["group_id"] = np.asarray(group_id, dtype=np.int64)
    table["mock_id"] = mock_id
    table["plate"] = plate
    table["mjd"] = np.full(len(labels), int(mjd))
    table["fiberid"] = fiber
    table["sdss_id"] = sdss_id
    for col, unit in (("teff", "K"), ("logg", "dex"), ("fe_h", "dex"), ("alpha_m", "dex")):
        table[col].unit = unit
    return table


def iter_observed(
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    group: np.ndarray | None = None,
    group_id: np.ndarray | None = None,
    setup: ObservingSetup | None = None,
    model: TemplateModel | None = None,
    rest_frame: bool = False,
    snr: np.ndarray | None = None,
    v_rad: np.ndarray | None = None,
    first_id: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mjd: int | None = None,
) -> Iterator[tuple[SpectrumBatch, Table]]:
    """Observe labelled stars chunk by chunk (bounded memory for large surveys).

    Parameters
    ----------
    labels : numpy.ndarray
        Structured array with fields ``teff``, ``logg``, ``fe_h``, ``alpha_m``
        (:data:`bayesslam.mock.population.LABEL_DTYPE`).
    rng : numpy.random.Generator
        The only source of randomness.
    group, group_id : numpy.ndarray, optional
        Per-star group name (``"field"``, ``"binary"``, ``"cluster"``) and id.
    setup : ObservingSetup, optional
        Observational effects (defaults documented in :mod:`bayesslam.mock.observe`).
    model : TemplateModel, optional
        Default: the shipped model.
    rest_frame : bool
        Leave the spectra in the rest frame (as SDSS-V mwmStar coadds are);
        ``v_rad`` is still drawn and recorded, sky lines are placed at their
        rest-frame positions.
    snr, v_rad : numpy.ndarray, optional
        Per-star target SNR and radial velocity (km/s) instead of drawing them.
    first_id : int
        Mock id of the first star (sets identifiers, plates, fibers).
    chunk_size : int
        Stars per chunk.
    mjd : int, optional
        The MJD in the identifiers and files (:func:`survey_mjd`); default
        ``survey_mjd(rng)`` before any draw.

    Yields
    ------
    (SpectrumBatch, astropy.table.Table)
        One chunk of spectra and their true labels (``identifier``, labels,
        ``snr``, ``v_rad``, ``flux_level``, ``group``, ``group_id``, ...).

    Raises
    ------
    LabelRangeError
        If labels lie outside the template model's valid range, or a
        velocity outside what the window allows.
    """
    setup = setup or ObservingSetup()
    model = model or default_template_model()
    mjd = survey_mjd(rng) if mjd is None else int(mjd)
    labels = np.asarray(labels)
    n = len(labels)
    model.check_labels(labels["teff"], labels["fe_h"])
    wave, offset, n_out = _layout(model, setup.window)
    group = np.full(n, "field") if group is None else np.asarray(group)
    group_id = np.full(n, -1) if group_id is None else np.asarray(group_id)
    snr = draw_snr(n, rng, setup.snr_range) if snr is None else np.broadcast_to(np.asarray(snr, float), (n,))
    v_rad = draw_v_rad(n, rng, setup.v_rad_mean, setup.v_rad_sd) if v_rad is None else np.broadcast_to(
        np.asarray(v_rad, float), (n,))
    level = draw_flux_level(n, rng, setup.flux_level_range)
    table = _label_table(labels, group, group_id, first_id, mjd)
    table["snr"] = snr
    table["v_rad"] = v_rad
    table["v_rad"].unit = "km/s"
    table["flux_level"] = level
    table["flux_level"].unit = "1e-17 erg / (s cm2 Angstrom)"
    for start in range(0, n, chunk_size):
        sl = slice(start, min(n, start + chunk_size))
        m = sl.stop - sl.start
        rest = model.rest_flux(labels["teff"][sl], labels["fe_h"][sl])
        if rest_frame:
            sub = rest[:, offset:offset + n_out * model.oversample]
            sky_doppler = 1.0 / (1.0 + v_rad[sl] / SPEED_OF_LIGHT_KMS)
        else:
            sub = doppler_shift_sub_pixels(rest, v_rad[sl], offset, n_out * model.oversample, model.sub_step)
            sky_doppler = np.ones(m)
        flux = sub.reshape(m, n_out, model.oversample).mean(axis=-1)
        flux = flux * draw_distortion(wave, m, rng, setup.distortion_sd)
        flux = flux * (level[sl] / np.median(flux, axis=1))[:, None]
        noisy, ivar, mask = add_noise(flux, wave, snr[sl], rng, setup, sky_doppler)
        chunk = table[sl]
        cols = {k: np.asarray(chunk[k]) for k in ("snr", "v_rad", "plate", "mjd", "fiberid", "sdss_id", "mock_id")}
        meta = tuple(
            SpectrumMeta(
                identifier=str(ident),
                snr=float(cols["snr"][i]),
                v_rad=float(cols["v_rad"][i]),
                source="bayesslam.mock",
                rest_frame=rest_frame,
                extra={
                    "plate": int(cols["plate"][i]), "mjd": int(cols["mjd"][i]),
                    "fiberid": int(cols["fiberid"][i]), "sdss_id": int(cols["sdss_id"][i]),
                    "catalogid": int(cols["sdss_id"][i]), "class": "STAR", "subclass": "M",
                    "mock_id": int(cols["mock_id"][i]),
                },
            )
            for i, ident in enumerate(chunk["identifier"])
        )
        yield SpectrumBatch(wave, noisy, ivar, mask, meta), chunk


def _collect(chunks: Iterator[tuple[SpectrumBatch, Table]]) -> tuple[SpectrumBatch, Table]:
    batches, tables = zip(*chunks)
    if len(batches) == 1:
        return batches[0], tables[0]
    return (
        SpectrumBatch(
            wave=batches[0].wave,
            flux=np.concatenate([b.flux for b in batches]),
            ivar=np.concatenate([b.ivar for b in batches]),
            mask=np.concatenate([b.mask for b in batches]),
            meta=tuple(m for b in batches for m in b.meta),
        ),
        vstack(list(tables)),
    )


def observe_labels(labels: np.ndarray, rng: np.random.Generator, **options: Any) -> tuple[SpectrumBatch, Table]:
    """Observe user-given labels; all options as :func:`iter_observed`. Returns (SpectrumBatch, Table)."""
    if len(labels) == 0:
        raise LabelRangeError("no labels given.")
    return _collect(iter_observed(labels, rng, **options))


def _population(
    n_stars: int,
    rng: np.random.Generator,
    n_binaries: int,
    n_cluster: int,
    cluster_fe_h: float | None,
    cluster_dispersion: float,
    domain: Domain,
    distribution: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Field stars, then binary pairs (primary, secondary adjacent), then one cluster."""
    parts, groups, ids = [], [], []
    if n_stars:
        parts.append(draw_labels(n_stars, rng, domain, distribution))
        groups.append(np.full(n_stars, "field"))
        ids.append(np.full(n_stars, -1))
    if n_binaries:
        primary, secondary = draw_binary_labels(n_binaries, rng, domain, distribution)
        pairs = np.empty(2 * n_binaries, dtype=primary.dtype)
        pairs[0::2], pairs[1::2] = primary, secondary
        parts.append(pairs)
        groups.append(np.full(2 * n_binaries, "binary"))
        ids.append(np.repeat(np.arange(n_binaries), 2))
    if n_cluster:
        if cluster_fe_h is None:
            cluster_fe_h = float(draw_teff_fe_h(1, rng, domain, distribution)[1][0])
        parts.append(draw_cluster_labels(n_cluster, rng, cluster_fe_h, cluster_dispersion, domain, distribution))
        groups.append(np.full(n_cluster, "cluster"))
        ids.append(np.zeros(n_cluster, dtype=int))
    if not parts:
        raise LabelRangeError("a mock survey needs at least one star.")
    return np.concatenate(parts), np.concatenate(groups), np.concatenate(ids)


def make_survey(
    n_stars: int,
    rng: np.random.Generator,
    *,
    n_binaries: int = 0,
    n_cluster: int = 0,
    cluster_fe_h: float | None = None,
    cluster_dispersion: float = 0.03,
    domain: Domain = PAPER_DOMAIN,
    distribution: str = "birky2020",
    setup: ObservingSetup | None = None,
    model: TemplateModel | None = None,
    rest_frame: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mjd: int | None = None,
) -> tuple[SpectrumBatch, Table]:
    """Generate a mock survey in memory.

    Parameters
    ----------
    n_stars : int
        Field stars (labels from :func:`bayesslam.mock.population.draw_labels`).
    rng : numpy.random.Generator
        The only source of randomness.
    n_binaries : int
        Wide-binary pairs added (``2 n_binaries`` stars sharing [Fe/H] and [alpha/M]).
    n_cluster : int
        Members of one cluster added.
    cluster_fe_h : float, optional
        The cluster's [Fe/H] (default: one draw from the field distribution).
    cluster_dispersion : float
        Its [Fe/H] (and [alpha/M]) dispersion in dex.
    domain : Domain
        Label box (default: the paper's training domain).
    distribution : {"birky2020", "uniform"}
        Teff-[Fe/H] distribution of field stars.
    setup : ObservingSetup, optional
        Observational effects.
    model : TemplateModel, optional
        Default: the shipped model.
    rest_frame : bool
        Rest-frame spectra (for SDSS-V mwmStar-like files).
    chunk_size : int
        Stars generated at once.
    mjd : int, optional
        The MJD that names the survey's stars (``spec-PLATE-MJD-FIBER``);
        default :func:`survey_mjd` of ``rng`` before any draw: ``60000 + seed
        mod 40000`` for ``rng = numpy.random.default_rng(seed)``.

    Returns
    -------
    (SpectrumBatch, astropy.table.Table)
        Raw spectra and true labels; ``2 * n_binaries + n_cluster`` stars are
        appended after the field stars.
    """
    mjd = survey_mjd(rng) if mjd is None else int(mjd)
    labels, group, group_id = _population(
        n_stars, rng, n_binaries, n_cluster, cluster_fe_h, cluster_dispersion, domain, distribution
    )
    return observe_labels(
        labels, rng, group=group, group_id=group_id, setup=setup, model=model,
        rest_frame=rest_frame, chunk_size=chunk_size, mjd=mjd,
    )


def make_binaries(n_pairs: int, rng: np.random.Generator, **options: Any) -> tuple[SpectrumBatch, Table]:
    """Generate ``n_pairs`` wide binaries (adjacent rows, same ``group_id``); options as :func:`make_survey`."""
    return make_survey(0, rng, n_binaries=n_pairs, **options)


def make_cluster(
    n_stars: int, rng: np.random.Generator, fe_h: float, dispersion: float, **options: Any
) -> tuple[SpectrumBatch, Table]:
    """Generate ``n_stars`` cluster members sharing [Fe/H] (dispersion in dex); options as :func:`make_survey`."""
    return make_survey(0, rng, n_cluster=n_stars, cluster_fe_h=fe_h, cluster_dispersion=dispersion, **options)


def rest_frame_spectra(
    teff: np.ndarray, fe_h: np.ndarray, *, model: TemplateModel | None = None, wave: np.ndarray | None = None
) -> np.ndarray:
    """Noise-free rest-frame raw flux (no distortion, arbitrary scale) on ``wave`` (default: the model grid).

    Raises
    ------
    LabelRangeError
        If the labels are outside the model's range or ``wave`` outside its coverage.
    """
    model = model or default_template_model()
    wave = model_wavelength() if wave is None else np.asarray(wave, dtype=float)
    flux = model.bin_to_boss(model.rest_flux(np.atleast_1d(teff), np.atleast_1d(fe_h)))
    out = rebin(model.boss_wave, flux, np.ones_like(flux), wave)
    if np.any(out.mask):
        raise LabelRangeError(
            f"wavelengths {wave[0]:.1f}-{wave[-1]:.1f} A are not covered by the template model "
            f"({model.boss_wave[0]:.1f}-{model.boss_wave[-1]:.1f} A)."
        )
    return np.atleast_2d(out.flux)


def noiseless_normalized(
    teff: np.ndarray,
    fe_h: np.ndarray,
    *,
    model: TemplateModel | None = None,
    wave: np.ndarray | None = None,
    settings: ContinuumSettings | None = None,
) -> np.ndarray:
    """The noise-free normalized spectrum that ``prepare`` would give, on ``model_wavelength()``.

    The rest-frame raw model flux is normalized with the package's SLAM
    normalization (production settings unless given), so this is the
    noise-free limit of a mock spectrum after read -> rest frame -> rebin ->
    normalize (calibration distortions aside, which the normalization
    removes to first order).

    Parameters
    ----------
    teff, fe_h : array_like
        Labels (within the model's valid range).
    model : TemplateModel, optional
        Default: the shipped model.
    wave : numpy.ndarray, optional
        Target grid (default :func:`bayesslam.grid.model_wavelength`).
    settings : ContinuumSettings, optional
        Normalization settings.

    Returns
    -------
    numpy.ndarray, shape (n, n_pix)
    """
    wave = model_wavelength() if wave is None else np.asarray(wave, dtype=float)
    raw = rest_frame_spectra(teff, fe_h, model=model, wave=wave)
    settings = settings or ContinuumSettings()
    return normalize(wave, raw, np.ones_like(raw), **settings.to_dict()).flux


def _file_name(row: Any, format: str) -> tuple[str, str]:
    """(file name, identifier that bayesslam.io.read_spectrum returns for it)."""
    if format == "sdss-spec":
        return f"{row['identifier']}.fits", str(row["identifier"])
    return f"mwmStar-mock-{int(row['sdss_id'])}.fits", str(int(row["sdss_id"]))


def write_survey(
    batch: SpectrumBatch,
    labels: Table,
    folder: str | Path,
    format: str = "sdss-spec",
    *,
    overwrite: bool = False,
    labels_name: str = "labels.csv",
) -> tuple[list[Path], Path]:
    """Write a mock survey as real-format files plus a labels table.

    Parameters
    ----------
    batch : SpectrumBatch
        From :func:`make_survey` (rows in the order of ``labels``).
    labels : astropy.table.Table
        Its labels table.
    folder : str or pathlib.Path
        Output folder (created).
    format : {"sdss-spec", "sdssv-mwm"}
        ``"sdss-spec"``: SDSS ``spec-PLATE-MJD-FIBER.fits`` files (observed
        frame). ``"sdssv-mwm"``: SDSS-V mwmStar-like coadds on the full
        4648-pixel BOSS grid, which are rest frame, so the batch must have
        been made with ``rest_frame=True``.
    overwrite : bool
        Replace existing files.
    labels_name : str
        File name of the labels table (CSV) in ``folder``.

    Returns
    -------
    (list of pathlib.Path, pathlib.Path)
        The spectrum files and the labels table. In the table,
        ``identifier`` is what :func:`bayesslam.io.read_spectrum` returns for
        each file and ``file`` its name.

    Raises
    ------
    UnknownFormatError
        For another format.
    SpectrumValidationError
        If batch and labels disagree, or an observed-frame batch is written as mwmStar.
    """
    if format not in _FORMATS:
        raise UnknownFormatError(f"mock surveys are written as one of {_FORMATS}, not {format!r}.")
    if len(batch) != len(labels) or list(batch.identifiers) != [str(x) for x in labels["identifier"]]:
        raise SpectrumValidationError("the batch and the labels table do not match row by row.")
    if format == "sdssv-mwm" and not all(m.rest_frame for m in batch.meta):
        raise SpectrumValidationError(
            "SDSS-V mwmStar coadds are rest frame: generate the survey with rest_frame=True for format 'sdssv-mwm'."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, files, identifiers = [], [], []
    for spectrum, row in zip(batch, labels):
        name, identifier = _file_name(row, format)
        paths.append(write_spectrum(spectrum, folder / name, format, overwrite=overwrite))
        files.append(name)
        identifiers.append(identifier)
    out = labels.copy()
    out["identifier"] = identifiers
    out["file"] = files
    labels_path = folder / labels_name
    out.write(labels_path, format="ascii.csv", overwrite=True)
    return paths, labels_path


def generate_survey_files(
    folder: str | Path,
    n_stars: int,
    seed: int,
    n_binaries: int = 0,
    n_cluster: int = 0,
    format: str = "sdss-spec",
    snr_range: tuple[float, float] = (3.0, 50.0),
    *,
    cluster_fe_h: float | None = None,
    cluster_dispersion: float = 0.03,
    domain: Domain = PAPER_DOMAIN,
    distribution: str = "birky2020",
    setup: ObservingSetup | None = None,
    overwrite: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, Any]:
    """Generate a mock survey straight to disk (bounded memory), for the ``bayesslam mock`` command.

    Parameters
    ----------
    folder : str or pathlib.Path
        Output folder: spectrum files, ``labels.csv`` and ``survey.json``.
    n_stars : int
        Field stars; ``2 n_binaries + n_cluster`` more are added.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same
        survey as :func:`make_survey` with ``default_rng(seed)``. It names
        the files too: their MJD is ``60000 + seed mod 40000``
        (:func:`survey_mjd`), so surveys of different seeds can share a
        folder or a catalog.
    n_binaries, n_cluster : int
        Wide-binary pairs and cluster members.
    format : {"sdss-spec", "sdssv-mwm"}
        File layout (``"sdssv-mwm"`` spectra are rest frame).
    snr_range : (float, float)
        Log-uniform SNR range (overrides ``setup.snr_range``).
    cluster_fe_h, cluster_dispersion, domain, distribution, setup, chunk_size
        As in :func:`make_survey`.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    dict
        JSON-ready summary: counts, files, settings, timing (also written to
        ``survey.json``).
    """
    if format not in _FORMATS:
        raise UnknownFormatError(f"mock surveys are written as one of {_FORMATS}, not {format!r}.")
    began = time.perf_counter()
    setup = replace(setup or ObservingSetup(), snr_range=tuple(float(x) for x in snr_range))
    rng = np.random.default_rng(seed)
    mjd = survey_mjd(seed)
    labels, group, group_id = _population(
        n_stars, rng, n_binaries, n_cluster, cluster_fe_h, cluster_dispersion, domain, distribution
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rest_frame = format == "sdssv-mwm"
    tables = []
    for batch, table in iter_observed(
        labels, rng, group=group, group_id=group_id, setup=setup,
        rest_frame=rest_frame, chunk_size=chunk_size, mjd=mjd,
    ):
        files, identifiers = [], []
        for spectrum, row in zip(batch, table):
            name, identifier = _file_name(row, format)
            write_spectrum(spectrum, folder / name, format, overwrite=overwrite)
            files.append(name)
            identifiers.append(identifier)
        table = table.copy()
        table["identifier"] = identifiers
        table["file"] = files
        tables.append(table)
        logger.info("wrote %d of %d mock spectra", sum(len(t) for t in tables), len(labels))
    all_labels = vstack(tables)
    labels_path = folder / "labels.csv"
    all_labels.write(labels_path, format="ascii.csv", overwrite=True)
    model = default_template_model()
    summary = {
        "folder": str(folder),
        "format": format,
        "seed": int(seed),
        "mjd": mjd,
        "n_spectra": len(all_labels),
        "n_field": int(n_stars),
        "n_binaries": int(n_binaries),
        "n_cluster": int(n_cluster),
        "rest_frame": rest_frame,
        "labels_file": str(labels_path),
        "domain": {"teff": list(domain.teff), "fe_h": list(domain.fe_h),
                   "logg": list(domain.logg) if domain.logg else None},
        "distribution": distribution,
        "setup": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(setup).items()},
        "template_model_sha256": model.meta.get("arrays_sha256"),
        "wavelength": {"first_loglam": round(float(np.log10(survey_wavelength(setup, model)[0])), 6),
                       "n_pixels": int(survey_wavelength(setup, model).size),
                       "dloglam": BOSS_DLOGLAM, "loglam0_grid": BOSS_LOGLAM0},
        "elapsed_s": round(time.perf_counter() - began, 3),
    }
    (folder / "survey.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
