"""Oasis Platform clients of a stack's ``/oasis`` API: oasislmf's own client (``oasislmf api ...``, a
subprocess, the judge of compatibility) and plain HTTP for what the client has no command for."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import requests

from harness.airflow_home import BIN, clean_environ, output_tail
from harness.polling import poll_until

#: Run parameter of each exposure file -> the client's flag and the API's portfolio resource.
FLAGS = {"location_file": "-x", "accounts_file": "-y", "ri_info_file": "-i", "ri_scope_file": "-s"}
RESOURCES = {
    "location_file": "location_file",
    "accounts_file": "accounts_file",
    "ri_info_file": "reinsurance_info_file",
    "ri_scope_file": "reinsurance_scope_file",
}
#: Longest one ``oasislmf api run`` may take (PiWind's 10 locations take one to three minutes).
CLIENT_TIMEOUT = 1200
#: Longest an analysis may take to reach a final status when a test waits for it without the client.
RUN_TIMEOUT = 900
FINAL = frozenset({"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED", "READY", "INPUTS_GENERATION_ERROR", "INPUTS_GENERATION_CANCELLED"})
_STAMPS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*(File uploaded|Analysis Run: Complete)", re.M)


class OasisStack(Protocol):
    """What the clients need of a stack: its ``--server-url`` and its storage root."""

    @property
    def oasis_url(self) -> str: ...

    @property
    def storage(self) -> Path: ...


class Oasis:
    """The Oasis API as oasislmf's client calls it: JSON, and a Bearer token or (anonymous) an empty
    ``Authorization`` header."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token

    @classmethod
    def login(cls, url: str, username: str, password: str) -> Oasis:
        """Logged in through the API's own ``access_token/``, as the client does."""
        answer = requests.post(f"{url}/access_token/", json={"username": username, "password": password}, timeout=60)
        assert answer.status_code == 200, answer.text
        return cls(url, answer.json()["access_token"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"accept": "application/json", "authorization": f"Bearer {self.token}" if self.token else ""}
        return requests.request(method, f"{self.url}/{path}", headers=headers, timeout=60, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a call that must succeed."""
        response = self.call(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json() if response.content else None

    def status(self, version: str, aid: int) -> str:
        return str(self.ok("GET", f"{version}/analyses/{aid}/")["status"])

    def model_id(self, supplier: str, model: str, version: str) -> int:
        """A model's id, as ``GET v2/models/`` lists it."""
        (found,) = [m for m in self.ok("GET", "v2/models/") if (m["supplier_id"], m["model_id"], m["version_id"]) == (supplier, model, version)]
        return int(found["id"])

    def wait_status(self, version: str, aid: int, wanted: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The analysis once its status is ``wanted``; fails at once on another final status."""
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.ok("GET", f"{version}/analyses/{aid}/"))
            assert seen["status"] == wanted or seen["status"] not in FINAL, f"analysis {aid} ended {seen['status']}, not {wanted}"
            return seen["status"] == wanted

        poll_until(reached, timeout, lambda: f"analysis {aid} is still {seen.get('status')}, not {wanted}")
        return seen


def login_file(folder: Path, username: str, password: str) -> Path:
    """The client's ``--server-login-json``."""
    path = folder / "login.json"
    path.write_text(json.dumps({"username": username, "password": password}))
    return path


def client_command(stack: OasisStack, login: Path, command: str, *args: str) -> list[str]:
    """``oasislmf api <command> --server-url ... --server-login-json ... <args>``."""
    return [str(BIN / "oasislmf"), "api", command, "--server-url", stack.oasis_url, "--server-login-json", str(login), *args]


def client_env() -> dict[str, str]:
    """The client runs as a user's shell would: no Airflow home of ours."""
    return {k: v for k, v in clean_environ().items() if k != "AIRFLOW_HOME"}


def oasislmf(stack: OasisStack, login: Path, command: str, *args: str, cwd: Path, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """``oasislmf api <command> <args>`` against the stack."""
    return subprocess.run(client_command(stack, login, command, *args), cwd=cwd, env=client_env(), capture_output=True, text=True, timeout=timeout)


def exposure_args(stack: OasisStack, files: Mapping[str, str | Path]) -> list[str]:
    """The client's exposure flags for ``files`` (run parameter -> path in the storage root, or a file)."""
    return [arg for param, path in files.items() for arg in (FLAGS[param], str(stack.storage / path))]


@dataclass(frozen=True)
class ClientRun:
    """One ``oasislmf api run``: its analysis, its extracted ``output/``, how long it took."""

    analysis_id: int
    output: Path
    seconds: float
    #: From the first upload to the client seeing RUN_COMPLETED, by the client's own log.
    upload_to_completed: float


def api_run(
    stack: OasisStack, login: Path, base: Path, version: str, model_id: int, files: Mapping[str, str | Path], settings: Path, *extra: str
) -> ClientRun:
    """``oasislmf api run`` end to end; its downloaded ``analysis_<id>_output.tar.gz`` extracted."""
    download = base / "download"
    download.mkdir(parents=True)
    started = time.monotonic()
    result = oasislmf(
        stack, login, "run", "--server-version", version, "--model-id", str(model_id), *exposure_args(stack, files),
        "-a", str(settings), "-o", str(download), *extra, cwd=base,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, output_tail(result)
    (archive,) = download.glob("analysis_*_output.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(base / "extracted", filter="data")
    stamps = {kind: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp, kind in reversed(_STAMPS.findall(result.stderr + result.stdout))}
    elapsed = (stamps["Analysis Run: Complete"] - stamps["File uploaded"]).total_seconds()
    print(f"\noasislmf api run {version} {' '.join(extra)}: {seconds:.0f} s in all, {elapsed:.0f} s from upload to RUN_COMPLETED")
    return ClientRun(int(archive.name.split("_")[1]), base / "extracted" / "output", seconds, elapsed)
