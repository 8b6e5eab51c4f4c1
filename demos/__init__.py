"""The demo: ``python -m demos`` (``make demo``, ``whatsup demo``) tells the story on a running stack.

``run`` holds the story; one module per step, in the order shown: ``ingest`` (the API's refusals),
``pings`` (a simulated fleet and its verdicts), ``deliveries``, ``whatsapp_inbound``, ``sender``,
``telemetry``, ``sink``, ``console``, ``twilio_fallback``; ``harness`` holds what the WhatsApp steps share. A
development tool: no product module imports it, and it is not part of the installed pipeline.
"""
