"""The Oasis API's records: model ids, portfolios, analyses and the DAG runs that belong to them.

They live in a database of their own, never in Airflow's schema (its migrations own it):
``OASIS_API_DATABASE_URL``, by default a schema ``oasis_api`` in Airflow's PostgreSQL database, or a
file ``oasis_api.db`` beside Airflow's SQLite database. A database, not documents in the storage
root, because ids must be allocated once across api-server replicas and concurrent requests (a
sequence does that; object stores have no atomic create), and records must be queried by status
and model. File bytes are not records: they stay in the storage root (see :mod:`.files`).

Statuses are not stored: they are derived from the DAG runs whenever an analysis is read
(:mod:`.status`), so they cannot go stale when a run ends, fails or is cancelled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url

SCHEMA = "oasis_api"
#: PostgreSQL advisory lock taken while the records' schema and tables are created.
DDL_LOCK = 0x0A515A91


def _now() -> datetime:
    return datetime.now(UTC)


def database_url() -> tuple[str, str | None]:
    """(URL, schema) of the records database: ``OASIS_API_DATABASE_URL``, else beside Airflow's."""
    explicit = os.environ.get("OASIS_API_DATABASE_URL")
    if explicit:
        return explicit, None
    from airflow.configuration import conf

    airflow_url = make_url(conf.get("database", "sql_alchemy_conn"))
    if airflow_url.drivername.startswith("sqlite"):
        folder = os.path.dirname(airflow_url.database or "") or os.environ.get("AIRFLOW_HOME", ".")
        return f"sqlite:///{os.path.join(folder, 'oasis_api.db')}", None
    return airflow_url.render_as_string(hide_password=False), SCHEMA


def _tables(schema: str | None) -> tuple[MetaData, Table, Table, Table, Table]:
    metadata = MetaData(schema=schema)
    models = Table(
        "models",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("supplier_id", String(255), nullable=False),
        Column("model_id", String(255), nullable=False),
        Column("version_id", String(255), nullable=False),
        Column("created", DateTime(timezone=True), nullable=False, default=_now),
        UniqueConstraint("supplier_id", "model_id", "version_id"),
    )
    portfolios = Table(
        "portfolios",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(255), nullable=False),
        Column("owner", String(255)),
        #: role (location_file, ...) -> {"stored": storage path, "name": uploaded name, "content_type": ...}
        Column("files", JSON, nullable=False, default=dict),
        Column("reporting_currency", String(16), nullable=False, default=""),
        Column("created", DateTime(timezone=True), nullable=False, default=_now),
        Column("modified", DateTime(timezone=True), nullable=False, default=_now, onupdate=_now),
    )
    analyses = Table(
        "analyses",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(255), nullable=False),
        Column("owner", String(255)),
        Column("portfolio_id", Integer, ForeignKey(portfolios.c.id, ondelete="CASCADE"), nullable=False),
        Column("model_id", Integer, ForeignKey(models.c.id), nullable=False),
        Column("priority", Integer, nullable=False, default=4),
        Column("settings", JSON),
        Column("chunking", JSON),
        Column("complex_model_data_files", JSON, nullable=False, default=list),
        Column("created", DateTime(timezone=True), nullable=False, default=_now),
        Column("modified", DateTime(timezone=True), nullable=False, default=_now, onupdate=_now),
    )
    runs = Table(
        "analysis_runs",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("analysis_id", Integer, ForeignKey(analyses.c.id, ondelete="CASCADE"), nullable=False, index=True),
        Column("mode", String(8), nullable=False),
        Column("action", String(32), nullable=False),
        Column("dag_id", String(250), nullable=False),
        Column("run_id", String(250), nullable=False),
        Column("created", DateTime(timezone=True), nullable=False, default=_now),
        Column("cancelled", DateTime(timezone=True)),
    )
    return metadata, models, portfolios, analyses, runs


@dataclass(frozen=True)
class RunRecord:
    """One DAG run started for an analysis (``action`` is the run's ``action`` parameter)."""

    id: int
    analysis_id: int
    mode: str
    action: str
    dag_id: str
    run_id: str
    created: datetime
    cancelled: datetime | None


@dataclass(frozen=True)
class AnalysisRecord:
    id: int
    name: str
    owner: str | None
    portfolio_id: int
    model_id: int
    priority: int
    settings: Mapping[str, Any] | None
    chunking: Mapping[str, Any] | None
    complex_model_data_files: list[Any]
    created: datetime
    modified: datetime
    #: Newest first.
    runs: tuple[RunRecord, ...] = field(default=())

    @property
    def storage_id(self) -> str:
        """The ``analysis_id`` run parameter: its results are ``analyses/<storage_id>/`` in the storage root."""
        return f"oasis-api-{self.id}"


@dataclass(frozen=True)
class PortfolioRecord:
    id: int
    name: str
    owner: str | None
    files: Mapping[str, Mapping[str, str]]
    reporting_currency: str
    created: datetime
    modified: datetime


@dataclass(frozen=True)
class ModelRecord:
    id: int
    supplier_id: str
    model_id: str
    version_id: str
    created: datetime

    @property
    def key(self) -> str:
        return f"{self.supplier_id}/{self.model_id}/{self.version_id}"


