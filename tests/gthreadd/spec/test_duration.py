from datetime import timedelta

import pytest

from gthreadd.spec.duration import format_duration, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5), ("0s", 0),
])
def test_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "5", "5 minutes", "m5", "1h 30m", "-5s", 5, None])
def test_rejects(bad):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("text", ["30s", "5m", "1h", "1h30m", "500ms", "1m1.5s", "0s"])
def test_round_trip(text):
    assert format_duration(parse_duration(text)) == text
