"""Thin wrappers around oasislmf's computation steps, shared by the v1 and v2 DAGs.

Only tasks import this module (oasislmf pulls in numba and pandas), after
:func:`oasis_ops.execution.environment.prepare_environment`. The model's ``oasislmf.json`` gives the
step arguments; its relative paths are resolved against the model root, as oasislmf's CLI resolves
them against the config file's folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oasislmf.manager import OasisManager
from oasislmf.utils.inputs import update_config

from oasis_ops.registry import Model

log = logging.getLogger(__name__)
# Loss chunks ping the Oasis platform's progress socket, which is not there: an error per chunk.
logging.getLogger("oasislmf.utils.ping").setLevel(logging.CRITICAL)

KEYS = "keys.csv"
KEYS_ERRORS = "keys-errors.csv"
#: Keys row order (by name in oasislmf's "oasis" keys format); ties keep the chunk order.
KEY_ORDER = ("LocID", "PerilID", "CoverageTypeID")
#: Events go to the pipelines in contiguous blocks (no shuffle), so that every event is summed in
#: the same order whatever the number of pipelines: v1 (one per core) and v2 (one per chunk) then
#: give byte-identical outputs, including per-sample AEP in parquet. Overrides the model's setting.
IDENTICAL_LOSSES = {"kernel_event_shuffle": 0}

#: Most loss pipelines a v1 task runs when the model's ``oasislmf.json`` does not set
#: ``kernel_num_processes``: one per core the task may use, up to this. oasislmf's own default is one per
#: core of the machine, which is slower past 8 (on a 16-core Xeon, 10,000 locations × 4,000 events × 20
#: samples, GUL+IL: 4 pipelines 46.8 s, 8 39.4 s, 16 43.4 s) and ignores CPU affinity (``taskset``,
#: Kubernetes' static CPU manager), overloading a worker given fewer cores than the machine has.
V1_MAX_PIPELINES = 8

#: OED role (``ods_tools`` name) -> oasislmf argument.
EXPOSURE_ARGS = {
    "location": "oed_location_csv",
    "account": "oed_accounts_csv",
    "ri_info": "oed_info_csv",
    "ri_scope": "oed_scope_csv",
}


def _path_params() -> set[str]:
    return {p["name"] for p in OasisManager.run_model.get_params() if p.get("is_path")}


def model_kwargs(model: Model) -> dict[str, Any]:
    """The model's ``oasislmf.json`` as step arguments, relative paths made absolute."""
    config = update_config(dict(model.oasislmf_config))
    paths = _path_params()
    return {
        key: str(model.root / value) if key in paths and isinstance(value, str) and not os.path.isabs(value) else value
        for key, value in config.items()
    }


def exposure_kwargs(exposure: Mapping[str, Path]) -> dict[str, str]:
    return {EXPOSURE_ARGS[role]: str(path) for role, path in exposure.items()}


def _location_exposure(exposure: Mapping[str, Path]) -> Any:
    from oasislmf.utils.data import DEFAULT_ADDITIONAL_FIELDS, prepare_oed_exposure
    from ods_tools.oed import OedExposure

    oed = OedExposure(
        location=str(exposure["location"]),
        use_field=True,
        additional_fields=DEFAULT_ADDITIONAL_FIELDS,
        backend_dtype="pd_dtype",
    )
    prepare_oed_exposure(oed)  # numbers loc_id over the whole file, before any slicing
    return oed


def lookup_keys(model: Model, exposure: Mapping[str, Path], chunk: int, chunks: int, target: Path) -> Path:
    """Keys lookup for chunk ``chunk`` of ``chunks`` (``numpy.array_split`` of the location rows).

    Writes ``keys.csv`` and ``keys-errors.csv`` into ``target``. One chunk of one uses every core of
    this machine (the lookup's own multiprocessing); the row order is fixed later by :func:`collect_keys`.
    """
    import numpy as np

    oed = _location_exposure(exposure)
    if chunks > 1:
        oed.location.dataframe = np.array_split(oed.location.dataframe, chunks)[chunk]
    target.mkdir(parents=True, exist_ok=True)
    OasisManager().generate_keys(
        **model_kwargs(model)
        | {
            "oed_location_csv": str(exposure["location"]),
            "exposure_data": oed,
            "keys_data_path": str(target / KEYS),
            "keys_errors_path": str(target / KEYS_ERRORS),
            "keys_format": "oasis",
            "lookup_multiprocessing": chunks == 1,
        }
    )
    return target


