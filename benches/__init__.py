"""Benchmarks of the pipeline on the local stack: ``python -m benches`` (``make bench``, ``whatsup bench``).

One module per suite, in the order of the data flow: ``pings``, ``fleet``, ``fleet_split``, ``quality``,
``sender``, ``sink``, ``webhooks``, ``telemetry``; ``harness`` holds what they share and ``report`` writes
their sections of docs/BENCHMARKS.md. A development tool: no product module imports it, and it is not
part of the installed pipeline.
"""
