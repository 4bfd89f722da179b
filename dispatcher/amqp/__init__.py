"""The dispatcher's AMQP adapters (aio-pika): publishing, consuming, dead letters, depths."""
