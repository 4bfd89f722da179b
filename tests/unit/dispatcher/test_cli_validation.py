"""``dispatcher submit`` checks a request as the HTTP and Python APIs do, before connecting."""

from __future__ import annotations

import pytest

from common import exit_codes as codes
from dispatcher.cli.main import main


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """main() configures logging for the process; the next tests get theirs back."""


@pytest.mark.parametrize(
    ("option", "field"),
    [
        (["--countdown", "-5"], "countdown"),
        (["--countdown", "inf"], "countdown"),
        (["--countdown", "nan"], "countdown"),
        (["--countdown", "1e300"], "countdown"),
        (["--idempotency-key", ""], "idempotency_key"),
        (["--priority", "256"], "priority"),
        (["--eta", "9999-12-31T23:00:00-05:00"], "eta"),
    ],
)
def test_an_out_of_range_option_exits_2_naming_the_field(
    option: list[str],
    field: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens here: an answer that needed the broker would be exit 69, not 2.
    monkeypatch.setenv("WQ_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")

    code = main(["submit", "word_count", "--params", '{"text": "a"}', *option])

    err = capsys.readouterr().err
    assert code == codes.USAGE, err
    assert f"dispatcher: {field}: " in err
    assert "Traceback" not in err


def test_an_out_of_range_priority_says_the_range_once(capsys: pytest.CaptureFixture[str]) -> None:
    main(["submit", "word_count", "--priority", "300"])

    err = capsys.readouterr().err
    assert "less than or equal to 255" in err
    assert "254" not in err  # not the 256 allowed values one by one
