"""Compile oasislmf's numba kernels into ``NUMBA_CACHE_DIR`` before the first analysis needs them.

``python -m oasis_ops.deploy.warmup`` builds a tiny synthetic model in a temporary folder and runs a full
analysis of it through :mod:`oasis_ops.execution.steps`, the code the tasks run: the keys lookup (in two v2
chunks), the chunks' keys collected, the input files, v1 losses (one pipeline per core), then v2's
run folder, one loss chunk and the output step. Every kernel those paths use is compiled and cached
on the way. (oasislmf's own ``oasislmf warmup`` runs each pytool on bundled test files rather than an
analysis through these steps, and misses some: the keys lookup's, gulmc's correlated sampling.) The
analysis asks for every ORD output. The temporary folder is removed afterwards; only the cache stays.

Not covered: kernels of lookup steps the synthetic model does not use (its lookup merges on postal
codes; e.g. geo-grid lookups compile their own), and reinsurance (the synthetic model has none).

Loss pipelines run their tools concurrently, and two processes compiling at once can both rewrite a
numba index file (``*.nbi``), the last one dropping the other's entry; that kernel would compile again
on the worker's first analysis. So the analysis is run again until a pass leaves the cache as it was
(at most ``--max-passes``): on a warm cache the first pass already does, and costs only the run.

The worker image runs this at build time (``worker_image/Dockerfile``); a machine can run it by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oasis_ops.execution.environment import prepare_environment
from oasis_ops.registry import Model, load_model

if TYPE_CHECKING:
    from oasis_ops.tools.synthetic import SyntheticModelSpec

#: Tiny: the kernels' signatures do not depend on sizes, and a warm pass then costs little more than
#: the pipelines' process start-ups.
WARMUP_SIZES = dict(
    locations=8, events=6, areaperils=4, vulnerabilities=4, intensity_bins=5, damage_bins=5,
    samples=4, periods=10, locations_per_account=4,
)
#: ORD outputs the synthetic model's settings do not ask for, added so that their kernels compile too
#: (quantile outputs use oasislmf's default quantiles). CSV only: pyarrow writes parquet, no kernel.
EXTRA_ORD_OUTPUTS = (
    "elt_quantile", "elt_moment", "plt_quantile", "alt_meanonly", "alct_convergence",
    "ept_per_sample_mean_aep", "ept_per_sample_mean_oep", "psept_aep", "psept_oep",
)
DEFAULT_MAX_PASSES = 3
#: Numba's cache files: the index of a function's compiled overloads, and one data file each.
CACHE_PATTERNS = ("*.nbi", "*.nbc")


@dataclass(frozen=True)
class WarmupResult:
    cache_dir: Path
    #: Seconds of each pass of the analysis.
    passes: tuple[float, ...]
    #: Whether the last pass left the cache unchanged (else ``max_passes`` ran out first).
    stable: bool
    #: Cache files (``*.nbi``, ``*.nbc``) written or rewritten by all the passes.
    changed_files: int
    index_files: int
    seconds: float


def cache_state(cache_dir: Path) -> dict[str, tuple[int, int]]:
    """Cache file -> (size, mtime in ns): what a compile writes and a cache hit never touches."""
    state = {}
    for pattern in CACHE_PATTERNS:
        for path in cache_dir.rglob(pattern):
            stat = path.stat()
            state[str(path.relative_to(cache_dir))] = (stat.st_size, stat.st_mtime_ns)
    return state


def cache_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def warmup_settings(model_root: Path) -> dict:
    """The synthetic model's analysis settings, with every extra ORD output on for each summary."""
    settings = json.loads((model_root / "analysis_settings.json").read_text())
    for perspective in ("gul_summaries", "il_summaries"):
        for summary in settings.get(perspective, []):
            summary.setdefault("ord_output", {}).update(dict.fromkeys(EXTRA_ORD_OUTPUTS, True))
    return settings


