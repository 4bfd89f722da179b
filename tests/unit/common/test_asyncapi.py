"""docs/asyncapi.json is what ``common.asyncapi`` builds from the wire models, and consistent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import Topology
from common.asyncapi import asyncapi_document

DOC = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_committed_document_matches_the_models() -> None:
    # On failure: python -m common.asyncapi > docs/asyncapi.json (and mention it in the
    # protocol's changes: a wire model changed).
    assert json.loads(DOC.read_text()) == asyncapi_document()


def test_every_reference_resolves() -> None:
    document = asyncapi_document()
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part]


def test_the_task_payload_is_the_body_producers_send() -> None:
    task = asyncapi_document()["components"]["messages"]["Task"]["payload"]

    assert set(task["required"]) == {"task_id", "task_type", "submitted_at"}
    assert "queue" not in task["properties"]  # the routing key says it, never the body


def test_names_follow_the_prefix() -> None:
    channels = asyncapi_document(Topology(prefix="acme"))["channels"]

    assert set(channels) == {
        "acme.tasks",
        "acme.results",
        "acme.executors",
        "acme.progress",
        "acme.verdicts.{executor}.{suffix}",
        "acme.cancellations",
    }
