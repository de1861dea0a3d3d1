"""One JSON record per benchmark run: the figures, the command, the date, the machine and the versions.

Every benchmark in this folder ends by writing its figures with :func:`write`
to ``benchmarks/results/<benchmark>.json`` (``--results PATH`` to write
elsewhere, ``--results ''`` to write nothing; :func:`add_results_option`,
:func:`results_path`). ``python benchmarks/report.py``
turns every record there into ``docs/benchmarks.md``.

A record is a JSON object::

    {"benchmark": "bench_inference", "title": "...", "source": "run",
     "command": "python benchmarks/bench_inference.py --only map",
     "date": "2026-12-07T09:30:00Z",
     "machine": {"platform": ..., "cpu": ..., "cores": ..., "ram_gb": ..., "jax_backend": ..., "jax_devices": [...]},
     "versions": {"bayesslam": ..., "jax": ..., "numpy": ..., "numpyro": ..., "scikit-learn": ...},
     "settings": {...},
     "figures": [{"name": ..., "value": ..., "unit": ..., "baseline": ..., "note": ...}, ...]}

Records transcribed from older documentation also carry ``notes`` (a list of
sentences) and their ``source`` says so.

``baseline`` names the figure that a ratio is taken against; it is always
measured in the same run, on the same machine. ``source`` is ``"run"`` for a
record written by a benchmark (records transcribed from older documentation
say so there instead).

This is a helper of the benchmark scripts, not part of the package: the
scripts are run as ``python benchmarks/bench_x.py`` from the repository root,
so this folder is on ``sys.path`` and ``import _record`` finds it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: The repository root (this file is ``benchmarks/_record.py``).
ROOT = Path(__file__).resolve().parent.parent
#: Where the records live; committed, read by ``benchmarks/report.py``.
RESULTS = ROOT / "benchmarks" / "results"
#: Distributions whose versions every record carries.
PACKAGES = ("bayesslam", "jax", "jaxlib", "numpy", "numpyro", "scikit-learn")


def add_results_option(parser: argparse.ArgumentParser, default_name: str, extra: str = "") -> None:
    """Add ``--results PATH`` to a benchmark's parser; read it back with :func:`results_path`.

    The default is ``benchmarks/results/<default_name>.json`` (``extra`` may say
    when a script picks another name); ``--results ''`` writes no record.
    """
    default = (RESULTS / f"{default_name}.json").relative_to(ROOT)
    parser.add_argument(
        "--results", default=None, metavar="PATH",
        help=f"JSON record of the figures (default: {default}{extra}; '' writes none); "
             "python benchmarks/report.py turns the records into docs/benchmarks.md",
    )


def results_path(value: str | None, default_name: str) -> Path | None:
    """The record's path from ``--results``: the default under ``benchmarks/results/``, a path, or None ('')."""
    if value is None:
        return RESULTS / f"{default_name}.json"
    if value == "":
        return None
    return Path(value)


def figure(name: str, value: Any, unit: str = "", baseline: str | None = None, note: str = "") -> dict:
    """One measured figure; ``baseline`` names the figure of the same run that a ratio is against."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    elif hasattr(value, "item"):  # numpy scalar
        value = value.item()
    out = {"name": name, "value": value, "unit": unit, "note": note}
    if baseline:
        out["baseline"] = baseline
    return out


def command() -> str:
    """The command line of this process, with the script's path relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(ROOT))
    except ValueError:
        script_text = sys.argv[0]
    return shlex.join(["python", script_text, *sys.argv[1:]])


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    """Platform, CPU model, cores, RAM, JAX's backend and devices."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
    }
    try:
        load = os.getloadavg()
        info["load_average_at_end"] = [round(x, 2) for x in load]
    except OSError:
        pass
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = sorted({f"{d.platform}: {d.device_kind}" for d in jax.devices()})
        info["jax_device_count"] = jax.device_count()
    except Exception as error:  # a record is still useful without JAX's view
        info["jax_backend"] = f"unavailable ({type(error).__name__})"
    return info


def versions() -> dict:
    """Installed versions of the libraries the figures depend on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write(path: Path | None, benchmark: str, figures: list[dict], title: str = "",
          settings: dict | None = None) -> Path | None:
    """Write one run's record to ``path`` (atomically) and say where; ``None`` writes nothing."""
    if path is None:
        return None
    path = Path(path)
    record = {
        "benchmark": benchmark,
        "title": title,
        "source": "run",
        "command": command(),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "machine": machine(),
        "versions": versions(),
        "settings": settings or {},
        "figures": figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    try:
        shown = path.resolve().relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"results: {shown} ({len(figures)} figures; python benchmarks/report.py updates docs/benchmarks.md)",
          flush=True)
    return path
