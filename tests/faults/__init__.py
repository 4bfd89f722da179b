"""Fault tests: a private RabbitMQ node and a TCP proxy, never the shared broker."""
