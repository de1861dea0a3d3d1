"""Shared fixtures: paths to the real spectra shipped in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayesslam._precision import float64

DATA = Path(__file__).parent / "data"

#: Real SDSS/BOSS M-dwarf spec files shipped for tests (see tests/data/README.md).
SDSS_M_DWARFS = (
    "spec-0618-52049-0372.fits",
    "spec-1079-52621-0509.fits",
    "spec-1123-52882-0065.fits",
    "spec-5047-55833-0936.fits",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real test spectra."""
    return DATA


@pytest.fixture(scope="session")
def sdss_files() -> list[Path]:
    """The real SDSS M-dwarf spec files."""
    return [DATA / name for name in SDSS_M_DWARFS]


@pytest.fixture(scope="module")
def x64():
    """64-bit JAX for a module whose tests build JAX arrays themselves, scoped to that module.

    bayesslam's own entry points need no switch (they run in 64 bits inside);
    no test module changes JAX's global configuration.
    """
    with float64():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the files with the most ``slow`` tests first (order within a file kept).

    The suite runs on two workers that take whole files (``--dist loadfile``); starting with the
    longest files, not with whichever sorts first, keeps one worker from finishing a long file alone
    at the end.
    """
    slow: dict[str, int] = {}
    for item in items:
        slow[item.nodeid.split("::")[0]] = slow.get(item.nodeid.split("::")[0], 0) + (
            item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.nodeid.split("::")[0]])
