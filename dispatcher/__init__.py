"""The dispatcher service: records tasks, publishes them, and records their outcomes."""
