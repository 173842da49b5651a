"""The results pages on the api-server, in the Oasis API's app (``/oasis/results/…``): the nav page
"Oasis analyses", each DAG run's results page (the ``dag_run`` external view of
``oasis_api_plugin``), its figures as JSON, its files, and the pages' own scripts and styles.

Served by the plugin's app, so the UI's ``_token`` cookie authenticates the iframes the UI shows
them in (a Bearer token does for scripts); reading needs the auth manager's read permission on
the DAG's runs. Nothing here is loaded from the internet: the UI must work without it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse

from oasis_ops.api import files
from oasis_ops.api.app import current_user
from oasis_ops.api.status import DagRunAnalysis, dag_run_analyses
from oasis_ops.config import OasisConfig
from oasis_ops.registry import Registry, load_registry
from oasis_ops.results.analysis import KEYS_ERRORS, NAV_ROUTE, RESULTS_PATH, analysis_rows, run_path, summary
from oasis_ops.storage import Storage

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: The static files served, by name (nothing a client sends becomes a path).
STATIC_FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".txt": "text/plain"}
#: The analysis' folders offered as tar.gz (their members under the folder's name): download -> folder.
TARS = {"output.tar.gz": "output", "input.tar.gz": "input", "logs.tar.gz": "logs"}

router = APIRouter(prefix="/results")


@cache
def _templates() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(nav=f"/plugin/{NAV_ROUTE}", static=f"{RESULTS_PATH}/static", **context)
    return HTMLResponse(html, status_code=status_code)


def _registry() -> Registry:
    return load_registry(OasisConfig.from_env().registry_path)


def _storage() -> Storage:
    return Storage(OasisConfig.from_env().storage_root)


def _can_read(user: Any, dag_id: str) -> bool:
    """The auth manager's read permission on the DAG's runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(method="GET", user=user, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id))


async def page_user(request: Request) -> Any | None:
    """The caller of a page, or None without a valid token (the page then sends them to log in)."""
    try:
        return await current_user(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            return None
        raise


PageUser = Annotated[Any, Depends(page_user)]
UserDep = Annotated[Any, Depends(current_user)]


def _login(request: Request) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


def _analysis(user: Any, dag_id: str, run_id: str) -> DagRunAnalysis:
    """The DAG run's analysis; 403 without read permission, 404 for no such run of an Oasis DAG."""
    if not _can_read(user, dag_id):
        raise HTTPException(403, {"detail": f"You do not have permission to read the runs of {dag_id}."})
    registry = _registry()
    if registry.dag(dag_id) is None:
        raise HTTPException(404, {"detail": f"{dag_id} is not an Oasis model's DAG (none of the registry {registry.path}): it has no Oasis results."})
    found = dag_run_analyses(registry, dag_id, run_id, limit=1)
    if not found:
        raise HTTPException(404, {"detail": f"{dag_id} has no run {run_id!r}."})
    return found[0]


# --- pages ---


@router.get("/", response_class=HTMLResponse)
def analyses_page(request: Request, user: PageUser) -> Response:
    """The nav page: every analysis, newest first."""
    if user is None:
        return _login(request)
    registry = _registry()
    rows = analysis_rows(registry, lambda dag_id: _can_read(user, dag_id))
    return _render("analyses.html", rows=rows, registry_errors=[str(e) for e in registry.errors])


@router.get("/analyses")
def analyses_json(user: UserDep) -> list[dict[str, Any]]:
    """The nav page's list as JSON."""
    return analysis_rows(_registry(), lambda dag_id: _can_read(user, dag_id))


@router.get("/dags/{dag_id}/runs/{run_id}/", response_class=HTMLResponse)
def analysis_page(dag_id: str, run_id: str, request: Request, user: PageUser) -> Response:
    """One DAG run's results page; its figures come from ``summary`` (fetched by the page's script)."""
    if user is None:
        return _login(request)
    try:
        analysis = _analysis(user, dag_id, run_id)
    except HTTPException as exc:
        message = exc.detail["detail"] if isinstance(exc.detail, dict) else str(exc.detail)
        return _render("message.html", exc.status_code, title="No Oasis results", message=message)
    return _render("analysis.html", analysis=analysis, page=run_path(dag_id, run_id))


@router.get("/dags/{dag_id}/runs/{run_id}/summary")
def analysis_summary(dag_id: str, run_id: str, user: UserDep) -> dict[str, Any]:
    """The analysis' status, progress, failures, files and figures (AAL, EP curves, return-period losses)."""
    return summary(_analysis(user, dag_id, run_id), _storage())


# --- files ---


@router.get("/dags/{dag_id}/runs/{run_id}/download/{name}")
def download(dag_id: str, run_id: str, name: str, user: UserDep) -> Response:
    """A folder of the analysis as tar.gz, or its keys errors."""
    location = _storage().analysis(_analysis(user, dag_id, run_id).analysis_id)
    if name in TARS:
        folder = TARS[name]
        source = getattr(location, folder)
        if not source.exists():
            raise HTTPException(404, {"detail": f"analysis {location.base.name} has no {folder} files"})
        headers = {"Content-Disposition": f'attachment; filename="{location.base.name}_{name}"'}
        return StreamingResponse(files.stream_tar(source, folder), media_type="application/gzip", headers=headers)
    if name == KEYS_ERRORS and (location.input / KEYS_ERRORS).exists():
        headers = {"Content-Disposition": f'attachment; filename="{location.base.name}_{KEYS_ERRORS}"'}
        return StreamingResponse(files.stream_file(location.input / KEYS_ERRORS), media_type="text/csv", headers=headers)
    raise HTTPException(404, {"detail": f"no download {name!r}; see the downloads of GET …/summary"})


@router.get("/dags/{dag_id}/runs/{run_id}/download/output/{name:path}")
def download_output(dag_id: str, run_id: str, name: str, user: UserDep) -> Response:
    """One output file (a name the output folder lists)."""
    output = _storage().analysis(_analysis(user, dag_id, run_id).analysis_id).output
    member = files.tar_member(output, "output", f"output/{name}") if output.exists() else None
    if member is None:
        raise HTTPException(404, {"detail": f"no output file {name!r}"})
    media = "text/csv" if name.endswith(".csv") else "application/json" if name.endswith(".json") else "application/octet-stream"
    headers = {"Content-Disposition": f'attachment; filename="{member.name}"'}
    return StreamingResponse(files.stream_file(member), media_type=media, headers=headers)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The pages' scripts, styles and icon (vendored: no CDN)."""
    path = STATIC_FILES.get(name)
    if path is None:
        raise HTTPException(404, {"detail": "Not found."})
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "max-age=3600"})
