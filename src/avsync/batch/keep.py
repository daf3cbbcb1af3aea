"""``--keep EXPR``: a small, safe filter language over result fields (no ``eval`` of user text).

    reliable and abs(offset_ms) <= 40
    not error and (confidence >= 3 or duration_s > 60)
    method == "avcorr" and -2 <= offset_frames   # a comparison takes two operands only

Grammar (precedence low to high): ``or``, ``and``, ``not``, one comparison
(``< <= > >= == !=``), ``+ -``, unary ``-``, atoms: numbers, "strings", ``true false null``,
field names (a missing field is null), ``abs(x)``, ``min(x, y)``, ``max(x, y)``, ``( ... )``.
Any comparison involving null is false; a bare field is true when truthy.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from avsync.errors import AvsyncError

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|(?P<str>\"[^\"]*\"|'[^']*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op><=|>=|==|!=|<|>|\(|\)|,|\+|-))")
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_FUNCS: dict[str, tuple[int, Callable[..., Any]]] = {"abs": (1, abs), "min": (2, min), "max": (2, max)}
_CONST = {"true": True, "false": False, "null": None}

Node = Callable[[dict], Any]


class KeepExpressionError(AvsyncError):
    """The --keep expression does not parse."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise KeepExpressionError(f"--keep: cannot read {text[pos:].strip()[:20]!r} "
                                      f"(at character {pos + 1})")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.names: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            found = tok[1] or "the end"
            raise KeepExpressionError(f"--keep: expected {value!r} but found {found!r} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise KeepExpressionError("--keep: the expression is empty")
        node = self.or_()
        if self.peek()[0] != "end":
            raise KeepExpressionError(f"--keep: unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == ("name", "or"):
            self.take()
            left, right = node, self.and_()
            node = lambda r, a=left, b=right: bool(a(r)) or bool(b(r))  # noqa: E731
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.peek() == ("name", "and"):
            self.take()
            left, right = node, self.not_()
            node = lambda r, a=left, b=right: bool(a(r)) and bool(b(r))  # noqa: E731
        return node

    def not_(self) -> Node:
        if self.peek() == ("name", "not"):
            self.take()
            inner = self.not_()
            return lambda r: not inner(r)
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum_()
        if self.peek()[1] in _CMP:
            fn = _CMP[self.take()[1]]
            right = self.sum_()
            return lambda r: _compare(fn, left(r), right(r))
        return left

    def sum_(self) -> Node:
        node = self.unary()
        while self.peek()[1] in ("+", "-"):
            fn = operator.add if self.take()[1] == "+" else operator.sub
            left, right = node, self.unary()
            node = lambda r, a=left, b=right, f=fn: _arith(f, a(r), b(r))  # noqa: E731
        return node

    def unary(self) -> Node:
        if self.peek()[1] == "-":
            self.take()
            inner = self.unary()
            return lambda r: _arith(operator.sub, 0, inner(r))
        return self.atom()

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            number = float(value)
            return lambda r: number
        if kind == "str":
            text = value[1:-1]
            return lambda r: text
        if kind == "op" and value == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "name" and value in _CONST:
            const = _CONST[value]
            return lambda r: const
        if kind == "name" and value in ("and", "or", "not"):
            raise KeepExpressionError(f"--keep: {value!r} needs an operand before it in {self.text!r}")
        if kind == "name" and self.peek()[1] == "(":
            return self.call(value)
        if kind == "name":
            self.names.add(value)
            return lambda r: r.get(value)
        raise KeepExpressionError(f"--keep: unexpected {value or 'end'!r} in {self.text!r}")

    def call(self, name: str) -> Node:
        if name not in _FUNCS:
            raise KeepExpressionError(f"--keep: unknown function {name!r} (known: {', '.join(_FUNCS)})")
        arity, fn = _FUNCS[name]
        self.take("(")
        args = [self.sum_()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.sum_())
        self.take(")")
        if len(args) != arity:
            raise KeepExpressionError(f"--keep: {name}() takes {arity} argument(s), got {len(args)}")
        return lambda r: _apply(fn, [a(r) for a in args])


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _compare(fn: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if _number(a) != _number(b) and fn not in (operator.eq, operator.ne):
        return False
    return bool(fn(a, b))


def _arith(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return fn(a, b) if _number(a) and _number(b) else None


def _apply(fn: Callable[..., Any], args: list[Any]) -> Any:
    return fn(*args) if all(_number(a) for a in args) else None


class KeepFilter:
    """A parsed ``--keep`` expression: ``KeepFilter(text)(row) -> bool``; ``names`` are the fields
    it reads."""

    def __init__(self, text: str) -> None:
        parser = _Parser(text)
        self._node = parser.parse()
        self.text = text
        self.names = frozenset(parser.names)

    def __call__(self, row: dict) -> bool:
        return bool(self._node(row))

    def check_fields(self, known: frozenset[str] | set[str]) -> None:
        """Raise when the expression names a field outside ``known`` (a typo)."""
        unknown = sorted(self.names - set(known))
        if unknown:
            raise KeepExpressionError(f"--keep: unknown field(s) {', '.join(unknown)} "
                                      f"(fields: {', '.join(sorted(known))})")
