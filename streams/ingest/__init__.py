"""The intake edge: phones, the order system and WhatsApp providers hand records to Kafka here.

``whatsup ingest`` serves ``POST /v1/pings``, ``POST /v1/deliveries/events`` and the WhatsApp webhooks in a
process of its own, holding no state and consuming nothing: any number of them run side by side (sharing a
port with SO_REUSEPORT, or behind a load balancer), and ingestion stays up while workers rebalance or
restart. Each request is answered once its records are acknowledged by the broker (acks=all), never after
any stream processing. The handlers here know no web framework: they take a request's headers and body and
return a ``Reply``, which ``server.py`` (aiohttp) and the worker's Faust views (``streams/web``) both serve.
"""
