"""Benchmarks of the work-queue pair against raw AMQP clients, Celery and Dramatiq."""
