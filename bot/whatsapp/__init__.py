"""The WhatsApp Cloud API channel: webhook in, engine, rendered messages out.

``webhook`` receives signed updates, ``channel`` turns them into engine events
and sends the replies that ``render`` fitted into WhatsApp's limits, ``api`` is
the thin HTTP client, ``window`` tracks the 24-hour customer-service window, and
``sender`` delivers broadcasts and reminders (template or free-form per recipient).
"""
