"""Inference speed of two revisions of bayesslam in one run: MAP stars/s and NUTS seconds per star.

One command::

    python benchmarks/bench_revisions.py --before 93619eb [--after WORKTREE] [--n-map 4000] [--n-nuts 64]

The ``--before`` revision is checked out in a temporary git worktree; the
``--after`` code is this checkout unless another folder is given. Each
workload runs in fresh processes with ``PYTHONPATH`` set to one revision,
alternating between the two (``--repeats`` times for the MAP), on the same
prepared mock stars (made once by this checkout's :func:`bayesslam.mock.mock_set`)
with the default model each revision finds:

* MAP: stars per second of a second ``fit_map`` pass over ``--n-map`` stars
  (compilation excluded), and the seconds of a 16-star fit with the model
  loaded again, after the same fit with the first model object (revisions
  whose compiled code is keyed on the model object recompile here);
* NUTS: seconds per star for ``--n-nuts`` stars x 1 chain, 1000 warm-up +
  1000 draws from the MAP, the first call (compilation included) and a
  second call.

Revisions before the package was laid out by stage (``bayesslam.fit``,
``bayesslam.sample``, a global ``jax_enable_x64``) are run with their own API.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _record
import numpy as np

ROOT = _record.ROOT

WORKLOAD = r'''
import json, sys, time
import numpy as np
task, data_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = np.load(data_path)
flux, ivar = data["flux"][:n], data["ivar"][:n]
try:
    import jax
    from bayesslam.emulator import default_model_path, load_model
    from bayesslam.infer import fit_map, sample_nuts
except ImportError:  # before the stage layout: module per concept, 64-bit JAX switched on globally
    import jax
    jax.config.update("jax_enable_x64", True)
    from bayesslam.default_model import default_model_path
    from bayesslam.fit import fit_map
    from bayesslam.modelfile import load_model
    from bayesslam.sample import sample_nuts
out = {}
emulator = load_model(default_model_path()).emulator
if task == "map":
    fit_map(emulator, flux, ivar)
    t0 = time.perf_counter(); result = fit_map(emulator, flux, ivar); seconds = time.perf_counter() - t0
    out["map_stars_per_s"] = n / seconds
    out["converged"] = float(np.mean(result.status == 0))
    fit_map(emulator, flux[:16], ivar[:16])  # the 16-star batch shapes are compiled with the first model
    again = load_model(default_model_path()).emulator
    t0 = time.perf_counter(); fit_map(again, flux[:16], ivar[:16]); out["map_16_reloaded_s"] = time.perf_counter() - t0
else:
    start = fit_map(emulator, flux, ivar)
    for name, seed in (("nuts_first_s_per_star", 0), ("nuts_second_s_per_star", 1)):
        t0 = time.perf_counter()
        sample_nuts(emulator, flux, ivar, rng_key=jax.random.key(seed), num_warmup=1000, num_samples=1000,
                    init_labels=start.labels, init_sigma=start.sigma, progress=False)
        out[name] = (time.perf_counter() - t0) / n
print(json.dumps(out))
'''


def run(code_root: Path, task: str, data: Path, n: int) -> dict:
    """One workload in a fresh process on the revision at ``code_root``."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "BAYESSLAM_DEFAULT_MODEL")}
    env["PYTHONPATH"] = str(code_root)
    env["BAYESSLAM_DEFAULT_MODEL"] = str(ROOT / "models" / "bayesslam-default-v1.npz")
    done = subprocess.run([sys.executable, "-c", WORKLOAD, task, str(data), str(n)], env=env, cwd=code_root,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{task} on {code_root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision to compare with (e.g. a commit)")
    parser.add_argument("--after", type=Path, default=ROOT, help="folder of the other revision (default: this checkout)")
    parser.add_argument("--n-map", type=int, default=4000)
    parser.add_argument("--n-nuts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="alternating MAP runs per revision")
    _record.add_results_option(parser, "bench_revisions")
    args = parser.parse_args()

    from bayesslam.mock import mock_set

    with tempfile.TemporaryDirectory(prefix="bayesslam-revisions-") as tmp:
        tmp = Path(tmp)
        data = tmp / "mock.npz"
        mock = mock_set(max(args.n_map, args.n_nuts), 777, (5.0, 50.0), progress=False)
        np.savez(data, flux=mock.flux, ivar=mock.ivar)
        before = tmp / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True,
                       capture_output=True)
        try:
            revisions = {"before": before, "after": args.after}
            results: dict[str, dict[str, list[float]]] = {name: {} for name in revisions}
            for task, n, repeats in (("map", args.n_map, args.repeats), ("nuts", args.n_nuts, 1)):
                for _ in range(repeats):
                    for name, code in revisions.items():
                        for key, value in run(code, task, data, n).items():
                            results[name].setdefault(key, []).append(value)
                        print(f"{name:6s} {task}: {json.dumps({k: v[-1] for k, v in results[name].items()})}",
                              flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False,
                           capture_output=True)

    print(f"\n{'figure':32s} {'before (' + args.before + ')':>22s} {'after':>14s} {'after / before':>15s}")
    figures = []
    for key, unit in (("map_stars_per_s", "stars/s"), ("map_16_reloaded_s", "s"), ("nuts_first_s_per_star", "s"),
                      ("nuts_second_s_per_star", "s")):
        old, new = np.mean(results["before"][key]), np.mean(results["after"][key])
        runs = ", ".join(f"{v:.3g}" for v in results["after"][key])
        print(f"{key:32s} {old:22.3f} {new:14.3f} {new / old:15.2f}   (after: {runs})")
        figures.append(_record.figure(f"{key} before ({args.before})", round(float(old), 4), unit,
                                      note=", ".join(f"{v:.4g}" for v in results["before"][key])))
        figures.append(_record.figure(f"{key} after", round(float(new), 4), unit,
                                      baseline=f"{key} before ({args.before})", note=f"runs: {runs}"))
    record = _record.results_path(args.results, "bench_revisions")
    _record.write(record, "bench_revisions", figures,
                  title=f"Inference speed of two revisions in one run (before: {args.before})",
                  settings={"n_map": args.n_map, "n_nuts": args.n_nuts, "repeats": args.repeats})


if __name__ == "__main__":
    main()
