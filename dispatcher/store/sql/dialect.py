"""The seam between the store's logic and a SQL database: what each dialect implements.

The logic (``dispatcher.store.sql``) is written once over this seam; a dialect
(``dispatcher.store.sqlite``, ``dispatcher.store.postgres``) implements it with its driver:

- ``queries``: its SQL, one statement per ``Queries`` field;
- ``read`` and ``write``: run statements outside or inside one transaction, the write durably
  (waiting for the disk) or not, holding whatever lock makes the first writer win;
- parameters by name and value: a parameter named after a column in
  ``dispatcher.store.rows.JSON_COLUMNS`` holds JSON, a list is a list parameter (for ``IN``),
  a ``datetime`` an instant, and None is NULL; each dialect encodes them for its columns and
  decodes the rows it returns back to plain values (``UUID``, aware ``datetime``, JSON);
- ``reported``: what executors report made storable (PostgreSQL cannot store NUL in text).

Driver errors come out as ``StoreError``; the transaction is then rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from common import JsonValue
from dispatcher.store.sql.queries import Queries

_T = TypeVar("_T")

Params = Mapping[str, Any]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ran:
    """What one statement did: the rows it returned (decoded) and the rows it changed."""

    rowcount: int
    rows: list[Row] = field(default_factory=list)


class Transaction(Protocol):
    """Statements inside one write transaction."""

    def run(self, sql: str, params: Params) -> Ran:
        """Run one statement."""

    def run_many(self, sql: str, params: Sequence[Params]) -> None:
        """Run one statement per parameter set, returning nothing."""

    def run_each(self, sql: str, params: Sequence[Params]) -> list[bool]:
        """Run one statement per parameter set, in order; whether each returned a row.

        The statement returns the rows it changed (``RETURNING``), so that the answer says
        which changed anything; the dialect may send them all at once (a pipeline).
        """


class Dialect(Protocol):
    """One SQL database, shared by threads: what the store's logic runs on."""

    @property
    def queries(self) -> Queries:
        """This dialect's statements."""

    def read(self, sql: str, params: Params) -> list[Row]:
        """The rows one statement returns, outside a write transaction."""

    def write(self, work: Callable[[Transaction], _T], *, durable: bool = True) -> _T:
        """Run ``work`` in one write transaction and commit it; the value ``work`` returned.

        ``durable=False`` commits without waiting for the disk: only for what a crash may lose
        because it is recovered (a newer heartbeat or progress report replaces it, and a lost
        ``queued`` mark leaves the task to the outbox; docs/reliability.md). Later durable
        commits make it durable too.
        """

    def reported(self, value: JsonValue) -> JsonValue:
        """``value``, from an executor, made storable in any text or JSON column."""

    def reclaim_space(self) -> None:
        """Return a bounded share of the space deleted rows left to the file system."""

    def ping(self) -> None:
        """Reach the database (reconnecting if need be); ``StoreError`` when it cannot."""

    def close(self) -> None:
        """Close the connection."""
