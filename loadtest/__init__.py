"""Load at fleet size: the traffic of a delivery fleet, sent open loop, and its checks.

``fleet.py`` plans what every phone and the order system send (pure); ``run.py`` sends it on schedule and
keeps the ground truth (``whatsup loadtest``); ``fleet_run.py`` starts the pipeline's processes around a run
and ``verify.py`` checks and measures it from the records; ``bench.py`` is the ``fleet`` suite of
``whatsup bench``.
"""
