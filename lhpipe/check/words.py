"""Wording shared by the checker's messages.

:func:`a` puts the right indefinite article before a word that is only known at run time (a
type, a declaration kind, a LittleHorse object): "an `int`", "a `string`", "an
`ExternalEventDef` name". The article follows how the word is said, not how it is spelled:
initialisms are read letter by letter ("an `HTTP` header", "a `URL`"), and the few words
that start with a vowel letter but a consonant sound ("a `uuid`", "a `union`") take "a".
"""

from __future__ import annotations

import re

# Letters whose names start with a vowel sound: "an F", "an H", "an S".
_VOWEL_SOUNDING_LETTERS = frozenset("AEFHILMNORSX")
# Starts of words said with a "you" or "w" sound although they begin with a vowel letter.
_CONSONANT_SOUND = ("uu", "uni", "use", "usa", "usu", "uri", "url", "eu", "one", "once")
_WORD = re.compile(r"[A-Za-z0-9_]+")


def article(text: str) -> str:
    """``a`` or ``an`` for ``text``, which may start with backticks or quotes."""
    shown = text.lstrip("`\"'")
    if shown.startswith(("[", "{")):
        return "an"  # said "an array", "an object"
    match = _WORD.match(shown)
    if match is None:
        return "a"
    word = match.group()
    if len(word) > 1 and word[:2].isupper():
        return "an" if word[0] in _VOWEL_SOUNDING_LETTERS else "a"
    lower = word.lower()
    if lower.startswith(_CONSONANT_SOUND):
        return "a"
    return "an" if lower[0] in "aeiou" else "a"


def a(text: str) -> str:
    """``text`` with its indefinite article: ``a("`int`")`` is "an `int`"."""
    return f"{article(text)} {text}"
