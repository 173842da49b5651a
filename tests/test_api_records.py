"""The Oasis API's records on PostgreSQL, as several api-server replicas use them at once: each
replica (a process of its own) starts on the same empty database, creates portfolios and analyses
and allocates the registry's model ids concurrently; no id is given twice and every replica sees
the same model ids."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from harness.celery_stack import POSTGRES
from oasis_ops.api.records import SCHEMA, Records

REPLICAS = 4
CREATES = 25
MODELS = [("OasisLMF", "PiWind", "1"), ("OasisLMF", "PiWind", "2"), ("Acme", "Quake", "7")]


@pytest.fixture
def database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"oasis_records_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _replica(url: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    """One api-server replica: its own engine, started at the same moment as the others."""
    start.wait(60)
    records = Records(url, SCHEMA)
    models = {(m.supplier_id, m.model_id, m.version_id): m.id for m in records.sync_models(MODELS)}
    portfolios, analyses = [], []
    for i in range(CREATES):
        portfolio = records.create_portfolio(f"p{i}", "replica")
        portfolios.append(portfolio.id)
        analyses.append(records.create_analysis(name=f"a{i}", owner="replica", portfolio_id=portfolio.id, model_id=models[MODELS[0]]).id)
    out.put((models, portfolios, analyses))


def test_replicas_starting_and_creating_at_once_never_share_an_id(database):
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(REPLICAS), context.Queue()
    replicas = [context.Process(target=_replica, args=(database, start, out)) for _ in range(REPLICAS)]
    for replica in replicas:
        replica.start()
    for replica in replicas:  # what they send is small: the queue does not hold them up
        replica.join(120)
        assert replica.exitcode == 0, f"a replica failed (exit code {replica.exitcode}); see its traceback above"
    results = [out.get(timeout=10) for _ in replicas]

    (models, *others) = [models for models, _, _ in results]
    assert all(other == models for other in others), "replicas saw different model ids"
    assert len(set(models.values())) == len(MODELS), models
    for kind, ids in (("portfolio", [i for _, p, _ in results for i in p]), ("analysis", [i for _, _, a in results for i in a])):
        assert len(ids) == len(set(ids)) == REPLICAS * CREATES, f"a {kind} id was given twice"
    # And what they wrote is what a new replica reads.
    assert len(Records(database, SCHEMA).list_analyses()) == REPLICAS * CREATES
