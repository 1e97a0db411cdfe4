"""Pathological model outputs for the grader, generated deterministically from a seed.

``hostile(seed, i)`` is completion ``i`` of the stream of ``seed``: a ``Hostile(family, index, response,
answer)``. Families take turns (``i % len(FAMILIES)``), and each item draws its own sizes from a generator seeded
by ``(seed, i)``, so any single item can be rebuilt alone from the two numbers in a failure message.

The families are the ways a model's text (or a data set's answer) is known to hurt a verifier: power towers that
sympy tries to evaluate, nesting deep enough to exhaust a recursive parser, megabyte strings, invalid Unicode,
expressions whose expansion or factorisation explodes, thousands of boxed answers, huge factorials and numbers,
deeply nested fractions and roots, big matrices and sets, sums and integrals with astronomic bounds, and LaTeX
soup that no grammar expects.

``normal(seed, i)`` gives ordinary completions with a known reward, to interleave with the hostile ones.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MB = 1_000_000


@dataclass(frozen=True)
class Hostile:
    family: str
    index: int
    response: str
    answer: str

    def __repr__(self) -> str:  # a megabyte string must not flood a failure message
        head = self.response[:60].encode("unicode_escape", "backslashreplace").decode("ascii")
        return f"Hostile({self.family!r}, index={self.index}, len={len(self.response)}, head={head!r})"


@dataclass(frozen=True)
class Normal:
    response: str
    answer: str
    reward: float  # what math-verify must give


def _boxed(x: str) -> str:
    return "\\boxed{" + x + "}"


def _power_tower(r: random.Random) -> tuple[str, str]:
    depth = r.randint(3, 7)
    bases = [str(r.randint(2, 99)) for _ in range(depth)]
    form = r.randrange(4)
    if form == 0:  # a^{b^{c^{d}}}
        expr = bases[-1]
        for b in reversed(bases[:-1]):
            expr = f"{b}^{{{expr}}}"
    elif form == 1:  # a^b^c^d, no braces
        expr = "^".join(bases)
    elif form == 2:  # {a}^{{b}^{{c}}} with parentheses
        expr = bases[-1]
        for b in reversed(bases[:-1]):
            expr = f"({b})^{{({expr})}}"
    else:  # x^{...} tower with a symbol on top
        expr = "x"
        for b in reversed(bases):
            expr = f"{b}^{{{expr}}}"
    answer = expr if r.random() < 0.3 else str(r.randint(0, 99))  # sometimes the gold is the tower too
    return _boxed(expr), answer


def _nested_braces(r: random.Random) -> tuple[str, str]:
    n = r.choice([100, 1_000, 10_000, 50_000, 200_000])
    open_, close = r.choice([("{", "}"), ("{{", "}}"), ("\\{", "\\}"), ("{", "")])  # last: unbalanced
    inner = str(r.randint(0, 9))
    return _boxed(open_ * n + inner + close * n), inner


def _boxed_in_boxed(r: random.Random) -> tuple[str, str]:
    n = r.choice([2, 10, 100, 1_000, 5_000, 20_000])
    cmd = r.choice(["\\boxed{", "\\boxed{\\boxed{", "\\fbox{\\boxed{", "\\boxed{ \\text{answer: } \\boxed{"])
    inner = str(r.randint(0, 9))
    closing = "}" * (cmd.count("{") * n)
    if r.random() < 0.3:
        closing = closing[: len(closing) // 2]  # unbalanced
    return cmd * n + inner + closing, inner


def _megabyte(r: random.Random) -> tuple[str, str]:
    size = r.choice([MB, 2 * MB])
    kind = r.randrange(7)
    if kind == 0:
        text = "".join(r.choices(string.printable, k=size))
    elif kind == 1:
        text = _boxed("".join(r.choices(string.digits, k=size)))
    elif kind == 2:
        text = ("\\frac{1}{2} + " * (size // 14)) + _boxed("1")
    elif kind == 3:
        text = "$" * size
    elif kind == 4:
        text = _boxed("+".join(["x"] * (size // 2)))
    elif kind == 5:
        text = "Let's think step by step. " * (size // 26) + _boxed(str(r.randint(0, 9)))
    else:
        text = "".join(chr(r.randint(0x20, 0x2FFF)) for _ in range(size // 4))
    return text, str(r.randint(0, 9))


def _invalid_unicode(r: random.Random) -> tuple[str, str]:
    pieces = [
        "\ud800",  # lone high surrogate
        "\udfff",  # lone low surrogate
        "\udc80\udcff",  # surrogate-escaped bytes (what errors="surrogateescape" leaves)
        "\x00",
        "\x1b[31m",
        "\ufeff",
        "\u202e",  # right-to-left override
        "\ufffe\uffff",  # noncharacters
        "\U0010ffff",
        "\u0301" * 50,  # a heap of combining accents
        "\ufffd",
        "\x7f\x85\x9c",
    ]
    k = r.randint(1, 400)
    body = "".join(r.choice(pieces) for _ in range(k))
    digit = str(r.randint(0, 9))
    where = r.randrange(3)
    if where == 0:
        text = body + _boxed(digit)
    elif where == 1:
        text = _boxed(body + digit + body)
    else:
        text = "\\boxed{" + body
    return text, digit


def _sympy_blowup(r: random.Random) -> tuple[str, str]:
    n = r.choice([200, 500, 1_000, 3_000, 10_000])
    choices = [
        (f"(x+1)^{{{n}}}", "0"),
        (f"(x+1)^{{{n}}}", f"(1+x)^{{{n}}}"),
        ("(" + "+".join("abcdefgh"[: r.randint(3, 8)]) + f")^{{{r.randint(20, 200)}}}", "1"),
        (f"x^{{{n}}}-1", f"(x-1)(x^{{{n - 1}}}+1)"),
        ("\\prod_{k=1}^{" + str(n) + "} (x-k)", "x"),
        ("(" + ")(".join(f"x-{k}" for k in range(1, n // 10 + 2)) + ")", "x^2-1"),
        (f"\\frac{{x^{{{n}}}-1}}{{x-1}}", "1+x"),
        (f"\\sin^{{{n}}}(x)+\\cos^{{{n}}}(x)", "1"),
        (f"(\\sqrt{{2}}+\\sqrt{{3}})^{{{n}}}", "5"),
        (f"(1+\\sqrt{{2}})^{{{n}}} + (1-\\sqrt{{2}})^{{{n}}}", "2"),
        (f"x^{{{n}}} + y^{{{n}}} = z^{{{n}}}", "x=1"),
    ]
    expr, answer = r.choice(choices)
    return _boxed(expr), answer


def _many_boxed(r: random.Random) -> tuple[str, str]:
    n = r.choice([100, 1_000, 10_000, 50_000])
    sep = r.choice([" ", ", or ", "\n", "$ $"])
    values = [str(r.randint(0, 99)) for _ in range(n)]
    return sep.join(_boxed(v) for v in values), values[r.randrange(n)]


def _huge_factorial(r: random.Random) -> tuple[str, str]:
    n = r.choice(["10000", "100000", "1000000", "10^{9}", "10^{12}", "9999999999"])
    expr = r.choice(
        [
            f"{n}!",
            f"({n})!!",
            f"(({n})!)!",
            f"\\Gamma({n})",
            f"\\binom{{{n}}}{{5000}}",
            f"\\frac{{({n})!}}{{({n}-1)!}}",
            f"{n}! - {n}!",
        ]
    )
    return _boxed(expr), r.choice(["0", "1", n.replace("{", "").replace("}", "")])


def _nested_fractions(r: random.Random) -> tuple[str, str]:
    depth = r.choice([20, 100, 500, 2_000, 10_000])
    cmd = r.choice(["\\frac", "\\dfrac", "\\cfrac", "\\tfrac"])
    form = r.randrange(3)
    if form == 0:  # 1/(1/(1/...))
        expr = f"{cmd}{{1}}{{" * depth + "2" + "}" * depth
    elif form == 1:  # continued fraction 1 + 1/(1 + 1/...)
        expr = f"1+{cmd}{{1}}{{" * depth + "1" + "}" * depth
    else:  # numerators nest too
        expr = f"{cmd}{{" * depth + "1" + "}{2}" * depth
    return _boxed(expr), r.choice(["2", "\\frac{1+\\sqrt{5}}{2}", "0"])


def _deep_parens(r: random.Random) -> tuple[str, str]:
    depth = r.choice([100, 1_000, 10_000, 100_000])
    open_, close = r.choice([("(", ")"), ("\\left(", "\\right)"), ("[", "]"), ("(-", ")"), ("(", "")])
    return _boxed(open_ * depth + "1" + close * depth), "1"


def _huge_numbers(r: random.Random) -> tuple[str, str]:
    digits = r.choice([1_000, 10_000, 100_000, 500_000])
    expr = r.choice(
        [
            f"10^{{10^{{{r.randint(6, 12)}}}}}",
            "9" * digits,
            "1e" + "9" * r.randint(5, 20),
            "0." + "3" * digits,
            "9" * digits + "^{" + "9" * 50 + "}",
            f"{r.randint(2, 9)}^{{{r.randint(10**6, 10**9)}}}",
            f"{'9' * digits} \\times {'9' * digits}",
            f"\\sqrt[{r.randint(10**5, 10**9)}]{{2}}",
            f"{r.randint(2, 9)}^{{{r.randint(10**6, 10**9)}}} \\bmod {r.randint(2, 10**9)}",
        ]
    )
    return _boxed(expr), r.choice(["1", "0", "9" * 20])


def _huge_structures(r: random.Random) -> tuple[str, str]:
    n = r.choice([10, 50, 100, 300])
    kind = r.randrange(4)
    if kind == 0:
        rows = "\\\\".join("&".join(str(r.randint(-9, 9)) for _ in range(n)) for _ in range(n))
        expr = "\\det\\begin{pmatrix}" + rows + "\\end{pmatrix}"
    elif kind == 1:
        rows = "\\\\".join("&".join(f"x_{{{i}{j}}}" for j in range(n)) for i in range(n))
        expr = "\\begin{bmatrix}" + rows + "\\end{bmatrix}^{-1}"
    elif kind == 2:
        expr = "\\{" + ",".join(str(i) for i in range(n * 100)) + "\\}"
    else:
        expr = "\\cup".join(f"[{i},{i + 1})" for i in range(n * 20))
    return _boxed(expr), r.choice(["1", "\\{1,2\\}", "[0,1)"])


def _calculus(r: random.Random) -> tuple[str, str]:
    big = r.choice(["10^{12}", "10^{100}", "\\infty", "9^{9^{9}}"])
    expr = r.choice(
        [
            f"\\sum_{{k=1}}^{{{big}}} k^{{k}}",
            f"\\sum_{{k=1}}^{{{big}}} \\frac{{1}}{{k^2}}",
            f"\\int_0^{{{big}}} e^{{x^2}} \\, dx",
            f"\\int_0^{{1}} x^{{{r.randint(1000, 10**6)}}} \\ln(x)^{{{r.randint(10, 500)}}} \\, dx",
            f"\\lim_{{n\\to\\infty}} \\left(1+\\frac{{1}}{{n}}\\right)^{{n^{{{r.randint(2, 50)}}}}}",
            f"\\prod_{{k=1}}^{{{big}}} \\left(1+\\frac{{1}}{{k^2}}\\right)",
            f"\\frac{{d^{{{r.randint(50, 5000)}}}}}{{dx^{{{r.randint(50, 5000)}}}}} e^{{x^{{2}}}}",
        ]
    )
    return _boxed(expr), r.choice(["1", "e", "\\frac{\\pi^2}{6}", "\\infty"])


def _latex_soup(r: random.Random) -> tuple[str, str]:
    tokens = ["\\left(", "\\right)", "\\begin{", "\\end{", "}", "{", "$", "$$", "\\\\", "%", "&", "^", "_",
              "\\frac", "\\sqrt", "\\boxed{", "\\text{", "\\mathrm{", "\\def\\a{\\a\\a}\\a", "\\newcommand",
              "\\over", "\\choose", "\\pm", "\\infty", "\\emptyset", "\\{", "\\}", "\\|", "=", "\\neq", "\\le",
              "\\approx", ",", ";", "...", "\\ldots", "\\cdots", "\\;", "\\!", "~", "#", "\\", "'", "\"", "`"]  # fmt: skip
    n = r.choice([50, 500, 5_000, 50_000])
    return "".join(r.choice(tokens) for _ in range(n)), str(r.randint(0, 9))


def _nested_roots_exps(r: random.Random) -> tuple[str, str]:
    depth = r.choice([50, 300, 2_000, 10_000])
    wrap = r.choice(
        [("\\sqrt{", "}"), ("e^{", "}"), ("\\log(", ")"), ("\\sin(", ")"), ("2^{", "}"), ("\\sqrt[3]{", "}")]
    )
    return _boxed(wrap[0] * depth + "2" + wrap[1] * depth), r.choice(["2", "1", "0"])


def _repeated_operators(r: random.Random) -> tuple[str, str]:
    n = r.choice([1_000, 10_000, 100_000])
    op = r.choice(["-", "+", "!", "'", "^", "\\cdot", "\\times", "=", "1+", "x*", "x^x"])
    expr = op * n + "1" if r.random() < 0.5 else "1" + op * n
    return _boxed(expr), "1"


def _hostile_gold(r: random.Random) -> tuple[str, str]:
    """A bad *gold* answer (a data set's, not the model's): the gold is parsed first, so it must be bounded too."""
    response = _boxed(str(r.randint(0, 9)))
    gen = r.choice([_power_tower, _nested_fractions, _huge_factorial, _deep_parens])
    bad, _ = gen(r)
    return response, bad[len("\\boxed{") : -1] if bad.startswith("\\boxed{") else bad


FAMILIES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "power_tower": _power_tower,
    "nested_braces": _nested_braces,
    "boxed_in_boxed": _boxed_in_boxed,
    "megabyte": _megabyte,
    "invalid_unicode": _invalid_unicode,
    "sympy_blowup": _sympy_blowup,
    "many_boxed": _many_boxed,
    "huge_factorial": _huge_factorial,
    "nested_fractions": _nested_fractions,
    "deep_parens": _deep_parens,
    "huge_numbers": _huge_numbers,
    "huge_structures": _huge_structures,
    "calculus": _calculus,
    "latex_soup": _latex_soup,
    "nested_roots_exps": _nested_roots_exps,
    "repeated_operators": _repeated_operators,
    "hostile_gold": _hostile_gold,
}
NAMES = tuple(FAMILIES)


def hostile(seed: int, i: int) -> Hostile:
    """Completion ``i`` of the hostile stream of ``seed`` (family ``NAMES[i % len(NAMES)]``)."""
    family = NAMES[i % len(NAMES)]
    response, answer = FAMILIES[family](random.Random(f"hostile-{seed}-{i}"))
    return Hostile(family, i, response, answer)


def hostile_stream(seed: int, n: int, start: int = 0) -> Iterator[Hostile]:
    """``n`` hostile completions, generated one at a time (megabyte items are not all held at once)."""
    for i in range(start, start + n):
        yield hostile(seed, i)


def normal(seed: int, i: int) -> Normal:
    """An ordinary completion whose reward is known: right (1.0) or wrong (0.0), in a few written forms.

    Values are drawn from a large range so that a fresh pair is rarely in the grader's cache: the worker that
    just survived a hostile input has to grade it."""
    r = random.Random(f"normal-{seed}-{i}")
    a, b = r.randint(2, 10**6), r.randint(2, 999)
    right = r.random() < 0.5
    form = r.randrange(4)
    if form == 0:
        gold, shown = str(a), str(a if right else a + 1)
    elif form == 1:
        gold, shown = f"{a}/{b}", f"\\frac{{{a}}}{{{b}}}" if right else f"\\frac{{{a + 1}}}{{{b}}}"
    elif form == 2:
        gold, shown = f"{-a}", f"{-a}" if right else f"{a}"
    else:
        gold, shown = f"{a}.5", f"{a}.50" if right else f"{a}.25"
    text = f"Step 1: compute. Step 2: simplify.\nThe answer is $\\boxed{{{shown}}}$."
    return Normal(text, gold, 1.0 if right else 0.0)
