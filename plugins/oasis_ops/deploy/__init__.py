"""What starts and describes the production stack: the services (``stack``), the Celery launcher,
``docker-compose.yaml``, Kubernetes manifests, pools, the embedded Airflow home, the image's warm-up."""
