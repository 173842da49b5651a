"""Compile oasislmf's numba kernels into ``NUMBA_CACHE_DIR`` before the first analysis needs them.

``python -m oasis_ops.deploy.warmup`` builds a tiny synthetic model in a temporary folder and runs a full
analysis of it through :mod:`oasis_ops.execution.steps`, the code the tasks run: the keys lookup (in two v2
chunks), the chunks' keys collected, the input files, then v2's run folder, one loss chunk and the output
step, then v1 losses (one pipeline per core). Every kernel those paths use is compiled and cached on the
way. (oasislmf's own ``oasislmf warmup`` runs each pytool on bundled test files rather than an analysis
through these steps, and misses some: the keys lookup's, gulmc's correlated sampling.)

The model is made to look like the models users run (PiWind's kind): its keys lookup finds areaperils by
geometry (an R-tree of the areaperil cells, oasislmf's ``rtree`` step, as PiWind's lookup does) and its
portfolio carries a surplus-share reinsurance treaty at location level, so the analysis runs GUL, IL and
RI, asking for every ORD output in some summary and in the combinations the output tools compile apart
(see :data:`QUANTILE_ONLY`). The temporary folder is removed afterwards; only the cache stays.

Not covered: lookup steps that compile kernels of their own from a model's own parameters (oasislmf's
``fixed_size_geo_grid`` family builds a numba function per grid, which cannot be cached ahead).

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
import math
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

#: Small: the kernels' signatures do not depend on sizes, and a warm pass then costs little more than the
#: pipelines' process start-ups. But numba compiles a function when it is first called, and some are
#: called only when the data reach them: a year set as long as real models' (1,000 periods, PiWind's)
#: puts the return periods of the EPT and PSEPT outputs inside it, and enough events give every summary
#: losses. And the sample count: eltpy's reader holds the samples of an event in a fixed-size record, so
#: each count compiles its own overload; 10 is the usual one (PiWind's, the Oasis examples').
WARMUP_SIZES = dict(
    locations=8, events=20, areaperils=4, vulnerabilities=4, intensity_bins=5, damage_bins=5,
    samples=10, periods=1000, locations_per_account=4,
)
#: ORD outputs the synthetic model's settings do not ask for, added so that their kernels compile too
#: (quantile outputs use oasislmf's default quantiles). CSV only: pyarrow writes parquet, no kernel.
EXTRA_ORD_OUTPUTS = (
    "elt_quantile", "elt_moment", "plt_quantile", "alt_meanonly", "alct_convergence",
    "ept_per_sample_mean_aep", "ept_per_sample_mean_oep", "psept_aep", "psept_oep",
)
#: The output tools compile one overload per combination of the outputs they compute (an output not asked
#: for is an empty array of another layout), so the summaries ask for different sets: GUL summary 1 every
#: output, GUL summary 2 the quantile ones only, IL the synthetic model's own (sample ELT/PLT, ALT, EPT:
#: the usual choice, PiWind's), RI sample and moment ones.
QUANTILE_ONLY = {"elt_quantile": True, "plt_quantile": True, "alt_period": True, "psept_aep": True}
SAMPLE_AND_MOMENT = {"elt_sample": True, "elt_moment": True, "plt_moment": True, "alt_meanonly": True, "ept_mean_sample_aep": True}
DEFAULT_MAX_PASSES = 3
#: The treaty added to the portfolio: a surplus share on every location (PiWind's kind of treaty).
TREATY = {
    "ReinsNumber": 1, "ReinsLayerNumber": 1, "ReinsName": "warm-up SS", "ReinsPeril": "WTC",
    "ReinsInceptionDate": "2018-01-01", "ReinsExpiryDate": "2018-12-31", "CededPercent": 1, "RiskLimit": 0,
    "RiskAttachment": 0, "OccLimit": 0, "OccAttachment": 0, "PlacedPercent": 1, "ReinsCurrency": "USD",
    "InuringPriority": 1, "ReinsType": "SS", "RiskLevel": "LOC", "UseReinsDates": "N",
}
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
    """The synthetic model's analysis settings with RI, and the output sets of :data:`QUANTILE_ONLY`'s comment."""
    settings = json.loads((model_root / "analysis_settings.json").read_text())
    (gul,) = settings["gul_summaries"]
    gul.setdefault("ord_output", {}).update(dict.fromkeys(EXTRA_ORD_OUTPUTS, True))
    settings["gul_summaries"].append({"id": 2, "ord_output": QUANTILE_ONLY})
    settings["ri_output"] = True
    settings["ri_summaries"] = [{"id": 1, "ord_output": SAMPLE_AND_MOMENT}]
    return settings


def use_rtree_lookup(model_root: Path) -> None:
    """The model's areaperil step by geometry: the grid cells the synthetic locations sit in, as polygons
    in a GeoParquet file, found by oasislmf's ``rtree`` step (on latitude and longitude) instead of the
    merge on postal codes."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    from oasis_ops.tools.synthetic import GRID_CELL, GRID_ORIGIN

    keys_data = model_root / "keys_data"
    areaperils = pd.read_csv(keys_data / "areaperil_dict.csv")["AREA_PERIL_ID"].to_numpy()
    columns = math.ceil(math.sqrt(int(areaperils.max())))
    cells = []
    for areaperil in areaperils:
        row, column = divmod(int(areaperil) - 1, columns)
        south, west = GRID_ORIGIN[0] + row * GRID_CELL, GRID_ORIGIN[1] + column * GRID_CELL
        cells.append(box(west, south, west + GRID_CELL, south + GRID_CELL))
    gpd.GeoDataFrame({"area_peril_id": areaperils}, geometry=cells, crs="EPSG:4326").to_parquet(keys_data / "areaperil_geo.parquet")
    config_path = keys_data / "lookup_config.json"
    config = json.loads(config_path.read_text())
    config["step_definition"]["areaperil"] = {
        "type": "rtree",
        "columns": ["latitude", "longitude"],
        "parameters": {"file_path": "%%KEYS_DATA_PATH%%/areaperil_geo.parquet", "file_type": "parquet", "id_columns": ["area_peril_id"]},
    }
    config_path.write_text(json.dumps(config, indent=2))


