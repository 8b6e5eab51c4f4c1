"""The dispatcher console: the live fleet, incidents and deliveries on one page, and the API behind it.

``whatsup console`` is a process of its own. It reads every driver's state from the ``driver_state``
changelog (compacted, so a new process gets the whole fleet at once), the ``alerts`` topic and the
dispatchers' actions on ``alerts.actions``, keeps them in memory, and answers fleet-wide queries, pushes new
alerts to open pages, and serves the page and its sign-in.
"""
