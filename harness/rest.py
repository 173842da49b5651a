"""One client of Airflow's REST API (``/api/v2``) for every stack the harness starts: runs are
triggered and watched as API clients and the UI do, so tests see what users see.

A JWT from ``POST /auth/token`` authenticates each call (fetched once, again after a 401).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from harness.polling import poll_until

#: DAG run states after which nothing more happens to the run.
FINISHED = ("success", "failed")
#: Task instances asked for per page (the api-server answers at most its ``maximum_page_limit`` of them).
PAGE = 2000


class RestError(Exception):
    """The API answered with an HTTP error; ``status`` is its code, the message has its body."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:2000]}")
        self.status = status


class RestClient:
    """Airflow's REST API at ``url`` as user ``username`` of the simple auth manager."""

    def __init__(self, url: str, password: str, username: str = "admin") -> None:
        self.url, self.username, self.password = url.rstrip("/"), username, password
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            body = {"username": self.username, "password": self.password}
            self._token = self.request("POST", "/auth/token", body, authenticated=False)["access_token"]
        return self._token

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *, authenticated: bool = True) -> Any:
        """The decoded JSON answer; :class:`RestError` for an HTTP error status."""
        headers = {"Content-Type": "application/json"}
        if authenticated:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and authenticated and self._token is not None:
                self._token = None  # expired: one more try with a fresh token
                return self.request(method, path, body)
            raise RestError(exc.code, method, path, exc.read().decode(errors="replace")) from None

    def is_up(self) -> bool:
        """The API server answers its health check (no token needed)."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def has_dags(self, dag_ids: Iterable[str]) -> bool:
        """Every one of ``dag_ids`` is parsed (a DAG not parsed yet answers 404)."""
        try:
            return all(self.request("GET", f"/api/v2/dags/{dag_id}")["dag_id"] == dag_id for dag_id in dag_ids)
        except RestError as exc:
            if exc.status == 404:
                return False
            raise

    # --- DAG runs ---

    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any]) -> dict[str, Any]:
        """Create a run now (no logical date), as the UI's trigger form does; Airflow validates ``conf``."""
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf)}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}")["state"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 900, interval: float = 3) -> str:
        """The run's final state (``success`` or ``failed``); :class:`TimeoutError` past ``timeout`` seconds."""
        state = ""

        def finished() -> str | None:
            nonlocal state
            state = self.run_state(dag_id, run_id)
            return state if state in FINISHED else None

        return poll_until(finished, timeout, lambda: f"{dag_id} {run_id} is still {state}", interval)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    # --- task instances ---

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones one per map index), as the API lists them, page by
        page (the api-server caps a page at its ``maximum_page_limit``, 100 by default)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances?limit={PAGE}"
        page = self.request("GET", path)
        instances, total = list(page["task_instances"]), page["total_entries"]
        while page["task_instances"] and len(instances) < total:
            page = self.request("GET", f"{path}&offset={len(instances)}")
            instances += page["task_instances"]
        return instances

    def wait_for_task(
        self, dag_id: str, run_id: str, state: str, task_id: str | None = None, timeout: float = 600
    ) -> list[dict[str, Any]]:
        """The run's task instances (of ``task_id``, or any) in ``state``, once there is at least one."""

        def found() -> list[dict[str, Any]]:
            return [
                ti for ti in self.task_instances(dag_id, run_id)
                if ti["state"] == state and task_id in (None, ti["task_id"])
            ]

        return poll_until(found, timeout, f"no task {task_id or ''} of {dag_id} {run_id} reached {state}", 0.5)

    # --- the rest ---

    def pools(self) -> dict[str, int]:
        """Pool name -> slots."""
        return {pool["name"]: pool["slots"] for pool in self.request("GET", "/api/v2/pools?limit=1000")["pools"]}

    def set_pool_slots(self, pool: str, slots: int) -> None:
        """Resize a pool (Airflow's PATCH wants the whole pool and an update mask)."""
        self.request("PATCH", f"/api/v2/pools/{urllib.parse.quote(pool)}?update_mask=slots", {"pool": pool, "slots": slots, "include_deferred": False})

    def assets(self, uri: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/assets?uri_pattern={urllib.parse.quote(uri)}")["assets"]

    def create_asset_event(self, asset_id: int) -> dict[str, Any]:
        """What a portfolio upload (or a producer task with the asset as an outlet) records."""
        return self.request("POST", "/api/v2/assets/events", {"asset_id": asset_id})

    def clear_task_instances(self, dag_id: str, run_id: str, task: tuple[str, int], include_downstream: bool = True) -> Any:
        """Clear one (mapped) task instance of a run, as the UI's Clear button does."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [list(task)],
            "include_downstream": include_downstream,
            "only_failed": False,
        }
        return self.request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")
