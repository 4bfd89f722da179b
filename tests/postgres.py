"""Test-side PostgreSQL access with plain psycopg: reachability, one fresh schema per test."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from uuid import uuid4

import psycopg
from psycopg import sql

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
START_HINT = (
    "Start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start` (database `test`,\n"
    "trust auth for 127.0.0.1), or point WQ_TEST_POSTGRES_URL at a server. Integration tests\n"
    "never skip."
)


def with_params(url: str, **params: str) -> str:
    """``url`` with libpq query parameters added (``options``, ``application_name``)."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), *params.items()], quote_via=quote)
    return urlunsplit(parts._replace(query=query))


class IsolatedSchema:
    """A schema of its own for one test, reached through ``url``; ``drop`` removes it."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self.name = f"wq_test_{uuid4().hex[:12]}"
        # The schema first in search_path is where the store creates its tables; the
        # application name lets teardown find connections a test left open.
        self.url = self.url_with_options()
        with self.connect(admin=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.name)))

    def url_with_options(self, *settings: str) -> str:
        """The schema's URL, with more server settings (``"statement_timeout=1s"``) if given."""
        options = " ".join(f"-c{setting}" for setting in (f"search_path={self.name}", *settings))
        return with_params(self._admin_url, options=options, application_name=self.name)

    def connect(self, *, admin: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
        """A plain autocommit connection, in this schema unless ``admin``."""
        return psycopg.connect(self._admin_url if admin else self.url, autocommit=True)

    def drop(self) -> None:
        """Close what is still connected to the schema, then drop it with everything in it."""
        with self.connect(admin=True) as db:
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            db.execute("SET lock_timeout = '10s'")
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.name)))
