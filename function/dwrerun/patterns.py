r"""Patterns whose matching time can explode: the failure rules' load refuses them (rules.py).

Python's `re` backtracks. A pattern can make it try exponentially many ways to split one run of
characters (`(a+)+$`: twice the time per extra `a`), or a polynomial number (`\w+\w+x`: n^3 on a
line of n word characters). The loader refuses both kinds, by the pattern's shape, read from
re's own parser (so it sees exactly what re compiles):
  1. an unbounded repetition (`*`, `+`, `{n,}`) inside another one, when the inner one's
     characters can also start the outer one's body again: `(a+)+`, `(\w+\s?)*`;
  2. a repetition of variable count (`?`, `{1,3}`) inside an unbounded one, on the same terms:
     `(a?)+`;
  3. alternatives under an unbounded repetition that can start with the same character, or an
     empty one beside one that can start the repetition again: `(\d|\w\w)*`, `(a|aa)+`;
  4. two unbounded repetitions one after the other that can take the same characters, with
     nothing between them that only the second could start with: `\w+\w+`, `.*: .*`.
It errs on the side of refusing (`(\w+,)*` is refused though a comma ends every turn), and
what it accepts is at worst quadratic per line for one search: an unbounded repetition tried
from every position of a line. rules.match bounds that too, by the length of what it searches.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

try:  # Python 3.11+ moved the parser; 3.10 has only sre_parse (a deprecated name on 3.11+)
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - python3.10
    import sre_parse as _sre  # type: ignore[no-redef]

_c = _sre  # the opcode names live on the parser module in both versions
_UNBOUNDED = _sre.MAXREPEAT
# The characters a class can take, as a set over Latin-1 plus two non-Latin samples (a CJK
# ideograph and the ideographic space), plus every character the pattern names (a literal, a
# range's ends, in both cases): enough to tell whether two items overlap, since two ranges overlap
# only if one holds an end of the other, and `.`, `\w` or `[一-龥]` must hold the `误` beside them.
_UNIVERSE = frozenset(range(256)) | {0x4E00, 0x3000}
_universe: ContextVar[frozenset[int]] = ContextVar("_universe", default=_UNIVERSE)
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT} if hasattr(_c, "POSSESSIVE_REPEAT") else set())


def explosive(pattern: str, flags: int = 0) -> str | None:
    """Why matching `pattern` can take exponential or cubic time, or None. See the note above."""
    parsed = _sre.parse(pattern, flags)
    ignore_case = bool(parsed.state.flags & re.IGNORECASE)
    token = _universe.set(_UNIVERSE | _named(parsed))
    try:
        return _check_sequence(list(parsed), ignore_case)
    finally:
        _universe.reset(token)


def _named(items) -> frozenset[int]:
    """Every character the pattern names, in both cases: its literals and its ranges' ends."""
    codes: set[int] = set()
    for op, av in items:
        if op in (_c.LITERAL, _c.NOT_LITERAL):
            codes.add(av)
        elif op is _c.RANGE:
            codes.update(av)
        elif op is _c.IN:
            codes |= _named(av)
        elif op in _REPEATS:
            codes |= _named(av[2])
        elif op is _c.SUBPATTERN:
            codes |= _named(av[-1])
        elif op is _c.BRANCH:
            for branch in av[1]:
                codes |= _named(branch)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            codes |= _named(av[1])
        elif getattr(_c, "ATOMIC_GROUP", None) is op:
            codes |= _named(av)
    return frozenset(c for code in codes for c in _literal(code, True))


def _category(name: str) -> frozenset[int]:
    test = {
        "CATEGORY_DIGIT": lambda ch: ch.isdecimal(),
        "CATEGORY_WORD": lambda ch: ch.isalnum() or ch == "_",
        "CATEGORY_SPACE": lambda ch: ch.isspace(),
        "CATEGORY_LINEBREAK": lambda ch: ch == "\n",
    }
    negate = name.startswith("CATEGORY_NOT_")
    base = test.get(name.replace("CATEGORY_NOT_", "CATEGORY_"))
    universe = _universe.get()
    if base is None:
        return universe
    chars = frozenset(c for c in universe if base(chr(c)))
    return universe - chars if negate else chars


def _literal(code: int, ignore_case: bool) -> frozenset[int]:
    char = chr(code)
    if not ignore_case:
        return frozenset({code})
    return frozenset({code, ord(char.lower()[0]), ord(char.upper()[0])})


def _class(items, ignore_case: bool) -> frozenset[int]:
    chars, negate, universe = set(), False, _universe.get()
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars |= _literal(av, ignore_case)
        elif op is _c.RANGE:
            low, high = av
            chars |= {c for c in universe if low <= c <= high}
            if ignore_case:
                chars |= {ord(chr(c).swapcase()[0]) for c in range(low, min(high, 0x24F) + 1)}
        elif op is _c.CATEGORY:
            chars |= _category(str(av))
        else:  # a class op this walk does not know: take it to match anything
            chars |= universe
    return universe - chars if negate else frozenset(chars)