def run_analysis(model: Model, exposure: dict[str, Path], settings: Path, work: Path) -> None:
    """One analysis through the tasks' own steps: the v2 lookup and input files, v1 losses, v2 losses."""
    from oasis_ops.execution import steps

    chunks = 2
    key_chunks = [steps.lookup_keys(model, exposure, i, chunks, work / "lookup" / str(i)) for i in range(chunks)]
    inputs = steps.generate_inputs_from_keys(model, exposure, settings, key_chunks, work)

    steps.generate_losses(model, inputs, settings, work / "v1")

    chunk_dir = work / "v2-chunk"
    merged = steps.prepare_losses_dir(model, inputs, settings, chunk_dir)
    binaries = steps.generate_losses_chunk(model, inputs, merged, chunk_dir, 0, 1)
    # As distributed.aggregate does: a fresh run folder, the chunk's binaries in its work/.
    output_dir = work / "v2-output"
    steps.prepare_losses_dir(model, inputs, merged, output_dir)
    shutil.copytree(binaries, output_dir / "work", dirs_exist_ok=True)
    output = steps.generate_losses_output(model, inputs, merged, output_dir, 1)
    if not any(output.glob("*.csv")):
        raise RuntimeError(f"the warm-up analysis wrote no output in {output}")


def warm_up(
    spec: SyntheticModelSpec | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
    log: Callable[[str], None] | None = None,
) -> WarmupResult:
    """Build the model (default: :data:`WARMUP_SIZES`) in a temporary folder, run the analysis until
    the cache is stable, clean up."""
    if max_passes < 1:
        raise ValueError(f"max_passes must be >= 1, got {max_passes}")
    log = log or functools.partial(print, flush=True)
    prepare_environment()  # before numba's first import, below
    from oasis_ops.tools.synthetic import MODEL_ID, SUPPLIER_ID, SyntheticModelSpec, build_synthetic_model

    spec = spec or SyntheticModelSpec(**WARMUP_SIZES)
    started = time.monotonic()
    cache_dir = Path(os.environ["NUMBA_CACHE_DIR"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"Warming up oasislmf's numba kernels in {cache_dir}")
    initial = before = cache_state(cache_dir)
    passes: list[float] = []
    stable = False
    temp = Path(tempfile.mkdtemp(prefix="oasis-warmup-"))
    try:
        root = build_synthetic_model(temp / "model", spec)
        model = load_model(
            {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "version_id": "warmup", "path": str(root)}, temp
        )
        exposure = {"location": root / "exposure" / "location.csv", "account": root / "exposure" / "account.csv"}
        settings = temp / "analysis_settings.json"
        settings.write_text(json.dumps(warmup_settings(root), indent=2))
        while len(passes) < max_passes and not stable:
            pass_started = time.monotonic()
            work = temp / f"pass-{len(passes) + 1}"
            run_analysis(model, exposure, settings, work)
            shutil.rmtree(work)
            passes.append(time.monotonic() - pass_started)
            after = cache_state(cache_dir)
            changed = sorted(cache_changes(before, after))
            stable = not changed
            log(f"  pass {len(passes)}: {passes[-1]:.1f} s, {len(changed)} cache file(s) written")
            if 0 < len(changed) <= 20:
                log("".join(f"    {name}\n" for name in changed).rstrip("\n"))
            before = after
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    final = cache_state(cache_dir)
    result = WarmupResult(
        cache_dir=cache_dir,
        passes=tuple(passes),
        stable=stable,
        changed_files=len(cache_changes(initial, final)),
        index_files=sum(name.endswith(".nbi") for name in final),
        seconds=time.monotonic() - started,
    )
    log(
        f"Warm-up done in {result.seconds:.1f} s ({len(passes)} pass(es)): {result.changed_files} cache file(s) "
        f"written, {result.index_files} index files in {cache_dir}"
        + ("" if stable else "; the last pass still wrote to the cache (raise --max-passes)")
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ops.deploy.warmup", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-passes", type=int, default=DEFAULT_MAX_PASSES,
        help=f"analyses to run at most until one leaves the cache unchanged (default: {DEFAULT_MAX_PASSES})",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with 2 if the last pass still wrote to the cache"
    )
    args = parser.parse_args(argv)
    try:
        result = warm_up(max_passes=args.max_passes)
    except ValueError as exc:
        parser.error(str(exc))
    return 2 if args.strict and not result.stable else 0


if __name__ == "__main__":
    sys.exit(main())
