"""The executor service: runs tasks from RabbitMQ and reports their results."""
