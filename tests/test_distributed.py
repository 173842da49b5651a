"""The v2 building blocks that decide identity with v1: chunk slicing, keys order, file layout."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from oasis_ops.context import TaskRun
from oasis_ops.execution.distributed import Chunk, RunFiles
from oasis_ops.params import RunRequest
from oasis_ops.storage import Storage


def test_chunks_cover_every_index_once_and_are_labelled():
    assert Chunk.all(3) == [{"index": 0, "count": 3}, {"index": 1, "count": 3}, {"index": 2, "count": 3}]
    assert Chunk(**Chunk.all(3)[2]).label == "3/3"


def test_run_files_live_in_the_storage_root_per_analysis_and_run(tmp_path, piwind_model):
    run_id = "manual__2026-01-01T00:00:00+00:00"
    request = RunRequest.from_params({"location_file": "a.csv", "analysis_id": "a1", "action": "generate_inputs"}, run_id)
    files = RunFiles.of(TaskRun(piwind_model, request, Storage(str(tmp_path)), run_id))
    base = tmp_path / ".intermediate" / "a1" / "manual__2026-01-01T00_00_00_00_00"
    assert files.base.path == str(base)
    assert files.exposure.path == str(base / "exposure")
    assert (files.keys(Chunk(3, 4)).path, files.losses_dir.path) == (str(base / "keys" / "3"), str(base / "losses" / "run"))
    first = Chunk(0, 4)
    assert (files.loss_work(first).path, files.loss_log(first).path) == (str(base / "losses" / "1.work"), str(base / "losses" / "1.log"))


def _keys(folder: Path, rows: list[tuple]) -> Path:
    folder.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["LocID", "PerilID", "CoverageTypeID", "AreaPerilID", "VulnerabilityID"])
    frame.to_csv(folder / "keys.csv", index=False)
    return folder


def test_collect_keys_orders_rows_the_same_however_the_lookup_was_split(tmp_path):
    from oasis_ops.execution.steps import collect_keys

    rows = [(10, "WTC", 1, 5, 7), (2, "WSS", 3, 1, 2), (2, "WSS", 1, 1, 1), (10, "WSS", 1, 5, 6), (3, "WTC", 1, 9, 9)]
    whole = collect_keys([_keys(tmp_path / "one", rows)], tmp_path / "whole")
    split = collect_keys([_keys(tmp_path / "a", rows[3:]), _keys(tmp_path / "b", rows[:3])], tmp_path / "split")
    assert (whole / "keys.csv").read_bytes() == (split / "keys.csv").read_bytes()
    ordered = pd.read_csv(whole / "keys.csv")
    # Numeric ids sort as numbers (2 < 3 < 10), not as text.
    assert list(zip(ordered.LocID, ordered.PerilID, ordered.CoverageTypeID, strict=True)) == [
        (2, "WSS", 1), (2, "WSS", 3), (3, "WTC", 1), (10, "WSS", 1), (10, "WTC", 1)
    ]
    assert not (whole / "keys-errors.csv").exists()  # no chunk had errors


def test_v1_pipelines_follow_the_cores_the_task_may_use_or_the_models_setting(piwind_model):
    """One per core of the process' CPU affinity (``taskset``), at most 8; a model's own
    ``kernel_num_processes`` wins."""
    import dataclasses
    import subprocess
    import sys

    from oasis_ops.execution.steps import V1_MAX_PIPELINES, v1_pipelines

    assert v1_pipelines(piwind_model) == min(len(os.sched_getaffinity(0)), V1_MAX_PIPELINES)
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c",
         "from harness.piwind import piwind_entry; from harness.registry import write_registry; import tempfile, pathlib;"
         "from oasis_ops.registry import load_registry; from oasis_ops.execution.steps import v1_pipelines;"
         "d = pathlib.Path(tempfile.mkdtemp()); (m,) = load_registry(write_registry(d / 'r.yaml', piwind_entry())).models;"
         "print(v1_pipelines(m))"],
        capture_output=True, text=True, check=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert pinned.stdout.strip().splitlines()[-1] == "1"
    configured = dataclasses.replace(piwind_model, oasislmf_config=dict(piwind_model.oasislmf_config) | {"kernel_num_processes": 3})
    assert v1_pipelines(configured) == 3


def test_chunks_and_output_parts_reuse_the_run_folder_prepared_once_and_equal_v1(tmp_path, piwind_model, piwind_root, monkeypatch):
    """``GenerateLossesDir`` (FM and GULMC structures, summary cross-references) runs once per run: the
    folder is shared without its model data links, chunks and output parts relink it and never prepare
    again; the output parts (one per perspective's summary set) each write only their own files, and
    together they equal v1's output byte for byte (PiWind, 10 locations, GUL+IL+RI)."""
    import shutil

    from oasis_ops.execution.environment import prepare_environment

    prepare_environment()
    from oasislmf.computation.generate.losses import GenerateLossesDir

    from harness.outputs import assert_same_files
    from oasis_ops.execution import steps

    exposure_dir = piwind_root / "exposure"
    exposure = {"location": exposure_dir / "SourceLocOEDPiWind10.csv", "account": exposure_dir / "SourceAccOEDPiWind.csv",
                "ri_info": exposure_dir / "SourceReinsInfoOEDPiWind.csv", "ri_scope": exposure_dir / "SourceReinsScopeOEDPiWind.csv"}
    settings = piwind_root / "analysis_settings" / "RI_analysis_settings.json"
    keys = steps.lookup_keys(piwind_model, exposure, 0, 1, tmp_path / "keys")
    inputs = steps.generate_inputs_from_keys(piwind_model, exposure, settings, [keys], tmp_path)
    v1 = steps.generate_losses(piwind_model, inputs, settings, tmp_path / "v1")

    prepared = tmp_path / "prepared"
    steps.prepare_losses_dir(piwind_model, inputs, settings, prepared)
    footprint = Path(piwind_model.oasislmf_config["model_data_dir"])
    steps.shareable_losses_dir(prepared)
    assert not (prepared / steps.MODEL_DATA_LINKS).exists()
    assert (piwind_model.root / footprint / "footprint.bin").is_file()  # the links went, the data stayed

    def prepared_again(*args, **kwargs):
        raise AssertionError("GenerateLossesDir ran again in a prepared run folder")

    monkeypatch.setattr(GenerateLossesDir, "run", prepared_again)
    chunks, binaries = 2, []
    for chunk in range(chunks):
        chunk_dir = steps.relink_losses_dir(piwind_model, shutil.copytree(prepared, tmp_path / f"chunk-{chunk}"))
        assert (chunk_dir / "static" / "footprint.bin").resolve() == (piwind_model.root / footprint / "footprint.bin").resolve()
        binaries.append(steps.generate_losses_chunk(piwind_model, chunk_dir, chunk, chunks))
    # Each output part in its own folder, as on separate workers; together they make v1's output folder.
    parts = steps.output_parts(prepared / "output" / "analysis_settings.json")
    assert [part.label for part in parts] == ["gul_S1", "il_S1", "ri_S1"]
    v2 = shutil.copytree(prepared / "output", tmp_path / "v2-output")
    for part in parts:
        part_dir = steps.relink_losses_dir(piwind_model, shutil.copytree(prepared, tmp_path / part.label))
        for folder in binaries:
            shutil.copytree(folder, part_dir / "work", dirs_exist_ok=True)
        written = steps.generate_losses_output(piwind_model, part_dir, chunks, part)
        assert {p.name.split("_")[0] for p in written.glob("*_S*_*") if "summary-info" not in p.name} == {part.runtype}
        shutil.copytree(written, v2, dirs_exist_ok=True)

    assert any(name.startswith("ri_") for name in assert_same_files(v1, v2))


def test_chunk_summary_files_are_renamed_so_that_name_order_is_chunk_order(tmp_path):
    from oasis_ops.execution import steps

    work = tmp_path / "work"
    (work / "gul_S1_summaryleccalc").mkdir(parents=True)
    (work / "kat").mkdir()
    for n in range(1, 13):
        for suffix in (".bin", ".idx"):
            (work / "gul_S1_summaryleccalc" / f"P{n}{suffix}").write_text(str(n))
        (work / "kat" / f"gul_S1_elt_sample_P{n}").write_text(str(n))
    steps.in_chunk_order(work, 12)
    bins = sorted((work / "gul_S1_summaryleccalc").glob("*.bin"))  # as lecpy and aalpy list them
    assert [p.read_text() for p in bins] == [str(n) for n in range(1, 13)]
    assert all(p.with_suffix(".idx").read_text() == p.read_text() for p in bins)
    assert sorted(p.name for p in (work / "kat").iterdir()) == sorted(f"gul_S1_elt_sample_P{n}" for n in range(1, 13))
