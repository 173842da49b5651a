"""Airflow plugin: the Oasis Platform REST API under ``/oasis`` on the api-server (see ``oasis_ops.api``),
and the Oasis results pages in the UI (see ``oasis_ops.results``): a nav entry "Oasis analyses" and an
"Oasis results" tab on every DAG run (Airflow 3.3 cannot show it on some DAGs only: the page of a
DAG that is no Oasis model's says so)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from oasis_ops.api.app import create_app
from oasis_ops.results.analysis import NAV_ROUTE, RESULTS_PATH, RUN_TAB_ROUTE

ICON = f"{RESULTS_PATH}/static/oasis.svg"


class OasisApiPlugin(AirflowPlugin):
    name = "oasis_api"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": create_app(), "url_prefix": "/oasis", "name": "Oasis Platform API"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "Oasis analyses", "href": f"{RESULTS_PATH}/", "destination": "nav", "url_route": NAV_ROUTE, "icon": ICON, "nav_top_level": True},
        {
            "name": "Oasis results",
            "href": f"{RESULTS_PATH}/dags/{{DAG_ID}}/runs/{{RUN_ID}}/",
            "destination": "dag_run",
            "url_route": RUN_TAB_ROUTE,
            "icon": ICON,
        },
    ]
