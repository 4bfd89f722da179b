"""The README's commands work as printed once its set-up has run.

``./scripts/demo`` installs the two console scripts into ``.venv/bin``; the "Using it" block
must put them on ``PATH`` before its first use of them, and every command in it must be one
that the command lines accept.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path
from uuid import uuid4

import pytest

from dispatcher.cli.main import build_parser as dispatcher_parser
from executor.cli import build_parser as executor_parser
from tests.conftest import REPO

ACTIVATE = "source .venv/bin/activate"


def _section_commands(markdown: str, heading: str) -> list[str]:
    """The shell commands of the first ``bash`` block under ``heading``, continuations joined."""
    section = markdown.split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, heading
    joined = block.group(1).replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def _words(line: str) -> list[str]:
    """The command's words without its trailing comment; ``$id`` stands for a task id."""
    words = shlex.split(line, comments=True)
    task_id = str(uuid4())
    return [w.replace("$id", task_id) for w in words]


def _program(words: list[str]) -> tuple[str, list[str]]:
    """``id=$(dispatcher submit ...)`` runs ``dispatcher submit ...``."""
    if words[0].startswith("id=$("):
        words = [words[0].removeprefix("id=$("), *words[1:]]
        words[-1] = words[-1].removesuffix(")")
    return words[0], words[1:]


README_COMMANDS = _section_commands((REPO / "README.md").read_text(), "## Using it")


def test_the_using_it_block_activates_the_venv_before_any_command() -> None:
    assert README_COMMANDS[0].split("#")[0].strip() == ACTIVATE
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    # What activating provides: the console scripts beside this interpreter, in .venv/bin.
    bin_dir = Path(sys.executable).parent
    for name in ("executor", "dispatcher"):
        assert name in scripts
        assert (bin_dir / name).exists(), f"{name} is not installed next to {sys.executable}"


@pytest.mark.parametrize("line", README_COMMANDS[1:])
def test_every_using_it_command_is_accepted_as_printed(line: str) -> None:
    program, argv = _program(_words(line))
    parsers = {"executor": executor_parser, "dispatcher": dispatcher_parser}
    if program == "curl":
        assert "localhost:8080/tasks" in argv
        return
    assert program in parsers, line

    parsers[program]().parse_args(argv)  # exits 2 on anything it does not accept


def test_the_operations_guide_says_how_the_commands_get_on_path() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    processes = operations.split("## Processes\n", 1)[1].split("\n## ", 1)[0]

    assert ACTIVATE in processes
    assert ".venv/bin" in processes
