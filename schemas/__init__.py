"""Avro schemas of every topic value (``*.avsc``, committed versions in ``history/``) and their codecs."""
