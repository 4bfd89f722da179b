"""The dispatcher's AMQP adapters, on common.pika_link: publish, consume, dead letters, depths."""
