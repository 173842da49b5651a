"""OasisPlatform's REST API on Airflow's api-server, under ``/oasis``: oasislmf's own client (``oasislmf
api run --server-url http://<host>:<port>/oasis``), OasisPlatform scripts and OasisUI work unchanged.

``v1/`` actions run a model's v1 DAG, ``v2/`` actions its v2 DAG. Every route but ``healthcheck/``,
``server_info/`` and the token routes needs a token Airflow's auth manager accepts (Bearer header, or
the UI's cookie); authorization follows the auth manager's permissions on the model's DAGs: read for
GET, trigger for runs, edit for uploads, settings, cancel and delete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from oasis_ops.api import files
from oasis_ops.api.records import AnalysisRecord, ModelRecord, PortfolioRecord, records
from oasis_ops.api.status import CAN_GENERATE, CAN_RUN, GENERATING, RUNNING, AnalysisStatus, RunView, view
from oasis_ops.config import OasisConfig
from oasis_ops.constants import Mode, TaskKind
from oasis_ops.errors import OasisInputError
from oasis_ops.params import GENERATE_AND_RUN, GENERATE_INPUTS, RUN
from oasis_ops.registry import Model, load_registry
from oasis_ops.storage import Storage

API_VERSION = "2.5.6"
#: What ``access_token/`` answers to a credential the auth manager refuses (OasisPlatform's words).
BAD_CREDENTIALS = "No active account found with the given credentials"


class Forbidden(HTTPException):
    def __init__(self, what: str) -> None:
        super().__init__(403, {"detail": f"You do not have permission to {what}."})


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def _storage() -> Storage:
    return Storage(OasisConfig.from_env().storage_root)


def _registry_models() -> dict[tuple[str, str, str], Model]:
    registry = load_registry(OasisConfig.from_env().registry_path)
    return {(m.supplier_id, m.model_id, m.version_id): m for m in registry.models}


# --- authentication and authorization ---


async def current_user(request: Request) -> Any:
    """The caller, from the Bearer header or else the UI's cookie, checked by Airflow's own security
    code; 401 without a valid token (an empty ``Authorization``, as the client sends before login, is none)."""
    from airflow.api_fastapi.core_api.security import get_user, resolve_user_from_token

    header = request.headers.get("authorization", "")
    try:
        if header.lower().startswith("bearer ") and header[7:].strip():
            return await resolve_user_from_token(header[7:].strip())
        return await get_user(request, None, None)
    except HTTPException as exc:
        # Airflow answers 403 to a token it cannot read: that is no credential, not a refusal.
        raise HTTPException(401, {"detail": str(exc.detail)}, headers={"WWW-Authenticate": "Bearer"}) from None


UserDep = Annotated[Any, Depends(current_user)]


def _authorized(user: Any, method: str, model: Model | None, run: bool = False) -> bool:
    """The auth manager's permission ``method`` on the model's DAGs (both modes), or on DAGs in
    general for what belongs to no model (portfolios); ``run`` asks about their DAG runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    entity = DagAccessEntity.RUN if run else None
    dag_ids = [model.dag_id(mode) for mode in Mode] if model else [None]
    return all(
        get_auth_manager().is_authorized_dag(method=method, user=user, access_entity=entity, details=DagDetails(id=dag_id))  # type: ignore[arg-type]
        for dag_id in dag_ids
    )


def require(user: Any, method: str, model: Model | None, what: str, run: bool = False) -> None:
    if not _authorized(user, method, model, run):
        raise Forbidden(what)


# --- representations ---


def _url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + request.scope.get("root_path", "") + "/" + path


