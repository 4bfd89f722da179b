"""The dashboard in process, over the API tests' real SQLite store and fake broker."""

from tests.unit.dispatcher.api.conftest import broker, clock, dispatcher  # noqa: F401 (fixtures)