def collect_keys(chunk_dirs: Sequence[Path], target: Path) -> Path:
    """Concatenate the chunks' keys in chunk order, then sort them by location, peril and coverage.

    Item ids follow the keys rows, so the order must not depend on how the lookup was split or on
    which of its processes finished first: the stable sort makes v1 and any v2 chunking agree.
    """
    import pandas as pd

    target.mkdir(parents=True, exist_ok=True)
    for name in (KEYS, KEYS_ERRORS):
        frames = [
            pd.read_csv(d / name, dtype=str, keep_default_na=False)
            for d in chunk_dirs
            if (d / name).is_file() and (d / name).stat().st_size
        ]
        if not frames:
            continue
        keys = pd.concat(frames, ignore_index=True)
        order = [c for c in KEY_ORDER if c in keys.columns]
        numeric = {c: pd.to_numeric(keys[c]) for c in order if c != "PerilID"}
        keys = keys.assign(**{f"_{c}": v for c, v in numeric.items()})
        keys = keys.sort_values([f"_{c}" if c in numeric else c for c in order], kind="stable")
        keys.drop(columns=[f"_{c}" for c in numeric]).to_csv(target / name, index=False)
    return target


def generate_inputs_from_keys(
    model: Model, exposure: Mapping[str, Path], settings: Path | None, key_chunks: Sequence[Path], work: Path
) -> Path:
    """File preparation from the keys of every lookup chunk: collected in a fixed order
    (:func:`collect_keys`), then oasislmf's GenerateFiles; returns ``work/input``."""
    keys = collect_keys(key_chunks, work / "keys")
    return generate_files(model, exposure, settings, keys, work / "input")


def generate_files(
    model: Model,
    exposure: Mapping[str, Path],
    analysis_settings: Path | None,
    keys: Path,
    target: Path,
) -> Path:
    """File preparation from looked-up ``keys`` (a :func:`collect_keys` folder): Oasis input files in ``target``."""
    kwargs = model_kwargs(model) | exposure_kwargs(exposure)
    if analysis_settings is not None:
        kwargs["analysis_settings_json"] = str(analysis_settings)
    if (keys / KEYS_ERRORS).is_file():
        kwargs["keys_errors_path"] = str(keys / KEYS_ERRORS)
    kwargs |= {"oasis_files_dir": str(target), "keys_data_path": str(keys / KEYS)}
    # The exposure was checked already, before any heavy work (validation.check_oed, in v1's task and v2's
    # prepare): oasislmf's own check would read and validate it a second time (2 s on 12,598 locations).
    kwargs["check_oed"] = False
    OasisManager().generate_files(**kwargs)
    return target


def v1_pipelines(model: Model) -> int:
    """Loss pipelines of a v1 run: the model's ``kernel_num_processes`` if it sets one, else one per core
    this process may run on, at most :data:`V1_MAX_PIPELINES`."""
    configured = model_kwargs(model).get("kernel_num_processes")
    if isinstance(configured, int) and configured > 0:
        return configured
    return max(1, min(len(os.sched_getaffinity(0)), V1_MAX_PIPELINES))


def generate_losses(model: Model, inputs: Path, analysis_settings: Path, run_dir: Path) -> Path:
    """v1 losses generation on this machine, :func:`v1_pipelines` pipelines; returns the output folder."""
    pipelines = v1_pipelines(model)
    log.info("v1 losses: %d pipeline(s)", pipelines)
    OasisManager().generate_losses(**_loss_kwargs(model, inputs, analysis_settings, run_dir) | {"kernel_num_processes": pipelines})
    return run_dir / "output"


