"""Bad input fails the run's first step with a message naming the problem, before any heavy work,
publishing nothing and writing nothing outside the storage root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from conftest import piwind_settings

from oasis_ops import steps
from oasis_ops.errors import OasisInputError
from oasis_ops.operators import OasisSingleServerOperator
from oasis_ops.params import RunRequest
from oasis_ops.storage import Storage
from oasis_ops.tasks import run_single_server

LOC = "exposure/SourceLocOEDPiWind10.csv"


@pytest.fixture(autouse=True)
def no_heavy_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("oasislmf was called although the input is bad")

    monkeypatch.setattr(steps, "generate_files", forbidden)
    monkeypatch.setattr(steps, "generate_losses", forbidden)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def write(root: Path, name: str, content: bytes) -> str:
    (root / name).write_bytes(content)
    return name


CASES = {
    "missing file": (lambda root: {"location_file": "exposure/nope.csv"}, "location_file: file:///{root}/exposure/nope.csv does not exist"),
    "outside with ..": (lambda root: {"location_file": "../../etc/passwd"}, "location_file: '../../etc/passwd' is outside the storage root"),
    "outside absolute": (lambda root: {"location_file": "/etc/passwd"}, "is outside the storage root"),
    "empty file": (lambda root: {"location_file": write(root, "empty.csv", b"")}, "location_file: file:///{root}/empty.csv is empty"),
    "binary file": (lambda root: {"location_file": write(root, "bin.csv", b"PK\x03\x04\x00\x00\x01")}, "is a binary file, not CSV text"),
    "fake parquet": (lambda root: {"location_file": write(root, "loc.parquet", b"LocNumber\n1\n")}, "is not a parquet file"),
    "wrong extension": (lambda root: {"location_file": write(root, "loc.txt", b"LocNumber\n1\n")}, "must be an OED .csv or .parquet file"),
    "folder": (lambda root: {"location_file": "exposure"}, "is a folder, not a file"),
    "not OED": (
        lambda root: {"location_file": write(root, "cols.csv", b"a,b\n1,2\n")},
        "OED validation failed for location_file='cols.csv'",
    ),
    "bad accounts": (
        lambda root: {"location_file": LOC, "accounts_file": write(root, "acc.csv", b"x,y\n1,2\n")},
        "accounts_file='acc.csv'",
    ),
    "settings schema": (
        lambda root: {"location_file": LOC, "analysis_settings": {**piwind_settings("GUL_analysis_settings.json"), "number_of_samples": "ten"}},
        "analysis_settings: ",
    ),
    "unknown event set": (
        lambda root: {"location_file": LOC, "analysis_settings": {**piwind_settings("GUL_analysis_settings.json"), "model_settings": {"event_set": "zz"}}},
        "model_settings.event_set 'zz' is not an event set of OasisLMF/PiWind/1",
    ),
    "chunk count": (lambda root: {"location_file": LOC, "chunking": {"fixed_analysis_chunks": 0}}, "chunking: fixed_analysis_chunks must be an integer >= 1, got 0"),
    "run without inputs": (
        lambda root: {"action": "run", "analysis_id": "never_generated"},
        "analysis_id: no inputs were generated for 'never_generated'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_first_with_a_clear_message(case, piwind_model, storage_root, tmp_path):
    make_conf, message = CASES[case]
    conf = {"analysis_settings": piwind_settings("GUL_analysis_settings.json"), "analysis_id": "a1", **make_conf(storage_root)}
    outside_before = snapshot(tmp_path) - {str(Path("storage") / p) for p in snapshot(storage_root)}
    storage = Storage(str(storage_root))
    with pytest.raises(OasisInputError) as err:
        run_single_server(piwind_model, RunRequest.from_params(conf, "run"), storage)
    assert message.format(root=str(storage_root).lstrip("/")) in str(err.value)
    assert not (storage_root / "analyses").exists(), "nothing may be published"
    assert not any((storage_root / ".work").iterdir()), "the work folder is cleaned up"
    outside_after = snapshot(tmp_path) - {str(Path("storage") / p) for p in snapshot(storage_root)}
    assert outside_after == outside_before, "nothing is written outside the storage root"


def test_operator_fails_without_retry_on_bad_input(piwind_model, storage_root, monkeypatch):
    monkeypatch.setenv("OASIS_STORAGE_ROOT", str(storage_root))
    operator = OasisSingleServerOperator(task_id="run_analysis", model=piwind_model)
    assert operator.queue == "OasisLMF-PiWind-1"
    with pytest.raises(AirflowFailException, match="location_file: required"):
        operator.execute({"params": {"analysis_settings": {"gul_output": True}}, "run_id": "manual__1"})


def test_symlinked_exposure_leaving_the_root_is_refused(piwind_model, storage_root, tmp_path):
    (tmp_path / "private.csv").write_text("LocNumber\n1\n")
    os.symlink(tmp_path / "private.csv", storage_root / "exposure" / "sneaky.csv")
    request = RunRequest.from_params(
        {"location_file": "exposure/sneaky.csv", "analysis_settings": piwind_settings("GUL_analysis_settings.json")}, "r"
    )
    with pytest.raises(OasisInputError, match="location_file: 'exposure/sneaky.csv' links outside the storage root"):
        run_single_server(piwind_model, request, Storage(str(storage_root)))
