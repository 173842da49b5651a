"""OasisPlatform's REST API on Airflow's api-server (``/oasis``): records, statuses, files and routes.

Imported by the api-server only (the plugin in ``plugins/oasis_api_plugin.py``), never by tasks.
"""