class Records:
    """The records database; every method is one transaction."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_foreign_keys)
        self.metadata, self.models, self.portfolios, self.analyses, self.runs = _tables(schema)
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # Replicas starting together would race to create the schema and tables ("IF NOT
                # EXISTS" is no lock): one at a time, for as long as this transaction.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
            if schema:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            self.metadata.create_all(connection, checkfirst=True)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # --- models: one stable id per registry key, allocated on first sight ---

    def sync_models(self, keys: list[tuple[str, str, str]]) -> list[ModelRecord]:
        """The records of these registry models (created when new), in id order."""
        with self._transaction() as db:
            known = {(r.supplier_id, r.model_id, r.version_id) for r in db.execute(select(self.models))}
            for key in keys:
                if key not in known:
                    # A concurrent request may insert the same key: the unique constraint keeps one.
                    try:
                        with db.begin_nested():
                            db.execute(insert(self.models).values(supplier_id=key[0], model_id=key[1], version_id=key[2]))
                    except Exception as exc:
                        if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                            raise
            rows = db.execute(select(self.models).order_by(self.models.c.id)).all()
        wanted = set(keys)
        return [ModelRecord(**row._mapping) for row in rows if (row.supplier_id, row.model_id, row.version_id) in wanted]

    # --- portfolios ---

    def create_portfolio(self, name: str, owner: str | None) -> PortfolioRecord:
        with self._transaction() as db:
            pid = db.execute(insert(self.portfolios).values(name=name, owner=owner, files={}, reporting_currency="")).inserted_primary_key[0]  # type: ignore[index]
        return self.portfolio(pid)  # type: ignore[return-value]

    def portfolio(self, pid: int) -> PortfolioRecord | None:
        with self._transaction() as db:
            row = db.execute(select(self.portfolios).where(self.portfolios.c.id == pid)).first()
        return PortfolioRecord(**row._mapping) if row else None

    def list_portfolios(self) -> list[PortfolioRecord]:
        with self._transaction() as db:
            return [PortfolioRecord(**row._mapping) for row in db.execute(select(self.portfolios).order_by(self.portfolios.c.id))]

    def update_portfolio(self, pid: int, **values: Any) -> PortfolioRecord | None:
        with self._transaction() as db:
            db.execute(update(self.portfolios).where(self.portfolios.c.id == pid).values(modified=_now(), **values))
        return self.portfolio(pid)

    def set_portfolio_file(self, pid: int, role: str, entry: Mapping[str, str] | None) -> PortfolioRecord | None:
        """Record (or with None, forget) one of the portfolio's files, in one transaction."""
        with self._transaction() as db:
            row = db.execute(select(self.portfolios.c.files).where(self.portfolios.c.id == pid).with_for_update()).first()
            if row is None:
                return None
            files = dict(row.files or {})
            if entry is None:
                files.pop(role, None)
            else:
                files[role] = dict(entry)
            db.execute(update(self.portfolios).where(self.portfolios.c.id == pid).values(files=files, modified=_now()))
        return self.portfolio(pid)

    def delete_portfolio(self, pid: int) -> bool:
        with self._transaction() as db:
            ids = [r.id for r in db.execute(select(self.analyses.c.id).where(self.analyses.c.portfolio_id == pid))]
            if ids:
                db.execute(delete(self.runs).where(self.runs.c.analysis_id.in_(ids)))
                db.execute(delete(self.analyses).where(self.analyses.c.id.in_(ids)))
            return db.execute(delete(self.portfolios).where(self.portfolios.c.id == pid)).rowcount > 0

    # --- analyses ---

    def create_analysis(self, **values: Any) -> AnalysisRecord:
        with self._transaction() as db:
            aid = db.execute(insert(self.analyses).values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return self.analysis(aid)  # type: ignore[return-value]

    def analysis(self, aid: int) -> AnalysisRecord | None:
        with self._transaction() as db:
            row = db.execute(select(self.analyses).where(self.analyses.c.id == aid)).first()
            if row is None:
                return None
            runs = db.execute(select(self.runs).where(self.runs.c.analysis_id == aid).order_by(self.runs.c.id.desc())).all()
        return AnalysisRecord(**row._mapping, runs=tuple(RunRecord(**r._mapping) for r in runs))

    def list_analyses(self) -> list[AnalysisRecord]:
        with self._transaction() as db:
            rows = db.execute(select(self.analyses).order_by(self.analyses.c.id)).all()
            runs = db.execute(select(self.runs).order_by(self.runs.c.id.desc())).all()
        by_analysis: dict[int, list[RunRecord]] = {}
        for run in runs:
            by_analysis.setdefault(run.analysis_id, []).append(RunRecord(**run._mapping))
        return [AnalysisRecord(**row._mapping, runs=tuple(by_analysis.get(row.id, ()))) for row in rows]

    def update_analysis(self, aid: int, **values: Any) -> AnalysisRecord | None:
        with self._transaction() as db:
            db.execute(update(self.analyses).where(self.analyses.c.id == aid).values(modified=_now(), **values))
        return self.analysis(aid)

    def delete_analysis(self, aid: int) -> bool:
        with self._transaction() as db:
            db.execute(delete(self.runs).where(self.runs.c.analysis_id == aid))
            return db.execute(delete(self.analyses).where(self.analyses.c.id == aid)).rowcount > 0

    def add_run(self, aid: int, mode: str, action: str, dag_id: str, run_id: str) -> None:
        with self._transaction() as db:
            db.execute(insert(self.runs).values(analysis_id=aid, mode=mode, action=action, dag_id=dag_id, run_id=run_id))
            db.execute(update(self.analyses).where(self.analyses.c.id == aid).values(modified=_now()))

    def mark_cancelled(self, run: RunRecord) -> None:
        with self._transaction() as db:
            db.execute(update(self.runs).where(self.runs.c.id == run.id).values(cancelled=_now()))


def _sqlite_foreign_keys(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@cache
def records() -> Records:
    """The api-server's records database (one engine per process)."""
    return Records(*database_url())


def to_json(value: Any) -> str:
    return json.dumps(value, default=str)
