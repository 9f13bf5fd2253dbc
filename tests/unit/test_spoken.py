"""The spoken-output contract: whole-reply extraction, its streaming twin, and sentence splitting."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall.agent.spoken import (
    HOLD_CHARS,
    SPOKEN_CONTRACT,
    SpokenStream,
    collapse_whitespace,
    extract_spoken,
)
from voicecall.speech.sentences import SentenceSplitter


def stream_all(chunks: list[str]) -> str:
    stream = SpokenStream()
    return "".join(stream.feed(c) for c in chunks) + stream.finish()


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(text)]:
        pieces.append(text[last:p])
        last = p
    return pieces


def split_sentences(chunks: list[str], *, min_chars: int = 1) -> list[str]:
    splitter = SentenceSplitter(min_chars=min_chars)
    out: list[str] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.flush()


# -- extract_spoken ------------------------------------------------------------------------------
@pytest.mark.parametrize(("reply", "expected"), [
    ('{"spoken": "Hello there. How can I help?"}', "Hello there. How can I help?"),
    ('  {\n  "spoken": "Line one.\\nLine two."\n}\n', "Line one. Line two."),
    ('```json\n{"spoken": "From a fence."}\n```', "From a fence."),
    ('```\n{"spoken": "Bare fence."}\n```', "Bare fence."),
    ('Sure! Here it is: {"spoken": "Embedded reply."} Hope that helps.', "Embedded reply."),
    ('{"thought": "be nice", "spoken": "Extra keys are ignored."}', "Extra keys are ignored."),
    ('oops "spoken": "Inline \\"quoted\\" text" and a broken {brace', 'Inline "quoted" text'),
    ('{"spoken": "Caf\\u00e9 \\ud83d\\ude00"}', "Café 😀"),
    ('{"spoken": ""}', ""),
    ('{"spoken": null}', ""),
    ('{"text": "A text field instead."}', "A text field instead."),
    ('```json\n{"answer": 42}\n```', ""),
    ('{"spoken": "   "}', ""),
])
def test_extract_spoken_reads_the_json_field(reply: str, expected: str) -> None:
    assert extract_spoken(reply) == expected


@pytest.mark.parametrize(("reply", "expected"), [
    ("Just a plain answer.", "Just a plain answer."),
    ("First paragraph.\n\nSecond   paragraph\nwith a break.",
     "First paragraph. Second paragraph with a break."),
    ("Thinking Process:\n1. Greet the caller.\n2. Offer help.\n\nHello! How can I help?",
     "Hello! How can I help?"),
    ("**Reasoning:** the caller is upset.\n\nI'm sorry to hear that.", "I'm sorry to hear that."),
    ("Analysis: short reply needed.\n\nSure, one moment.", "Sure, one moment."),
    ("The user asked for the time. I should answer briefly.\n\nIt is three o'clock.", "It is three o'clock."),
    ("This is a natural continuation of the conversation.\n\nGreat, see you then!", "Great, see you then!"),
    ("I will keep the conversation flowing.\n\nWhat else can I do?", "What else can I do?"),
    ("```\nfenced plain text\n```", "fenced plain text"),
    ("The user is right. That is a good point.", "The user is right. That is a good point."),
    ("Hello!\n\nThinking process: kept, because it is not leading.",
     "Hello! Thinking process: kept, because it is not leading."),
    ("", ""),
])
def test_extract_spoken_falls_back_to_text_without_meta_paragraphs(reply: str, expected: str) -> None:
    assert extract_spoken(reply) == expected


def test_the_contract_asks_for_json_spoken_only() -> None:
    assert '{"spoken": ""}' in SPOKEN_CONTRACT
    assert "JSON" in SPOKEN_CONTRACT and "markdown" in SPOKEN_CONTRACT


# -- SpokenStream --------------------------------------------------------------------------------
def _shape(value: str, shape: str, extra: str, ascii_only: bool, indent: int | None) -> str:
    if shape == "extra-before":
        body = json.dumps({"mood": extra, "spoken": value}, ensure_ascii=ascii_only, indent=indent)
    elif shape == "extra-after":
        body = json.dumps({"spoken": value, "mood": extra}, ensure_ascii=ascii_only, indent=indent)
    else:
        body = json.dumps({"spoken": value}, ensure_ascii=ascii_only, indent=indent)
    if shape == "fenced":
        return f"```json\n{body}\n```\n"
    if shape == "fenced-bare":
        return f"  ```\n{body}```"
    if shape == "leading-space":
        return f" \n\t{body}\n"
    if shape == "embedded":
        return f"Here you go: {body} Anything else?"
    return body


@settings(max_examples=200, deadline=None)
@given(value=st.text(),
       shape=st.sampled_from(["plain", "extra-before", "extra-after", "fenced", "fenced-bare",
                              "leading-space", "embedded"]),
       extra=st.text(max_size=20), ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_spoken_stream_matches_extract_spoken_for_every_chunking(
        value: str, shape: str, extra: str, ascii_only: bool, indent: int | None, cuts: list[int]) -> None:
    reply = _shape(value, shape, extra, ascii_only, indent)
    expected = collapse_whitespace(value)
    assert extract_spoken(reply) == expected
    assert stream_all(split_at(reply, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(paragraphs=st.lists(st.text(alphabet="abc ABC.,!?'", min_size=1, max_size=60), min_size=1, max_size=4),
       meta=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_spoken_stream_matches_extract_spoken_for_plain_text(paragraphs: list[str], meta: bool,
                                                             cuts: list[int]) -> None:
    reply = "\n\n".join(paragraphs)
    if meta:
        reply = "Thinking process: plan the answer.\n\n" + reply
    assert stream_all(split_at(reply, cuts)) == extract_spoken(reply)


def test_escapes_split_across_chunks_decode_correctly() -> None:
    reply = (r'{"spoken": "Tab\there, quote \"q\", slash \\ and \/, caf\u00e9, '
             r'emoji \ud83d\ude00, line\nend."}')
    expected = collapse_whitespace(json.loads(reply)["spoken"])
    assert stream_all(list(reply)) == expected  # one character at a time
    for cut in range(len(reply) + 1):
        assert stream_all([reply[:cut], reply[cut:]]) == expected


def test_stream_yields_spoken_text_while_it_is_still_arriving() -> None:
    stream = SpokenStream()
    assert stream.feed('{"spo') == ""
    assert stream.feed('ken": "Hello') == "Hello"
    assert stream.feed(" there") == " there"
    assert stream.feed('. Bye."}') == ". Bye."
    assert stream.feed(' trailing junk "spoken": "no"') == ""
    assert stream.finish() == ""


def test_stream_collapses_whitespace_without_a_trailing_space() -> None:
    stream = SpokenStream()
    parts = [stream.feed('{"spoken": "  one \\n\\n'), stream.feed(" two   "), stream.feed('  "}')]
    assert "".join(parts) + stream.finish() == "one two"
    assert parts[0] == "one"


def test_stream_falls_back_when_json_has_no_spoken_value() -> None:
    assert stream_all(['{"answer": ', '"no spoken key"}']) == "no spoken key"
    assert stream_all(['{"spoken": nu', "ll}"]) == ""
    assert stream_all(["{not json at all"]) == "{not json at all"


def test_stream_drops_a_leading_meta_paragraph_before_passing_text_through() -> None:
    stream = SpokenStream()
    out = stream.feed("Thinking process: the caller wants")
    out += stream.feed(" the time.\n\n")
    assert out == ""
    out += stream.feed("It is noon. ")
    out += stream.feed("Anything else?")
    assert out + stream.finish() == "It is noon. Anything else?"


def test_stream_releases_plain_text_after_the_hold_back_window() -> None:
    stream = SpokenStream()
    first = stream.feed("word " * (HOLD_CHARS // 5 + 1))
    assert first.startswith("word word")  # released without waiting for the end
    assert stream.feed("more") == " more"


def test_stream_drops_a_long_meta_paragraph_entirely() -> None:
    meta = "Reasoning: " + "the caller asked something long " * 10
    reply = meta + "\n\nHere is the answer."
    assert stream_all(list(reply)) == "Here is the answer." == extract_spoken(reply)


def test_stream_finish_is_idempotent_and_feed_after_finish_fails() -> None:
    stream = SpokenStream()
    stream.feed('{"spoken": "x"}')
    assert stream.finish() == ""
    assert stream.finish() == ""
    with pytest.raises(RuntimeError):
        stream.feed("more")


# -- SentenceSplitter ----------------------------------------------------------------------------
def test_sentences_end_at_terminators_followed_by_space() -> None:
    assert split_sentences(["Hello there. How are you? Great! Bye"]) == [
        "Hello there.", "How are you?", "Great!", "Bye"]


def test_a_sentence_is_returned_as_soon_as_it_is_known_to_have_ended() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there.") == []  # could still be "there.com"
    assert splitter.feed(" How") == ["Hello there."]
    assert splitter.feed(" are you?") == []
    assert splitter.flush() == ["How are you?"]


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    text = ("Dr. Smith and Mrs. Jones met J. R. Doe, e.g. at the U.S. office vs. the U.K. one. "
            "They left at 5 p.m. Then they slept.")
    assert split_sentences([text]) == [
        "Dr. Smith and Mrs. Jones met J. R. Doe, e.g. at the U.S. office vs. the U.K. one.",
        "They left at 5 p.m.", "Then they slept."]


def test_etc_ends_a_sentence_only_before_a_capital() -> None:
    assert split_sentences(["Apples, pears, etc. are fine. Bring wine, beer, etc. Then come."]) == [
        "Apples, pears, etc. are fine.", "Bring wine, beer, etc.", "Then come."]


def test_decimals_numbers_and_urls_do_not_split() -> None:
    text = "It costs 3.5 dollars at example.com today. Room No. 5 is free. I have 5. You 6."
    assert split_sentences([text]) == [
        "It costs 3.5 dollars at example.com today.", "Room No. 5 is free.", "I have 5.", "You 6."]


def test_ellipsis_quotes_and_brackets() -> None:
    text = 'Well... I think so. He said "stop." Then he left (quietly.) So… Done?!  Yes.'
    assert split_sentences([text]) == [
        "Well...", "I think so.", 'He said "stop."', "Then he left (quietly.)", "So…", "Done?!", "Yes."]


def test_newlines_end_sentences_and_empty_ones_are_dropped() -> None:
    assert split_sentences(["Options\n\n  one\ntwo: three\n"]) == ["Options", "one", "two: three"]


def test_cjk_terminators_end_sentences_without_a_space() -> None:
    text = "こんにちは。元気ですか？はい！「引用です。」次"  # noqa: RUF001
    assert split_sentences([text]) == ["こんにちは。", "元気ですか？", "はい！", "「引用です。」", "次"]  # noqa: RUF001


def test_flush_returns_the_unterminated_rest_and_resets() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("One. Two") == ["One."]
    assert splitter.flush() == ["Two"]
    assert splitter.flush() == []
    assert splitter.feed("Again. ") == ["Again."]


def test_min_chars_merges_short_fragments_into_the_next_sentence() -> None:
    assert split_sentences(["Hi. Ok. This is longer. Yes."], min_chars=10) == [
        "Hi. Ok. This is longer.", "Yes."]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab .!?\n…。3Dr\"'", max_size=80),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_splitting_does_not_depend_on_chunking(text: str, cuts: list[int]) -> None:
    whole = split_sentences([text])
    assert split_sentences(split_at(text, cuts)) == whole
    assert "".join("".join(whole).split()) == "".join(text.split())  # nothing lost but whitespace
