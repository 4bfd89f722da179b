"""The store's activity figures: what finished lately, bucket by bucket (any dialect)."""

from __future__ import annotations

from datetime import datetime, timedelta

from dispatcher.store.records import ActivityBucket
from dispatcher.store.sql.tasks import SqlConcern


class SqlActivity(SqlConcern):
    """Throughput, failures and run-time percentiles over time, for the dashboard."""

    def activity(self, since: datetime, bucket: timedelta, buckets: int) -> list[ActivityBucket]:
        """``buckets`` buckets of ``bucket`` from ``since``, oldest first, empty ones too."""
        params = {"since": since, "bucket_s": bucket.total_seconds()}
        found = {int(row["bucket"]): row for row in self._db.read(self._q.activity, params)}
        filled = []
        for n in range(buckets):
            row = found.get(n)
            filled.append(
                ActivityBucket(
                    start=since + n * bucket,
                    succeeded=int(row["succeeded"]) if row else 0,
                    failed=int(row["failed"]) if row else 0,
                    p50_s=_seconds(row["p50"]) if row else None,
                    p95_s=_seconds(row["p95"]) if row else None,
                )
            )
        return filled


def _seconds(value: object) -> float | None:
    return None if value is None else max(0.0, float(value))  # type: ignore[arg-type]
