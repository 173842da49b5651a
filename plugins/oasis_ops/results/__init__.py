"""Results where users look: the "Oasis analyses" page and each Oasis DAG run's results page in the
Airflow UI (AAL, EP curves, return-period losses, progress, failures, downloads), served by the Oasis
API's app under ``/oasis/results`` (:mod:`.routes`) from :mod:`.analysis` and :mod:`.reader`.

``static/`` vendors uPlot 1.6.32 (MIT, ``uPlot.LICENSE.txt``): ``dist/uPlot.iife.min.js`` and
``dist/uPlot.min.css`` of the npm package ``uplot@1.6.32``, copied as published; the UI must work
without the internet, so nothing is loaded from a CDN.
"""
