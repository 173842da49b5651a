"""Bad input fails the run's first step with a message naming the problem, before any heavy work,
publishing nothing and writing nothing outside the storage root."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from harness.matching import exactly
from harness.piwind import piwind_settings
from oasis_ops.context import TaskRun
from oasis_ops.errors import OasisInputError
from oasis_ops.execution import steps
from oasis_ops.execution.single_server import run_single_server
from oasis_ops.operators import OasisSingleServerOperator
from oasis_ops.params import RunRequest
from oasis_ops.storage import Storage

LOC = "exposure/SourceLocOEDPiWind10.csv"


@pytest.fixture(autouse=True)
def no_heavy_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("oasislmf was called although the input is bad")

    for step in ("lookup_keys", "generate_inputs_from_keys", "generate_files", "generate_losses"):
        monkeypatch.setattr(steps, step, forbidden)


def run(model, conf: dict, storage_root: Path) -> None:
    run_single_server(TaskRun(model, RunRequest.from_params(conf, "run"), Storage(str(storage_root)), "run"))


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def gul_settings(**changes: object) -> dict:
    """PiWind's ground-up loss settings with ``changes``."""
    return piwind_settings("GUL_analysis_settings.json") | changes


def write(root: Path, name: str, content: bytes) -> str:
    (root / name).write_bytes(content)
    return name


#: The reason each bad input fails with: exactly (``{root}`` is the storage root's URI), or, where
#: ods-tools words its part, our part exactly and ods-tools' finding about the file.
OUTSIDE = "is outside the storage root {root}; give a path relative to it"
CASES = {
    "missing file": (
        lambda root: {"location_file": "exposure/nope.csv"},
        "location_file: {root}/exposure/nope.csv does not exist in the storage root",
    ),
    "outside with ..": (lambda root: {"location_file": "../../etc/passwd"}, f"location_file: '../../etc/passwd' {OUTSIDE}"),
    "outside absolute": (lambda root: {"location_file": "/etc/passwd"}, f"location_file: '/etc/passwd' {OUTSIDE}"),
    "empty file": (lambda root: {"location_file": write(root, "empty.csv", b"")}, "location_file: {root}/empty.csv is empty"),
    "binary file": (
        lambda root: {"location_file": write(root, "bin.csv", b"PK\x03\x04\x00\x00\x01")},
        "location_file: {root}/bin.csv is a binary file, not CSV text",
    ),
    "fake parquet": (
        lambda root: {"location_file": write(root, "loc.parquet", b"LocNumber\n1\n")},
        "location_file: {root}/loc.parquet is not a parquet file (no PAR1 header)",
    ),
    "wrong extension": (
        lambda root: {"location_file": write(root, "loc.txt", b"LocNumber\n1\n")},
        "location_file: {root}/loc.txt must be an OED .csv or .parquet file",
    ),
    "folder": (lambda root: {"location_file": "exposure"}, "location_file: {root}/exposure is a folder, not a file"),
    "not OED": (
        lambda root: {"location_file": write(root, "cols.csv", b"a,b\n1,2\n")},
        re.compile(
            r"OED validation failed for location_file='cols\.csv':\n(.*\n)*"
            r"ClassOfBusiness\.prop:\n    PortNumber, AccNumber, LocNumber, CountryCode, LocPerilsCovered, LocCurrency missing(\n.*)*"
        ),
    ),
    "bad accounts": (
        lambda root: {"location_file": LOC, "accounts_file": write(root, "acc.csv", b"x,y\n1,2\n")},
        re.compile(
            rf"OED validation failed for location_file='{re.escape(LOC)}', accounts_file='acc\.csv':\n(.*\n)*"
            r"ClassOfBusiness\.prop:\n    PortNumber, AccNumber, AccCurrency, PolNumber, PolPerilsCovered missing(\n.*)*"
        ),
    ),
    "settings schema": (
        lambda root: {"location_file": LOC, "analysis_settings": gul_settings(number_of_samples="ten")},
        re.compile(
            r"analysis_settings: +JSON Validation error in 'analysis_settings\.json': \{ +"
            r"\"analysis_settings_schema number_of_samples\": \[ +\"'ten' is not of type 'integer'\" +\] \}"
        ),
    ),
    "unknown event set": (
        lambda root: {"location_file": LOC, "analysis_settings": gul_settings(model_settings={"event_set": "zz"})},
        "analysis_settings: model_settings.event_set 'zz' is not an event set of OasisLMF/PiWind/1; choose one of ['p']",
    ),
    "chunk count": (
        lambda root: {"location_file": LOC, "chunking": {"fixed_analysis_chunks": 0}},
        "chunking: fixed_analysis_chunks must be an integer >= 1, got 0",
    ),
    "run without inputs": (
        lambda root: {"action": "run", "analysis_id": "never_generated"},
        "analysis_id: no inputs were generated for 'never_generated' (expected {root}/analyses/never_generated/input); "
        "run action 'generate_inputs' or 'generate_and_run' first",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_first_with_a_clear_message(case, piwind_model, storage_root, tmp_path):
    make_conf, reason = CASES[case]
    conf = {"analysis_settings": piwind_settings("GUL_analysis_settings.json"), "analysis_id": "a1", **make_conf(storage_root)}
    outside_before = snapshot(tmp_path) - {str(Path("storage") / p) for p in snapshot(storage_root)}
    with pytest.raises(OasisInputError) as err:
        run(piwind_model, conf, storage_root)
    if isinstance(reason, re.Pattern):
        assert reason.fullmatch(str(err.value)), str(err.value)
    else:
        assert str(err.value) == reason.format(root=f"file://{storage_root}")
    assert not (storage_root / "analyses").exists(), "nothing may be published"
    assert not any((storage_root / ".work").iterdir()), "the work folder is cleaned up"
    outside_after = snapshot(tmp_path) - {str(Path("storage") / p) for p in snapshot(storage_root)}
    assert outside_after == outside_before, "nothing is written outside the storage root"


def test_operator_fails_without_retry_on_bad_input(piwind_model, storage_root, monkeypatch):
    monkeypatch.setenv("OASIS_STORAGE_ROOT", str(storage_root))
    operator = OasisSingleServerOperator(task_id="run_analysis", model=piwind_model)
    assert (operator.queue, operator.pool) == ("OasisLMF-PiWind-1", "OasisLMF-PiWind-1")
    # AirflowFailException: Airflow fails the task at once, without its retries.
    reason = "location_file: required for action 'generate_and_run' (give an OED location file)"
    with pytest.raises(AirflowFailException, match=exactly(reason)):
        operator.execute({"params": {"analysis_settings": {"gul_output": True}}, "run_id": "manual__1"})


def test_symlinked_exposure_leaving_the_root_is_refused(piwind_model, storage_root, tmp_path):
    (tmp_path / "private.csv").write_text("LocNumber\n1\n")
    os.symlink(tmp_path / "private.csv", storage_root / "exposure" / "sneaky.csv")
    conf = {"location_file": "exposure/sneaky.csv", "analysis_settings": piwind_settings("GUL_analysis_settings.json")}
    reason = f"location_file: 'exposure/sneaky.csv' links outside the storage root file://{storage_root}"
    with pytest.raises(OasisInputError, match=exactly(reason)):
        run(piwind_model, conf, storage_root)