def prepare_losses_dir(model: Model, inputs: Path, analysis_settings: Path, run_dir: Path) -> Path:
    """The run folder, once (``GenerateLossesDir``); returns the merged ``output/analysis_settings.json``
    (the model's default sample count is merged in here, and every chunk must use it)."""
    OasisManager().generate_losses_dir(**_loss_kwargs(model, inputs, analysis_settings, run_dir))
    return run_dir / "output" / "analysis_settings.json"


#: The run folder's links to the model's data (``static/``): valid on the machine that made them only, so
#: a run folder is shared without them and they are made again where it is used (:func:`relink_losses_dir`).
MODEL_DATA_LINKS = "static"


def shareable_losses_dir(run_dir: Path) -> Path:
    """A prepared run folder ready to publish: its model data links removed (the data stays)."""
    shutil.rmtree(run_dir / MODEL_DATA_LINKS, ignore_errors=True)
    return run_dir


def relink_losses_dir(model: Model, run_dir: Path) -> Path:
    """A fetched :func:`shareable_losses_dir` made runnable here: oasislmf's ``prepare_run_directory``
    links the model's data again (and makes the empty folders an object store does not keep).

    Loss chunks and the output step then skip ``GenerateLossesDir`` (its settings are stored in the
    folder's ``output/``): its FM and GULMC structures are built once per run, not once per task.
    """
    from oasislmf.execution.bin import prepare_run_directory

    kwargs = model_kwargs(model)
    inputs = run_dir / "input"
    prepare_run_directory(
        str(run_dir),
        str(inputs),
        kwargs["model_data_dir"],
        str(inputs / "analysis_settings.json"),
        user_data_dir=kwargs.get("user_data_dir"),
        copy_model_data=kwargs.get("copy_model_data", False),
        model_storage_config_fp=kwargs.get("model_storage_json"),
    )
    return run_dir


def events_in_run_dir(run_dir: Path) -> int:
    """Events in a prepared run folder's event set (``input/events.bin`` holds one int32 per event)."""
    return (run_dir / "input" / "events.bin").stat().st_size // 4


def ground_up_samples(run_dir: Path, sample_events: int = 200) -> int | None:
    """Estimated ground-up samples of a prepared run folder (its model data linked): for each event, the
    items whose areaperil the event's footprint hits, times the merged settings' samples; the work of its
    loss pipelines (:attr:`~oasis_ops.chunking.ChunkingConfig.min_chunk_ground_up_samples`). Counted on up
    to ``sample_events`` events evenly spaced over the event set, extrapolated to all of them. None, the
    reason logged, when oasislmf's footprint loader finds no footprint it can read."""
    import numpy as np
    from oasis_data_manager.filestore.config import get_storage_from_config_path
    from oasislmf.pytools.common.data import items_dtype
    from oasislmf.pytools.getmodel.footprint import Footprint, OasisFootPrintError

    events = np.fromfile(run_dir / "input" / "events.bin", dtype=np.int32)  # as events_in_run_dir counts them
    if not len(events):
        return 0
    items = np.fromfile(run_dir / "input" / "items.bin", dtype=items_dtype)
    areaperils, items_in = np.unique(items["areaperil_id"], return_counts=True)
    samples = int(json.loads((run_dir / "output" / "analysis_settings.json").read_text()).get("number_of_samples", 0))
    picked = events[np.linspace(0, len(events) - 1, min(len(events), sample_events), dtype=np.int64)]
    storage = get_storage_from_config_path(str(run_dir / "model_storage.json"), str(run_dir / MODEL_DATA_LINKS))
    try:
        footprint = Footprint.load(storage)
    except OasisFootPrintError as err:
        log.info("No estimate of the ground-up samples: %s (in %s)", err, run_dir / MODEL_DATA_LINKS)
        return None
    with footprint:
        hit = 0
        for event in picked:
            rows = footprint.get_event(int(event))
            if rows is not None:
                hit += int(items_in[np.isin(areaperils, rows["areaperil_id"])].sum())
    return hit * len(events) * samples // len(picked)


