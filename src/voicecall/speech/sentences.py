"""Cut streaming text into sentences as soon as each one is complete, so speech can start early."""

from __future__ import annotations

import re

# Written as escapes: ellipsis, the CJK full stop / exclamation / question marks; closing quotes and brackets.
CJK_TERMINATORS = "\u3002\uff01\uff1f"
TERMINATORS = ".!?\u2026" + CJK_TERMINATORS
CLOSERS = "\"')]\u201d\u2019\u300d\u300f\uff09\u00bb"
_OPENERS = "\"'([{\u201c\u2018\u00ab\u00bf\u00a1"
# A run of terminators with any closing quotes/brackets after it, or a newline.
_BOUNDARY = re.compile(f"[{re.escape(TERMINATORS)}]+[{re.escape(CLOSERS)}]*|\n")
_CJK_TERMINATORS = frozenset(CJK_TERMINATORS)
_WORD_BEFORE = re.compile(r"(\S+)$")
# Abbreviations after which a single "." never ends a sentence.
_NEVER_END = frozenset({
    "dr", "mr", "mrs", "ms", "mx", "prof", "st", "mt", "ft", "gen", "gov", "sen", "rep", "capt", "col",
    "lt", "sgt", "cmdr", "rev", "hon", "fr", "pres", "vs", "cf", "approx", "dept", "est", "fig", "figs",
    "vol", "pp", "ca", "al", "ave", "blvd", "rd", "apt", "tel", "ext", "min", "max", "mins", "hrs",
})
# Abbreviations that may also end a sentence: they do when the next word is capitalised.
_MAY_END = frozenset({"etc", "inc", "ltd", "co", "corp", "jr", "sr", "bros", "llc", "plc", "a.m", "p.m"})
_DOTTED = re.compile(r"(?:\w\.)+\w", re.UNICODE)
_NUMBER_WORDS = frozenset({"no", "nos", "nr"})


def _strip_leading_punct(word: str) -> str:
    return word.lstrip(_OPENERS)


class SentenceSplitter:
    """Feed text as it streams in; get back each sentence once it has ended.

    A sentence ends at `.`, `!`, `?` or `…` followed by whitespace (so "3.5" and "example.com" do
    not split), right after the CJK full-width terminators, or at a newline. A single `.` after a
    known abbreviation ("Dr.", "e.g.", "U.S.") or an initial ("J.") does not end a sentence; after
    "etc.", "Inc." or "p.m." it does when the next word is capitalised. Sentences come back
    stripped, empty ones are dropped, and a sentence shorter than `min_chars` is merged into the
    next one.
    """

    def __init__(self, *, min_chars: int = 1) -> None:
        self.min_chars = max(1, min_chars)
        self._buf = ""
        self._pos = 0  # every boundary candidate before this index is known not to be one
        self._carry = ""

    def feed(self, text: str) -> list[str]:
        """Add text; return the sentences it completed."""
        self._buf += text
        return self._split(final=False)

    def pause(self) -> list[str]:
        """The input has paused: a terminator at the very end of the text now counts as an ending.

        For message-sized sources (a function yielding sentences, server-sent events) that may go
        quiet right after a full stop; abbreviations still do not end a sentence.
        """
        return self._split(final=False, paused=True)

    @property
    def pending(self) -> bool:
        """Whether text is held back (an unfinished sentence, or one waiting for the next character)."""
        return bool(self._buf.strip())

    def flush(self) -> list[str]:
        """The text has ended: return the rest (the last sentence, possibly unterminated)."""
        out = self._split(final=True)
        self._emit(self._buf, out)
        self._buf, self._pos = "", 0
        if self._carry:
            out.append(self._carry)
            self._carry = ""
        return out

    def _emit(self, sentence: str, out: list[str]) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        if self._carry:
            sentence = f"{self._carry} {sentence}"
            self._carry = ""
        if len(sentence) < self.min_chars:
            self._carry = sentence
            return
        out.append(sentence)

    def _split(self, *, final: bool, paused: bool = False) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._next_cut(final, paused)
            if cut is None:
                return out
            self._emit(self._buf[:cut], out)
            self._buf = self._buf[cut:]
            self._pos = 0

    def _next_cut(self, final: bool, paused: bool = False) -> int | None:
        """Where the first complete sentence ends, or None if there is none (yet)."""
        buf = self._buf
        for match in _BOUNDARY.finditer(buf, self._pos):
            if match.group() == "\n":
                return match.end()
            end = match.end()
            run = match.group().rstrip(CLOSERS)
            if end == len(buf):
                if final:
                    return end
                if paused and (run != "." or self._after_period(buf, match.start(), end, True)):
                    return end
                self._pos = match.start()  # the next character decides
                return None
            if run[-1] in _CJK_TERMINATORS:
                return end
            if not buf[end].isspace():
                continue  # "3.5", "example.com", "?!x"
            if run != ".":
                return end
            verdict = self._after_period(buf, match.start(), end, final)
            if verdict is None:
                self._pos = match.start()
                return None
            if verdict:
                return end
        self._pos = len(buf)
        return None

    @staticmethod
    def _after_period(buf: str, dot: int, end: int, final: bool) -> bool | None:
        """Whether a "." followed by whitespace ends the sentence; None while the next word is unknown."""
        found = _WORD_BEFORE.search(buf, 0, dot)
        word = _strip_leading_punct(found.group(1)) if found else ""
        lowered = word.lower()
        if not word or word.isdigit():
            return True
        if len(word) == 1 and word.isalpha():
            return False  # an initial: "J. Smith"
        if lowered in _NEVER_END:
            return False
        if _DOTTED.fullmatch(word) is not None and lowered not in _MAY_END:
            return False  # e.g, i.e, U.S, U.K
        if lowered not in _MAY_END and lowered not in _NUMBER_WORDS:
            return True
        rest = buf[end:].lstrip()
        if not rest:
            return True if final else None
        if lowered in _NUMBER_WORDS:
            return not rest[0].isdigit()  # "No. 5"
        return rest[0].isupper()
