"""Airflow plugin: the Oasis Platform REST API under ``/oasis`` on the api-server (see ``oasis_ops.api``)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from oasis_ops.api.app import create_app


class OasisApiPlugin(AirflowPlugin):
    name = "oasis_api"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": create_app(), "url_prefix": "/oasis", "name": "Oasis Platform API"}]
