"""The Oasis model Airflow DAGs: one per registered model and mode (see ``$OASIS_MODEL_REGISTRY``)."""

from oasis_ops.dag_factory import register_dags

register_dags(globals())
