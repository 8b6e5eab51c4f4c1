"""Bad input at scale: hypothesis strategies of malformed requests and records, what sends and judges them.

``json_inputs.py`` breaks JSON bodies (wrong types, NaN, duplicate keys, invalid UTF-8, 200,000-deep
nesting, oversized ...); ``avro_inputs.py`` breaks Avro records (truncated, bit-flipped, unknown writer
fingerprints, extreme values); ``endpoints.py`` turns them into the requests of each HTTP endpoint;
``drive.py`` draws N inputs outside pytest, sends them and tallies the answers; ``records.py`` produces
records onto topics and reads an agent's counters; ``stack.py`` starts the processes they are sent to.
The ``fuzz`` benchmark suite and the CI tests (``tests/unit/test_fuzz_decoders.py``,
``tests/integration/test_fuzz_endpoints.py``) share all of it.
"""