def generate_losses_chunk(model: Model, run_dir: Path, chunk: int, chunks: int) -> Path:
    """Loss chunk ``chunk`` (0-based) of ``chunks`` in a prepared run folder (:func:`relink_losses_dir`):
    one pipeline over its event block; returns its ``<n>.work/`` folder of summary binaries."""
    partition = {"process_number": chunk + 1, "max_process_id": chunks, "kernel_num_processes": chunks}
    merged = run_dir / "output" / "analysis_settings.json"
    OasisManager().generate_losses_partial(**_loss_kwargs(model, run_dir / "input", merged, run_dir) | partition)
    return run_dir / f"{chunk + 1}.work"


#: oasislmf's perspectives (run types), each with its ``<runtype>_output`` switch and ``<runtype>_summaries``.
RUNTYPES = ("gul", "il", "ri", "rl")


@dataclass(frozen=True)
class OutputPart:
    """One perspective's summary set: what oasislmf's output step computes for it (its ELT/PLT files
    concatenated from the chunks, its ALT/EPT from its own work folders) depends on nothing else, so the
    parts run as separate tasks and their files together equal one output step's, byte for byte."""

    runtype: str
    summary_id: int

    @property
    def label(self) -> str:
        """As oasislmf names the part's files: ``il_S1``."""
        return f"{self.runtype}_S{self.summary_id}"

    def settings(self, merged: Mapping[str, Any]) -> dict[str, Any]:
        """The merged settings with every other perspective and summary set switched off."""
        settings = dict(merged)
        for runtype in RUNTYPES:
            if runtype != self.runtype:
                settings[f"{runtype}_output"], settings[f"{runtype}_summaries"] = False, []
        settings[f"{self.runtype}_summaries"] = [s for s in merged[f"{self.runtype}_summaries"] if s.get("id") == self.summary_id]
        return settings


def output_parts(merged_settings: Path) -> list[OutputPart]:
    """The output parts of a run whose merged settings (a prepared run folder's
    ``output/analysis_settings.json``) are ``merged_settings``: one per summary set of each perspective
    it outputs."""
    merged = json.loads(merged_settings.read_text())
    return [
        OutputPart(runtype, summary["id"])
        for runtype in RUNTYPES
        if merged.get(f"{runtype}_output")
        for summary in merged.get(f"{runtype}_summaries") or []
        if "id" in summary
    ]


def in_chunk_order(work: Path, chunks: int) -> None:
    """Name the chunks' summary files (``work/<summary>/P<chunk>.bin`` and ``.idx``) so that name order is
    chunk order: ``P01`` … ``P12``.

    lecpy and aalpy add the files' losses in float32 in name order (``sorted(glob("*.bin"))``), which
    puts ``P10`` before ``P2``: from 10 chunks on, the events would be summed in another order than v1's
    pipelines (at most :data:`V1_MAX_PIPELINES`, so always in chunk order) sum them, and the EPTs would
    differ from v1's in their last bit."""
    width = len(str(chunks))
    for path in work.glob("*/P*"):
        number = path.stem[1:]
        if path.suffix in (".bin", ".idx") and number.isdigit() and len(number) < width:
            path.rename(path.with_name(f"P{int(number):0{width}d}{path.suffix}"))


def generate_losses_output(model: Model, run_dir: Path, chunks: int, part: OutputPart) -> Path:
    """``part``'s ELT/PLT/ALT/EPT files from the chunks' binaries, merged into the prepared ``run_dir/work/``;
    returns the output folder (which also holds the files ``GenerateLossesDir`` put there)."""
    in_chunk_order(run_dir / "work", chunks)
    merged = run_dir / "output" / "analysis_settings.json"
    settings = run_dir / f"{part.label}_analysis_settings.json"
    settings.write_text(json.dumps(part.settings(json.loads(merged.read_text())), indent=4))
    partitions = {"max_process_id": chunks, "kernel_num_processes": chunks}
    OasisManager().generate_losses_output(**_loss_kwargs(model, run_dir / "input", settings, run_dir) | partitions)
    return run_dir / "output"


def _loss_kwargs(model: Model, inputs: Path, analysis_settings: Path, run_dir: Path) -> dict[str, Any]:
    return model_kwargs(model) | {
        "oasis_files_dir": str(inputs),
        "analysis_settings_json": str(analysis_settings),
        "model_run_dir": str(run_dir),
    } | IDENTICAL_LOSSES
