"""Gold-answer normalisation: remove what makes math-verify read a gold answer as something else.

math-verify parses the gold with the first thing it can read, so text around the formula changes what the gold
*is*. The rules, each found in the shipped data (docs/data.md has the counts):

- ``thousands_separator``: LaTeX thousands separators between digit groups, ``10,\\! 080 -> 10080``,
  ``11,\\! 111,\\! 111,\\! 100 -> 11111111100``, ``10{,}080 -> 10080``. Only the LaTeX forms: a plain comma
  (``(2,251,252)``, a triple in OlympiadBench) is left to math-verify.
- ``prose_after_formula``: a clause in words after the formula is cut, ``f(x)=a x+b, where b is an arbitrary
  integer, ... with \\mho(a)=0 -> f(x)=a x+b`` (math-verify read that gold as its last equation's right side,
  ``0``, so it accepted ``\\boxed{0}``). A clause starts at a connective (``where``, ``for``, ``with``, ``when``,
  ``if``, ``such that``) outside ``\\text{}`` and is followed by more words.
- ``trailing_punctuation``: a sentence's final ``.``, ``,``, ``;``, ``:`` and trailing LaTeX spacing,
  ``(-\\infty, 0) \\cup\\{1\\}. -> (-\\infty, 0) \\cup\\{1\\}`` (with the period math-verify parsed the gold as
  ``0``), ``\\text{(E)}, -> \\text{(E)}``. An ellipsis (``...``) stays.

Pure Python, no math-verify: the grader's workers import it.
"""

from __future__ import annotations

import re

RULES = ("thousands_separator", "prose_after_formula", "trailing_punctuation")

_THOUSANDS = re.compile(r"(?<=\d)(?:,\\!\s*|\{,\}\s*)(?=\d{3}(?!\d))")
# LaTeX groups whose content is text, not mathematics, and commands: masked before looking for words
_TEXT_GROUP = re.compile(
    r"\\(?:text|textbf|textit|textnormal|mathrm|mathbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}"
)
_TEXT_ONLY = re.compile(r"\\(?:text|textbf|textit|textnormal|mathrm|mbox)\s*\{[^{}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_CONNECTIVE = re.compile(r",?\s*\b(?:where|for|with|when|if|such\s+that)\b")
_WORD = re.compile(r"(?<![A-Za-z])[a-z]{2,}(?![A-Za-z])")
_TRAILING = re.compile(r"(?:\s|[.,;:]|\\[,;:! ]|\\q?quad)+$")


def _masked(text: str) -> str:
    """``text`` with LaTeX text groups and commands blanked out (same length, so positions carry over)."""
    out = _TEXT_GROUP.sub(lambda m: " " * len(m.group()), text)
    return _COMMAND.sub(lambda m: " " * len(m.group()), out)


def prose_words(text: str) -> list[str]:
    """Lower-case words of two or more letters outside LaTeX commands and ``\\text{}`` groups (``where``,
    ``is``, ``arbitrary``): prose, not variables."""
    return _WORD.findall(_masked(text))


def _cut_prose(text: str) -> str:
    masked = _masked(text)
    for m in _CONNECTIVE.finditer(masked):
        before, after = text[: m.start()].strip(), masked[m.end() :]
        if before and _WORD.search(after):
            return before
    return text


def _strip_trailing(text: str) -> str:
    if text.rstrip().endswith(".."):  # an ellipsis, not a full stop
        return text.strip()
    return _TRAILING.sub("", text).strip()


def explain_gold(text: str) -> tuple[str, list[str]]:
    """The normalised gold and the names of the rules that changed it, in the order applied."""
    applied = []
    out = text.strip()
    for name, rule in (
        ("thousands_separator", lambda s: _THOUSANDS.sub("", s)),
        ("prose_after_formula", _cut_prose),
        ("trailing_punctuation", _strip_trailing),
    ):
        new = rule(out)
        if new != out and new:
            applied.append(name)
            out = new
    return out, applied


def normalize_gold(text: str) -> str:
    """``text`` after every rule of the module docstring (unchanged when none applies; never empty)."""
    return explain_gold(text)[0]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def numbers(text: str) -> list[str]:
    """The numbers written in ``text``, in order (``-3``, ``2.5``; a LaTeX thousands separator joins groups)."""
    return _NUMBER.findall(_THOUSANDS.sub("", text))


def words_dropped(text: str) -> str:
    """``text`` without its prose and ``\\text{}`` groups (what is left when the words are ignored): the audit's
    probe for a gold whose mathematics alone says less than the gold does."""
    out = _TEXT_ONLY.sub(lambda m: " " * len(m.group()), text)
    masked = _masked(out)
    chars = list(out)
    for m in _WORD.finditer(masked):
        chars[m.start() : m.end()] = " " * (m.end() - m.start())
    out = re.sub(r"\s*,(\s*,)+", ",", "".join(chars))
    return re.sub(r"\s+", " ", out).strip(" ,.;:")