def _shape(items, ignore_case: bool):
    """(characters it can start with, can it match nothing, characters it can take, has an unbounded
    repeat, characters an unbounded repeat at its end can still take)."""
    first, nullable, taken, unbounded, trail = set(), True, set(), False, set()
    for op, av in items:
        f, n, t, u, tr = _shape_one(op, av, ignore_case)
        if nullable:
            first |= f
            nullable = n
        taken |= t
        unbounded = unbounded or u
        trail = (trail | tr) if n else set(tr)
    return frozenset(first), nullable, frozenset(taken), unbounded, frozenset(trail)


_NONE: frozenset[int] = frozenset()


def _scoped(av, ignore_case: bool) -> bool:
    """Whether a group's items ignore case: `(?i:...)` turns it on inside, `(?-i:...)` off."""
    _group, add_flags, del_flags, _items = av
    if add_flags & re.IGNORECASE:
        return True
    return ignore_case and not del_flags & re.IGNORECASE


def _shape_one(op, av, ignore_case: bool):
    universe = _universe.get()
    if op is _c.LITERAL:
        chars = _literal(av, ignore_case)
        return chars, False, chars, False, _NONE
    if op is _c.NOT_LITERAL:
        chars = universe - _literal(av, ignore_case)
        return chars, False, chars, False, _NONE
    if op is _c.ANY:
        return universe, False, universe, False, _NONE
    if op is _c.IN:
        chars = _class(av, ignore_case)
        return chars, False, chars, False, _NONE
    if op in _REPEATS:
        low, high, body = av
        f, n, t, u, tr = _shape(body, ignore_case)
        if high == _UNBOUNDED:
            return f, n or low == 0, t, True, t
        return f, n or low == 0, t, u, tr
    if op is _c.SUBPATTERN:
        return _shape(av[-1], _scoped(av, ignore_case))
    if op is _c.BRANCH:
        shapes = [_shape(branch, ignore_case) for branch in av[1]]
        return (
            frozenset().union(*(s[0] for s in shapes)),
            any(s[1] for s in shapes),
            frozenset().union(*(s[2] for s in shapes)),
            any(s[3] for s in shapes),
            frozenset().union(*(s[4] for s in shapes)),
        )
    if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
        return _NONE, True, _NONE, False, _NONE
    if getattr(_c, "ATOMIC_GROUP", None) is op:
        return _shape(av, ignore_case)
    # A back reference, a conditional group: what it takes is unknown, so anything.
    return universe, True, universe, False, _NONE


def _check_sequence(items, ignore_case: bool) -> str | None:
    """Rule 4 along one sequence, and rules 1-3 inside each of its items."""
    running = _NONE  # what an unbounded repeat before this item may still be taking
    for op, av in items:
        inner = _check_inside(op, av, ignore_case)
        if inner:
            return inner
        first, nullable, _, unbounded, trail = _shape_one(op, av, ignore_case)
        if unbounded and first & running:
            return "two unbounded repetitions that can match the same characters follow each other"
        if nullable or first & running:
            running = running | trail  # the earlier repeat may take this item's characters too
        else:
            running = trail  # a character the earlier repeat cannot take ends it: one way to split
    return None


def _check_inside(op, av, ignore_case: bool) -> str | None:
    if op in _REPEATS:
        low, high, body = av
        if high == _UNBOUNDED:
            why = _inside_unbounded(list(body), _shape(body, ignore_case)[0], ignore_case)
            if why:
                return why
        return _check_sequence(list(body), ignore_case)
    if op is _c.SUBPATTERN:
        return _check_sequence(list(av[-1]), _scoped(av, ignore_case))
    if op is _c.BRANCH:
        return next((why for branch in av[1] if (why := _check_sequence(list(branch), ignore_case))), None)
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return _check_sequence(list(av[1]), ignore_case)
    if getattr(_c, "ATOMIC_GROUP", None) is op:
        return _check_sequence(list(av), ignore_case)
    return None


def _inside_unbounded(items, outer_first: frozenset[int], ignore_case: bool) -> str | None:
    """Rules 1-3 for the body of an unbounded repeat that starts with `outer_first`."""
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            taken = _shape(body, ignore_case)[2]
            if taken & outer_first:
                if high == _UNBOUNDED:
                    return "nested unbounded repetition (an unbounded repetition inside another)"
                if low != high:
                    return "a repetition of variable count inside an unbounded repetition"
            why = _inside_unbounded(list(body), outer_first, ignore_case)
        elif op is _c.BRANCH:
            # re factors a common prefix out (`a|aa` is `a(?:|a)`): an empty alternative next to one
            # that can start the repetition again is two ways to split a run too.
            shapes = [_shape(branch, ignore_case) for branch in av[1]]
            for i, (first, nullable, *_) in enumerate(shapes):
                for other, other_nullable, *_ in shapes[i + 1 :]:
                    if first & other or (nullable and other & outer_first) or (other_nullable and first & outer_first):
                        return "alternatives that can match the same characters, inside an unbounded repetition"
            why = next((w for b in av[1] if (w := _inside_unbounded(list(b), outer_first, ignore_case))), None)
        elif op is _c.SUBPATTERN:
            why = _inside_unbounded(list(av[-1]), outer_first, _scoped(av, ignore_case))
        else:
            why = None
        if why:
            return why
    return None