class Api:
    """The routes of one API version (``v1`` or ``v2``)."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.prefix = mode.value
        self.router = APIRouter(prefix=f"/{mode.value}")
        self._routes()

    # ---- lookups (404 when absent) ----

    def models(self) -> list[tuple[ModelRecord, Model]]:
        registered = _registry_models()
        return [(record, registered[(record.supplier_id, record.model_id, record.version_id)]) for record in records().sync_models(list(registered))]

    def model(self, model_id: int) -> tuple[ModelRecord, Model]:
        for record, model in self.models():
            if record.id == model_id:
                return record, model
        raise HTTPException(404, {"detail": "Not found."})

    def portfolio(self, pid: int) -> PortfolioRecord:
        portfolio = records().portfolio(pid)
        if portfolio is None:
            raise HTTPException(404, {"detail": "Not found."})
        return portfolio

    def analysis(self, aid: int) -> tuple[AnalysisRecord, Model]:
        analysis = records().analysis(aid)
        if analysis is None:
            raise HTTPException(404, {"detail": "Not found."})
        return analysis, self.model(analysis.model_id)[1]

    # ---- representations ----

    def model_json(self, request: Request, record: ModelRecord) -> dict[str, Any]:
        base = f"{self.prefix}/models/{record.id}/"
        body: dict[str, Any] = {
            "id": record.id,
            "supplier_id": record.supplier_id,
            "model_id": record.model_id,
            "version_id": record.version_id,
            "created": _time(record.created),
            "modified": _time(record.created),
            "data_files": [],
            "settings": _url(request, base + "settings/"),
            "versions": _url(request, base + "versions/"),
            "run_mode": self.mode.value.upper(),
        }
        if self.mode is Mode.V2:
            body |= {
                "scaling_configuration": _url(request, base + "scaling_configuration/"),
                "chunking_configuration": _url(request, base + "chunking_configuration/"),
                "groups": [],
            }
        return body

    def portfolio_json(self, request: Request, portfolio: PortfolioRecord, detail: bool = True) -> dict[str, Any]:
        base = f"{self.prefix}/portfolios/{portfolio.id}/"
        body: dict[str, Any] = {"id": portfolio.id, "name": portfolio.name, "created": _time(portfolio.created), "modified": _time(portfolio.modified)}
        for resource in files.PORTFOLIO_FILES:
            entry = portfolio.files.get(resource)
            body[resource] = (
                {"uri": _url(request, base + f"{resource}/"), "name": entry["name"], "stored": entry["stored"]}
                | ({"converted_uri": None, "converted_stored": None, "conversion_state": "NONE", "conversion_log_fie": None} if self.mode is Mode.V2 else {})
                if entry
                else None
            )
        body["storage_links"] = _url(request, base + "storage_links/")
        if self.mode is Mode.V2:
            body |= {"groups": [], "currency_conversion_json": None}
            if detail:
                body |= {"exposure_status": "NONE", "validation_status": "NONE", "exposure_transform_status": "NONE", "reporting_currency": portfolio.reporting_currency}
        return body

    def analysis_json(self, request: Request, analysis: AnalysisRecord, state: RunView | None = None) -> dict[str, Any]:
        state = state or view(analysis)
        base = f"{self.prefix}/analyses/{analysis.id}/"
        produced = self._produced(analysis, state)
        body: dict[str, Any] = {
            "created": _time(analysis.created),
            "modified": _time(analysis.modified),
            "name": analysis.name,
            "id": analysis.id,
            "portfolio": analysis.portfolio_id,
            "model": analysis.model_id,
            "status": state.status.value,
            "task_started": _time(state.started),
            "task_finished": _time(state.finished),
            "complex_model_data_files": list(analysis.complex_model_data_files),
            "settings_file": _url(request, base + "settings_file/") if analysis.settings else None,
            "settings": _url(request, base + "settings/") if analysis.settings else None,
            "storage_links": _url(request, base + "storage_links/"),
            "num_events_total": 0,
            "num_events_complete": 0,
        }
        for name in ANALYSIS_FILES:
            body[name] = _url(request, base + f"{name}/") if name in produced else None
        if self.mode is Mode.V2:
            lookup, losses = state.chunks(TaskKind.LOOKUP_CHUNK), state.chunks(TaskKind.LOSS_CHUNK)
            body |= {
                "run_mode": state.run.mode.upper() if state.run and state.run.cancelled is None else None,
                "priority": analysis.priority,
                "groups": [],
                "lookup_chunks": lookup[1] or None,
                "analysis_chunks": losses[1] or None,
                "sub_task_count": len(state.sub_tasks),
                "sub_task_list": _url(request, base + "sub_task_list/"),
                "sub_task_error_ids": [t.id for t in state.sub_tasks if t.status == "ERROR"],
                "status_count": state.status_count,
                "chunking_configuration": _url(request, base + "chunking_configuration/"),
            }
        return body

    def _produced(self, analysis: AnalysisRecord, state: RunView) -> set[str]:
        """The file sub-resources an analysis has now."""
        location = _storage().analysis(analysis.storage_id)
        produced = set()
        if location.input.exists():
            produced |= {"input_file"} | {name for name, path in INPUT_FILES.items() if (location.input / path).exists()}
        if location.output.exists():
            produced.add("output_file")
        if location.logs.exists():
            produced.add("run_log_file")
        if state.status is AnalysisStatus.INPUTS_GENERATION_ERROR:
            produced.add("input_generation_traceback_file")
        if state.status is AnalysisStatus.RUN_ERROR:
            produced.add("run_traceback_file")
        return produced

    # ---- routes ----

    def _routes(self) -> None:
        r = self.router

        @r.get("/models/")
        def list_models(request: Request, user: UserDep) -> list[dict[str, Any]]:
            require(user, "GET", None, "read models")
            return [self.model_json(request, record) for record, model in self.models() if _authorized(user, "GET", model)]

        @r.get("/models/{model_id}/")
        def get_model(model_id: int, request: Request, user: UserDep) -> dict[str, Any]:
            record, model = self.model(model_id)
            require(user, "GET", model, f"read model {model.key}")
            return self.model_json(request, record)

        @r.get("/models/{model_id}/settings/")
        def model_settings(model_id: int, user: UserDep) -> Any:
            _, model = self.model(model_id)
            require(user, "GET", model, f"read model {model.key}")
            return model.model_settings()

        @r.get("/models/{model_id}/versions/")
        def model_versions(model_id: int, user: UserDep) -> dict[str, Any]:
            _, model = self.model(model_id)
            require(user, "GET", model, f"read model {model.key}")
            from importlib.metadata import version

            return {"ver_ktools": None, "ver_oasislmf": version("oasislmf"), "ver_platform": API_VERSION, "ver_ods": version("ods-tools")}

        @r.get("/models/{model_id}/chunking_configuration/")
        def model_chunking(model_id: int, user: UserDep) -> dict[str, Any]:
            _, model = self.model(model_id)
            require(user, "GET", model, f"read model {model.key}")
            return model.chunking.to_dict()

        @r.get("/models/{model_id}/scaling_configuration/")
        def model_scaling(model_id: int, user: UserDep) -> dict[str, Any]:
            _, model = self.model(model_id)
            require(user, "GET", model, f"read model {model.key}")
            from dataclasses import asdict

            return asdict(model.scaling)

        # ---- portfolios ----

        @r.get("/portfolios/")
        def list_portfolios(request: Request, user: UserDep) -> list[dict[str, Any]]:
            require(user, "GET", None, "read portfolios")
            return [self.portfolio_json(request, p, detail=False) for p in records().list_portfolios()]

        @r.post("/portfolios/", status_code=201)
        async def create_portfolio(request: Request, user: UserDep) -> dict[str, Any]:
            require(user, "PUT", None, "create portfolios")
            name = _name(await _json(request))
            return self.portfolio_json(request, records().create_portfolio(name, user.get_name()))

        @r.get("/portfolios/{pid}/")
        def get_portfolio(pid: int, request: Request, user: UserDep) -> dict[str, Any]:
            require(user, "GET", None, "read portfolios")
            return self.portfolio_json(request, self.portfolio(pid))

        @r.put("/portfolios/{pid}/")
        @r.patch("/portfolios/{pid}/")
        async def update_portfolio(pid: int, request: Request, user: UserDep) -> dict[str, Any]:
            require(user, "PUT", None, "edit portfolios")
            self.portfolio(pid)
            name = _name(await _json(request))
            return self.portfolio_json(request, records().update_portfolio(pid, name=name))  # type: ignore[arg-type]

        @r.delete("/portfolios/{pid}/", status_code=204)
        def delete_portfolio(pid: int, user: UserDep) -> Response:
            require(user, "DELETE", None, "delete portfolios")
            self.portfolio(pid)
            records().delete_portfolio(pid)
            folder = files.portfolio_folder(_storage(), pid)
            if folder.exists():
                folder.fs.rm(folder.path, recursive=True)
            return Response(status_code=204)

        for resource in files.PORTFOLIO_FILES:
            self._portfolio_file_routes(resource)

        @r.get("/portfolios/{pid}/storage_links/")
        def portfolio_storage_links(pid: int, user: UserDep) -> dict[str, Any]:
            require(user, "GET", None, "read portfolios")
            portfolio = self.portfolio(pid)
            return {name: (portfolio.files.get(name) or {}).get("stored") for name in files.PORTFOLIO_FILES}

        @r.post("/portfolios/{pid}/reporting_currency/")
        async def set_reporting_currency(pid: int, request: Request, user: UserDep) -> dict[str, Any]:
            require(user, "PUT", None, "edit portfolios")
            self.portfolio(pid)
            currency = str((await _json(request)).get("reporting_currency") or "")
            records().update_portfolio(pid, reporting_currency=currency)
            return {"reporting_currency": currency}

        @r.post("/portfolios/{pid}/create_analysis/", status_code=201)
        async def portfolio_create_analysis(pid: int, request: Request, user: UserDep) -> dict[str, Any]:
            body = await _json(request)
            return self._create_analysis(request, user, body | {"portfolio": pid})

        # ---- analyses ----

        @r.get("/analyses/")
        def list_analyses(request: Request, user: UserDep) -> list[dict[str, Any]]:
            require(user, "GET", None, "read analyses")
            models = {record.id: model for record, model in self.models()}
            return [
                self.analysis_json(request, a)
                for a in records().list_analyses()
                if a.model_id in models and _authorized(user, "GET", models[a.model_id])
            ]

        @r.post("/analyses/", status_code=201)
        async def create_analysis(request: Request, user: UserDep) -> dict[str, Any]:
            return self._create_analysis(request, user, await _json(request))

        @r.get("/analyses/{aid}/")
        def get_analysis(aid: int, request: Request, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            return self.analysis_json(request, analysis)

        @r.delete("/analyses/{aid}/", status_code=204)
        def delete_analysis(aid: int, user: UserDep) -> Response:
            analysis, model = self.analysis(aid)
            require(user, "DELETE", model, f"delete analyses of {model.key}")
            state = view(analysis)
            if state.run and state.status in GENERATING | RUNNING:
                from oasis_ops.api.runs import cancel

                cancel(state.run, analysis.storage_id)
            records().delete_analysis(aid)
            folder = _storage().analysis(analysis.storage_id).base
            if folder.exists():
                folder.fs.rm(folder.path, recursive=True)
            return Response(status_code=204)

        @r.post("/analyses/{aid}/copy/")
        async def copy_analysis(aid: int, request: Request, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "PUT", model, f"create analyses of {model.key}")
            body = await _json(request)
            copy = records().create_analysis(
                name=str(body.get("name") or f"{analysis.name} - Copy"),
                owner=user.get_name(),
                portfolio_id=int(body.get("portfolio") or analysis.portfolio_id),
                model_id=int(body.get("model") or analysis.model_id),
                priority=analysis.priority,
                settings=analysis.settings,
                chunking=analysis.chunking,
                complex_model_data_files=list(analysis.complex_model_data_files),
            )
            return self.analysis_json(request, copy)

        @r.get("/analyses/{aid}/settings/")
        @r.get("/analyses/{aid}/settings_file/")
        def get_settings(aid: int, user: UserDep) -> Any:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            if not analysis.settings:
                raise HTTPException(404, {"detail": "Not found."})
            return analysis.settings

        @r.post("/analyses/{aid}/settings/")
        async def set_settings(aid: int, request: Request, user: UserDep) -> Any:
            return self._set_settings(aid, user, await _json(request))

        @r.post("/analyses/{aid}/settings_file/")
        async def upload_settings(aid: int, user: UserDep, file: UploadFile) -> Any:
            try:
                settings = json.loads(await file.read())
            except ValueError as exc:
                raise HTTPException(400, {"file": [f"{file.filename!r} is not JSON: {exc}"]}) from None
            return self._set_settings(aid, user, settings)

        @r.delete("/analyses/{aid}/settings/")
        @r.delete("/analyses/{aid}/settings_file/")
        def delete_settings(aid: int, user: UserDep) -> Response:
            _, model = self.analysis(aid)
            require(user, "PUT", model, f"edit analyses of {model.key}")
            records().update_analysis(aid, settings=None)
            return Response(status_code=200)

        @r.get("/analyses/{aid}/chunking_configuration/")
        def get_chunking(aid: int, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            stored = dict(analysis.chunking or {})
            return {name: stored.get(name) for name in model.chunking.to_dict()}

        @r.post("/analyses/{aid}/chunking_configuration/")
        async def set_chunking(aid: int, request: Request, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "PUT", model, f"edit analyses of {model.key}")
            merged = dict(analysis.chunking or {}) | dict(await _json(request))
            merged = {k: v for k, v in merged.items() if v is not None}
            try:
                full = model.chunking.override(merged, "chunking_configuration")
            except OasisInputError as exc:
                raise HTTPException(400, {"chunking_configuration": [str(exc)]}) from None
            records().update_analysis(aid, chunking=merged)
            return full.to_dict()

        for action in (GENERATE_INPUTS, RUN, GENERATE_AND_RUN):
            self._action_route(action)
        for name in ("cancel", "cancel_generate_inputs", "cancel_analysis_run"):
            self._cancel_route(name)
        for name in ANALYSIS_FILES:
            self._analysis_file_route(name)

        @r.get("/analyses/{aid}/sub_task_list/")
        def sub_task_list(aid: int, user: UserDep) -> list[dict[str, Any]]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            return [
                {
                    "id": t.id, "task_id": t.task_id, "status": t.status.value, "queue_name": t.queue_name,
                    "name": t.name, "slug": t.slug, "pending_time": _time(t.pending_time), "queue_time": _time(t.queue_time),
                    "start_time": _time(t.start_time), "end_time": _time(t.end_time), "output_log": None,
                    "error_log": None, "retry_log": None, "retry_count": t.retry_count,
                }
                for t in view(analysis).sub_tasks
            ]

        @r.get("/analyses/{aid}/run_progress/")
        def run_progress(aid: int, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            state = view(analysis)
            done, total = state.chunks(TaskKind.LOSS_CHUNK)
            return {"Status": f"{done}/{total} loss chunks complete", "status": state.status.value, "status_count": state.status_count}

        @r.get("/analyses/{aid}/storage_links/")
        def analysis_storage_links(aid: int, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            location = _storage().analysis(analysis.storage_id)
            return {"input_file": str(location.input), "output_file": str(location.output), "run_log_file": str(location.logs)}

        for folder, arcname in (("input", "input"), ("output", "output")):
            self._tar_routes(folder, arcname)

    # ---- route builders ----

    def _create_analysis(self, request: Request, user: Any, body: Mapping[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        name = body.get("name")
        if not name:
            errors["name"] = ["This field is required."]
        try:
            portfolio = self.portfolio(int(body.get("portfolio")))  # type: ignore[arg-type]
        except (HTTPException, TypeError, ValueError):
            raise HTTPException(400, errors | {"portfolio": [f"Invalid pk \"{body.get('portfolio')}\" - object does not exist."]}) from None
        try:
            record, model = self.model(int(body.get("model")))  # type: ignore[arg-type]
        except (HTTPException, TypeError, ValueError):
            raise HTTPException(400, errors | {"model": [f"Invalid pk \"{body.get('model')}\" - object does not exist."]}) from None
        if "location_file" not in portfolio.files and "accounts_file" not in portfolio.files:
            errors["portfolio"] = ['either "location_file" or "accounts_file" must not be null']
        priority = body.get("priority", 4)
        from oasis_ops.priority import is_priority

        if not is_priority(priority):
            errors["priority"] = [f"priority must be an integer from 1 to 10, got {priority!r}"]
        if errors:
            raise HTTPException(400, errors)
        require(user, "PUT", model, f"create analyses of {model.key}")
        analysis = records().create_analysis(
            name=str(name),
            owner=user.get_name(),
            portfolio_id=portfolio.id,
            model_id=record.id,
            priority=priority,
            settings=None,
            chunking=None,
            complex_model_data_files=list(body.get("complex_model_data_files") or []),
        )
        if isinstance(body.get("settings"), Mapping):
            self._set_settings(analysis.id, user, body["settings"])
            analysis = records().analysis(analysis.id)  # type: ignore[assignment]
        return self.analysis_json(request, analysis)

    def _set_settings(self, aid: int, user: Any, settings: Any) -> Any:
        analysis, model = self.analysis(aid)
        require(user, "PUT", model, f"edit analyses of {model.key}")
        if not isinstance(settings, Mapping):
            raise HTTPException(400, {"settings": ["analysis settings must be a JSON object"]})
        from oasis_ops.execution.validation import check_analysis_settings

        try:
            check_analysis_settings(settings, model)
        except OasisInputError as exc:
            raise HTTPException(400, {"settings": [str(exc)]}) from None
        records().update_analysis(aid, settings=dict(settings))
        return {"created": _time(analysis.modified), "file": "analysis_settings.json", "filename": "analysis_settings.json", "groups": []}

    def _portfolio_file_routes(self, resource: str) -> None:
        r = self.router

        @r.get(f"/portfolios/{{pid}}/{resource}/", name=f"get_{resource}")
        def download(pid: int, user: UserDep) -> Response:
            require(user, "GET", None, "read portfolios")
            entry = self.portfolio(pid).files.get(resource)
            if not entry:
                raise HTTPException(404, {"detail": "Not found."})
            path = _storage().root / entry["stored"]
            headers = {"Content-Disposition": f'attachment; filename="{entry["name"]}"'}
            return StreamingResponse(files.stream_file(path), media_type=entry["content_type"], headers=headers)

        @r.post(f"/portfolios/{{pid}}/{resource}/", name=f"upload_{resource}")
        def upload(pid: int, user: UserDep, file: UploadFile) -> dict[str, Any]:
            require(user, "PUT", None, "edit portfolios")
            self.portfolio(pid)
            name = file.filename or ""
            try:
                stored = files.save_upload(_storage(), pid, resource, name, file.file)
            except OasisInputError as exc:
                raise HTTPException(400, {"file": [str(exc)]}) from None
            content_type = "application/octet-stream" if name.lower().endswith(".parquet") else "text/csv"
            records().set_portfolio_file(pid, resource, {"stored": stored, "name": name, "content_type": content_type})
            return {"created": _time(datetime.now()), "file": stored, "filename": name, "groups": [], "conversion_state": "NONE", "converted_file": None, "mapping_file": None}

        @r.delete(f"/portfolios/{{pid}}/{resource}/", name=f"delete_{resource}")
        def remove(pid: int, user: UserDep) -> Response:
            require(user, "PUT", None, "edit portfolios")
            entry = self.portfolio(pid).files.get(resource)
            if not entry:
                raise HTTPException(404, {"detail": "Not found."})
            folder = files.portfolio_folder(_storage(), pid) / resource
            if folder.exists():
                folder.fs.rm(folder.path, recursive=True)
            records().set_portfolio_file(pid, resource, None)
            return Response(status_code=200)

    def _action_route(self, action: str) -> None:
        allowed = CAN_RUN if action == RUN else CAN_GENERATE
        queued = AnalysisStatus.RUN_QUEUED if action == RUN else AnalysisStatus.INPUTS_GENERATION_QUEUED

        @self.router.post(f"/analyses/{{aid}}/{action}/", name=action)
        def start(aid: int, request: Request, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "POST", model, f"run analyses of {model.key}", run=True)
            state = view(analysis)
            if state.status not in allowed:
                raise HTTPException(400, {"status": [f"Analysis status must be one of [{', '.join(sorted(allowed))}], not {state.status.value}"]})
            portfolio = self.portfolio(analysis.portfolio_id)
            conf: dict[str, Any] = {"analysis_id": analysis.storage_id, "action": action, "priority": analysis.priority}
            if action != RUN:
                if "location_file" not in portfolio.files:
                    raise HTTPException(400, {"portfolio": ['"location_file" must not be null']})
                for resource, entry in portfolio.files.items():
                    conf[files.RUN_PARAMETER[resource]] = entry["stored"]
            if action != GENERATE_INPUTS:
                if not analysis.settings:
                    raise HTTPException(400, {"analysis_settings_file": ["Must not be null"]})
                if action == RUN and not _storage().analysis(analysis.storage_id).input.exists():
                    raise HTTPException(400, {"input_file": ["Must not be null"]})
            if analysis.settings:
                conf["analysis_settings"] = dict(analysis.settings)
            if analysis.chunking:
                conf["chunking"] = dict(analysis.chunking)
            from oasis_ops.api.runs import trigger

            try:
                trigger(analysis, model, self.mode, action, conf, user.get_name())
            except Exception as exc:  # the DAG's params refused the conf
                raise HTTPException(400, {"detail": str(exc)}) from None
            refreshed = records().analysis(aid)
            body = self.analysis_json(request, refreshed)  # type: ignore[arg-type]
            body["status"] = body["status"] if body["status"] != AnalysisStatus.NEW else queued.value
            return body

    def _cancel_route(self, name: str) -> None:
        allowed = {"cancel": GENERATING | RUNNING, "cancel_generate_inputs": GENERATING, "cancel_analysis_run": RUNNING}[name]
        refusal = {
            "cancel": "Analysis is not running or queued",
            "cancel_generate_inputs": "Analysis input generation is not running or queued",
            "cancel_analysis_run": "Analysis execution is not running or queued",
        }[name]

        @self.router.post(f"/analyses/{{aid}}/{name}/", name=name)
        def cancel_run(aid: int, request: Request, user: UserDep) -> dict[str, Any]:
            analysis, model = self.analysis(aid)
            require(user, "PUT", model, f"cancel analyses of {model.key}")
            state = view(analysis)
            if state.status not in allowed or state.run is None:
                raise HTTPException(400, {"status": [refusal]})
            from oasis_ops.api.runs import cancel

            cancel(state.run, analysis.storage_id)
            return self.analysis_json(request, records().analysis(aid))  # type: ignore[arg-type]

    def _analysis_file_route(self, name: str) -> None:
        @self.router.get(f"/analyses/{{aid}}/{name}/", name=name)
        def download(aid: int, user: UserDep) -> Response:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            location = _storage().analysis(analysis.storage_id)
            if name in TRACEBACK_FILES:
                state = view(analysis)
                wanted = AnalysisStatus.INPUTS_GENERATION_ERROR if name == "input_generation_traceback_file" else AnalysisStatus.RUN_ERROR
                if state.status is not wanted or state.run is None:
                    raise HTTPException(404, {"detail": "Not found."})
                return Response(traceback_text(location.errors(state.run.run_id), state), media_type="text/plain")
            if name in TAR_FILES:
                folder, filename = TAR_FILES[name]
                source = getattr(location, folder)
                if not source.exists():
                    raise HTTPException(404, {"detail": "Not found."})
                headers = {"Content-Disposition": f'attachment; filename="analysis_{aid}_{filename}"'}
                return StreamingResponse(files.stream_tar(source, folder), media_type="application/gzip", headers=headers)
            path = location.input / INPUT_FILES[name]
            if not path.exists():
                raise HTTPException(404, {"detail": "Not found."})
            media = "text/csv" if path.name.endswith(".csv") else "application/json"
            headers = {"Content-Disposition": f'attachment; filename="analysis_{aid}_{path.name}"'}
            return StreamingResponse(files.stream_file(path), media_type=media, headers=headers)

    def _tar_routes(self, folder: str, arcname: str) -> None:
        @self.router.get(f"/analyses/{{aid}}/{folder}_file_tar_list/", name=f"{folder}_tar_list")
        def tar_list(aid: int, user: UserDep) -> list[str]:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            source = getattr(_storage().analysis(analysis.storage_id), folder)
            if not source.exists():
                raise HTTPException(404, {"detail": "Not found."})
            return files.tar_members(source, arcname)

        @self.router.get(f"/analyses/{{aid}}/{folder}_file_tar_extract/", name=f"{folder}_tar_extract")
        def tar_extract(aid: int, filename: str, user: UserDep) -> Response:
            analysis, model = self.analysis(aid)
            require(user, "GET", model, f"read analyses of {model.key}")
            source = getattr(_storage().analysis(analysis.storage_id), folder)
            member = files.tar_member(source, arcname, filename) if source.exists() else None
            if member is None:
                raise HTTPException(400, ["Invalid filename."])
            media = "application/octet-stream" if member.name.endswith((".parquet", ".pq")) else "text/csv" if member.name.endswith(".csv") else "application/json" if member.name.endswith(".json") else None
            headers = {"Content-Disposition": f'attachment; filename="{member.name}"'}
            return StreamingResponse(files.stream_file(member), media_type=media, headers=headers)


#: Analysis file sub-resources.
INPUT_FILES = {
    "lookup_errors_file": "keys-errors.csv",
    "lookup_success_file": "gul_summary_map.csv",
    "lookup_validation_file": "exposure_summary_report.json",
    "summary_levels_file": "exposure_summary_levels.json",
}
TAR_FILES = {"input_file": ("input", "inputs.tar.gz"), "output_file": ("output", "output.tar.gz"), "run_log_file": ("logs", "logs.tar.gz")}
TRACEBACK_FILES = ("input_generation_traceback_file", "run_traceback_file")
ANALYSIS_FILES = (*TAR_FILES, *INPUT_FILES, *TRACEBACK_FILES)


def traceback_text(errors: Any, state: RunView) -> str:
    """The failing tasks of the run, each with its chunk, try and error (as the task reported it)."""
    parts = []
    for task_id, map_index, try_number in state.failures:
        report = errors / (f"{task_id}-{map_index}.txt" if map_index >= 0 else f"{task_id}.txt")
        label = f"{task_id}" + (f" (chunk {map_index + 1})" if map_index >= 0 else "")
        if report.exists():
            parts.append(report.read_text())
        else:
            parts.append(f"Task {label}, try {try_number}, failed without an error report: it was stopped or its worker was lost.")
    return "\n\n".join(parts) or f"The DAG run {state.run.run_id if state.run else ''} failed."


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(body, dict):
        raise HTTPException(400, {"detail": "expected a JSON object"})
    return body


def _name(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HTTPException(400, {"name": ["This field is required."]})
    return name


def create_app() -> FastAPI:
    app = FastAPI(title="Oasis Platform API on Airflow", version=API_VERSION, redirect_slashes=True)

    @app.exception_handler(HTTPException)
    async def _detail_as_body(_request: Request, exc: HTTPException) -> JSONResponse:
        """OasisPlatform's error bodies are the detail itself (``{"field": [...]}``), not ``{"detail": ...}``."""
        body = exc.detail if isinstance(exc.detail, (dict, list)) else {"detail": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/healthcheck/")
    def healthcheck() -> dict[str, str]:
        return {"status": "OK"}

    @app.get("/server_info/")
    def server_info() -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "version": API_VERSION,
            "config": {"API_AUTH_TYPE": "simple", "STORAGE_TYPE": "airflow", "oasislmf": version("oasislmf")},
            "components": {"ods_version": version("ods-tools"), "airflow": version("apache-airflow")},
        }

    @app.post("/access_token/")
    async def access_token(request: Request) -> dict[str, Any]:
        """Username and password -> the auth manager's token (the same as ``POST /auth/token`` gives)."""
        body = await _json(request)
        if not body.get("username") or not body.get("password"):
            raise HTTPException(401, {"detail": BAD_CREDENTIALS})
        token = await _login(str(body["username"]), str(body["password"]))
        return {"access_token": token, "refresh_token": token, "token_type": "Bearer", "expires_in": _expires_in()}

    @app.post("/refresh_token/")
    async def refresh_token(user: UserDep) -> dict[str, Any]:
        """A new token for the holder of a valid one (oasislmf's client sends it as the Bearer)."""
        from airflow.api_fastapi.app import get_auth_manager

        token = get_auth_manager().generate_jwt(user)
        return {"access_token": token, "refresh_token": token, "token_type": "Bearer", "expires_in": _expires_in()}

    for mode in Mode:
        app.include_router(Api(mode).router)
    from oasis_ops.results.routes import router as results_router  # it uses this module's authentication

    app.include_router(results_router)
    return app


async def _login(username: str, password: str) -> str:
    """The auth manager's own login route (``/auth/token``), called on this api-server."""
    import httpx
    from airflow.configuration import conf

    url = f"http://127.0.0.1:{conf.getint('api', 'port', fallback=8080)}/auth/token"
    async with httpx.AsyncClient(timeout=20) as client:
        answer = await client.post(url, json={"username": username, "password": password})
    if answer.status_code >= 400:
        raise HTTPException(401, {"detail": BAD_CREDENTIALS})
    return str(answer.json()["access_token"])


def _expires_in() -> float:
    from airflow.configuration import conf

    return float(conf.getint("api_auth", "jwt_expiration_time", fallback=86400))