def add_reinsurance(model_root: Path) -> dict[str, Path]:
    """OED reinsurance files for the model's portfolio (:data:`TREATY`, ceding 10–90 % of each location);
    returns them as exposure files (``ri_info``, ``ri_scope``)."""
    import pandas as pd

    exposure = model_root / "exposure"
    locations = pd.read_csv(exposure / "location.csv")
    info, scope = exposure / "ri_info.csv", exposure / "ri_scope.csv"
    pd.DataFrame([TREATY]).to_csv(info, index=False)
    pd.DataFrame({
        "ReinsNumber": TREATY["ReinsNumber"],
        "PortNumber": locations["PortNumber"],
        "AccNumber": locations["AccNumber"],
        "LocNumber": locations["LocNumber"],
        "CededPercent": [0.1 + 0.8 * i / max(len(locations) - 1, 1) for i in range(len(locations))],
    }).to_csv(scope, index=False)
    return {"ri_info": info, "ri_scope": scope}


def run_analysis(model: Model, exposure: dict[str, Path], settings: Path, work: Path) -> None:
    """One analysis through the tasks' own steps: the v2 lookup and input files, v2 losses, v1 losses.
    v2's single pipeline first: each kernel is compiled by one process before v1's concurrent pipelines
    would each compile it at once."""
    from oasis_ops.execution import steps

    chunks = 2
    key_chunks = [steps.lookup_keys(model, exposure, i, chunks, work / "lookup" / str(i)) for i in range(chunks)]
    inputs = steps.generate_inputs_from_keys(model, exposure, settings, key_chunks, work)

    # As distributed.py does: the run folder prepared once, shared without its model data links, then a
    # chunk and the output step each in their own copy of it.
    prepared = work / "v2-prepared"
    steps.prepare_losses_dir(model, inputs, settings, prepared)
    steps.shareable_losses_dir(prepared)
    chunk_dir = steps.relink_losses_dir(model, shutil.copytree(prepared, work / "v2-chunk"))
    binaries = steps.generate_losses_chunk(model, chunk_dir, 0, 1)
    for part in steps.output_parts(prepared / "output" / "analysis_settings.json"):
        output_dir = steps.relink_losses_dir(model, shutil.copytree(prepared, work / f"v2-{part.label}"))
        shutil.copytree(binaries, output_dir / "work", dirs_exist_ok=True)
        output = steps.generate_losses_output(model, output_dir, 1, part)
        if not any(output.glob(f"{part.label}_*.csv")):
            raise RuntimeError(f"the warm-up analysis wrote no {part.label} output in {output}")

    steps.generate_losses(model, inputs, settings, work / "v1")


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
        use_rtree_lookup(root)
        model = load_model(
            {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "version_id": "warmup", "path": str(root)}, temp
        )
        exposure = {
            "location": root / "exposure" / "location.csv",
            "account": root / "exposure" / "account.csv",
            **add_reinsurance(root),
        }
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
