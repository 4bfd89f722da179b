"""Dev-only RabbitMQ nodes of our own, beside the machine's shared broker (tests, bench, demos).

Not shipped: the wheel packages only ``common``, ``dispatcher`` and ``executor``.
"""
