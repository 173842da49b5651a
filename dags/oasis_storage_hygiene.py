"""The storage hygiene Airflow DAG: removes what ended runs and killed tasks left in the storage root
(see ``oasis_ops.hygiene``)."""

from oasis_ops.hygiene import build_dag

dag = build_dag()
