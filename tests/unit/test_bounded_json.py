"""The bounded JSON parser used for everything untrusted peers send (D62)."""

from __future__ import annotations

import pytest

from voicecall.shared.bounded_json import JsonRefused, exceeds_depth, loads


def test_nesting_up_to_the_budget_parses_and_deeper_is_refused_as_a_value_error() -> None:
    assert loads("[" * 64 + "]" * 64, max_depth=64) is not None
    with pytest.raises(JsonRefused, match="deeper than 64"):
        loads("[" * 65 + "]" * 65, max_depth=64)
    with pytest.raises(ValueError):
        loads(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def test_brackets_inside_strings_and_escaped_quotes_do_not_count_as_nesting() -> None:
    text = '{"a": "' + "[" * 500 + '\\"' + "{" * 500 + '", "b": [1]}'
    assert loads(text, max_depth=2)["b"] == [1]
    assert not exceeds_depth(text.encode(), 2)
    assert exceeds_depth(b'[[["x"]]]', 2)


def test_nan_and_infinity_are_not_json_numbers() -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(JsonRefused, match="not a JSON number"):
            loads(f'{{"id": {constant}}}')


def test_text_over_the_size_budget_is_refused_before_parsing() -> None:
    with pytest.raises(JsonRefused, match="over 10 bytes"):
        loads(b'"' + b"x" * 20 + b'"', max_bytes=10)
    assert loads("\"é\"", max_bytes=4) == "é"
