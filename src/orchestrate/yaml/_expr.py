"""A small, safe expression language for rules, loop exits and map sources.

``score > 0.95``, ``intent == "refund" and not urgent``, ``len(items) >= 3``,
``"refund" in lower(message)``, ``0.5 <= confidence < 0.8``. Expressions are parsed
once, when a definition is loaded, into a tree that is walked to evaluate; nothing is
ever handed to ``eval``, no attribute starting with ``_`` is reachable and only the
functions listed in :data:`FUNCTIONS` can be called. See ``docs/yaml.md`` for the
language; the grammar, loosest binding first::

    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") sum)*
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | postfix
    postfix := primary ("." NAME | "[" or "]")*
    primary := NUMBER | STRING | true | false | null | NAME | NAME "(" args ")" | "(" or ")" | "[" args "]"
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrate.errors import DefinitionError, OrchestrateError

MAX_LENGTH = 2000
"""Longest expression text accepted."""

MAX_DEPTH = 50
"""Deepest nesting of an expression's tree (parentheses, operators, calls)."""


class ExpressionError(DefinitionError):
    """An expression does not parse, or calls a function it may not.

    Attributes:
        expression: the text.
        column: 1-based column of the problem within the text.
        reason: the problem, without the text and the column.
    """

    def __init__(self, expression: str, column: int, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.reason = reason
        super().__init__(f"expression {expression!r}: {reason} (column {column})")


class EvaluationError(OrchestrateError):
    """An expression met a value it cannot work on (``"abc" > 1``, a field of a number...)."""


# tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%|\(|\)|\[|\]|,|\.)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_HINTS = {
    "&&": "use 'and'",
    "||": "use 'or'",
    "!": "use 'not' (or '!=')",
    "=": "use '==' to compare",
    "&": "use 'and'",
    "|": "use 'or'",
    "**": "powers are not part of the language",
}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, op, end
    text: str
    column: int  # 1-based
    value: Any = None


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            two = text[position : position + 2]
            hint = _HINTS.get(two) or _HINTS.get(text[position])
            quote = text[position] in "\"'"
            reason = (
                "a string that is never closed"
                if quote
                else f"unexpected character {text[position]!r}" + (f"; {hint}" if hint else "")
            )
            raise ExpressionError(text, position + 1, reason)
        kind = match.lastgroup or ""
        token = match.group()
        if token == "*" and text[position : position + 2] == "**":
            raise ExpressionError(text, position + 1, f"unexpected {text[position : position + 2]!r}; {_HINTS['**']}")
        if kind == "number":
            number = float(token) if any(c in token for c in ".eE") else int(token)
            found.append(_Token("number", token, position + 1, number))
        elif kind == "string":
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), token[1:-1])
            found.append(_Token("string", token, position + 1, body))
        elif kind != "space":
            found.append(_Token(kind, token, position + 1))
        position = match.end()
    found.append(_Token("end", "", len(text) + 1))
    return found


# the tree --------------------------------------------------------------------------------


class _Node:
    """A node of a parsed expression."""

    def evaluate(self, scope: _Scope) -> Any:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class _Literal(_Node):
    value: Any

    def evaluate(self, scope: _Scope) -> Any:
        return self.value

    def text(self) -> str:
        if self.value is None:
            return "null"
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str):
            return '"' + self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        return repr(self.value)


@dataclass(frozen=True)
class _Name(_Node):
    name: str

    def evaluate(self, scope: _Scope) -> Any:
        if self.name == "value":
            return scope.value
        return _field(scope.value, self.name, "the value")

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class _List(_Node):
    items: tuple[_Node, ...]

    def evaluate(self, scope: _Scope) -> Any:
        return [item.evaluate(scope) for item in self.items]

    def text(self) -> str:
        return "[" + ", ".join(item.text() for item in self.items) + "]"


@dataclass(frozen=True)
class _Attribute(_Node):
    target: _Node
    name: str

    def evaluate(self, scope: _Scope) -> Any:
        return _field(self.target.evaluate(scope), self.name, self.target.text())

    def text(self) -> str:
        return f"{_wrap(self.target, self)}.{self.name}"


@dataclass(frozen=True)
class _Index(_Node):
    target: _Node
    index: _Node

    def evaluate(self, scope: _Scope) -> Any:
        container = self.target.evaluate(scope)
        key = self.index.evaluate(scope)
        if container is None or _is_missing(container):
            return None
        if isinstance(container, Mapping):
            return container.get(key)
        if isinstance(container, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
            return container[key] if -len(container) <= key < len(container) else None
        raise EvaluationError(
            f"{self.text()}: cannot index {_kind(container)} {self.target.text()} with {_kind(key)} {key!r}"
        )

    def text(self) -> str:
        return f"{_wrap(self.target, self)}[{self.index.text()}]"


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]

    def evaluate(self, scope: _Scope) -> Any:
        values = [arg.evaluate(scope) for arg in self.args]
        function = FUNCTIONS[self.name]
        try:
            return function.fn(*values)
        except EvaluationError:
            raise
        except (TypeError, ValueError) as exc:
            shown = ", ".join(f"{_kind(v)} {v!r}" for v in values)
            raise EvaluationError(f"{self.text()}: {self.name}() cannot take {shown} ({exc})") from None

    def text(self) -> str:
        return f"{self.name}(" + ", ".join(arg.text() for arg in self.args) + ")"


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, scope: _Scope) -> Any:
        return not _truth(self.operand.evaluate(scope))

    def text(self) -> str:
        return f"not {_wrap(self.operand, self)}"


@dataclass(frozen=True)
class _Negative(_Node):
    operand: _Node

    def evaluate(self, scope: _Scope) -> Any:
        number = self.operand.evaluate(scope)
        if not _is_number(number):
            raise EvaluationError(f"{self.text()}: cannot negate {_kind(number)} {number!r}")
        return -number

    def text(self) -> str:
        return f"-{_wrap(self.operand, self)}"


@dataclass(frozen=True)
class _Logic(_Node):
    op: str  # "and" / "or"
    operands: tuple[_Node, ...]

    def evaluate(self, scope: _Scope) -> Any:
        for operand in self.operands:
            truth = _truth(operand.evaluate(scope))
            if truth is (self.op == "or"):
                return truth
        return self.op == "and"

    def text(self) -> str:
        return f" {self.op} ".join(_wrap(o, self) for o in self.operands)


@dataclass(frozen=True)
class _Compare(_Node):
    first: _Node
    rest: tuple[tuple[str, _Node], ...]

    def evaluate(self, scope: _Scope) -> Any:
        left = self.first.evaluate(scope)
        left_text = self.first.text()
        for op, node in self.rest:
            right = node.evaluate(scope)
            if not _compare(op, left, right, f"{left_text} {op} {node.text()}"):
                return False
            left, left_text = right, node.text()
        return True

    def text(self) -> str:
        return " ".join([_wrap(self.first, self), *(f"{op} {_wrap(node, self)}" for op, node in self.rest)])


@dataclass(frozen=True)
class _Arithmetic(_Node):
    op: str
    left: _Node
    right: _Node

    def evaluate(self, scope: _Scope) -> Any:
        left, right = self.left.evaluate(scope), self.right.evaluate(scope)
        if not (_is_number(left) and _is_number(right)):
            raise EvaluationError(
                f"{self.text()}: arithmetic needs numbers, got {_kind(left)} {left!r} and {_kind(right)} {right!r}"
            )
        if self.op in "/%" and right == 0:
            raise EvaluationError(f"{self.text()}: division by zero")
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right}.get(
            self.op, lambda: left / right if self.op == "/" else left % right
        )()
        if isinstance(result, float) and not math.isfinite(result):
            raise EvaluationError(f"{self.text()}: the result is not a finite number")
        return result

    def text(self) -> str:
        return f"{_wrap(self.left, self)} {self.op} {_wrap(self.right, self, right=True)}"


_PRECEDENCE = {_Logic: 1, _Not: 3, _Compare: 4, _Arithmetic: 5, _Negative: 7}


def _rank(node: _Node) -> int:
    if isinstance(node, _Logic):
        return 1 if node.op == "or" else 2
    if isinstance(node, _Arithmetic):
        return 5 if node.op in "+-" else 6
    return _PRECEDENCE.get(type(node), 9)


def _wrap(child: _Node, parent: _Node, *, right: bool = False) -> str:
    """The child's text, in parentheses when the parent binds tighter (canonical text)."""
    inner, outer = _rank(child), _rank(parent)
    needs = inner < outer or (right and inner == outer) or (isinstance(parent, _Compare) and inner == outer)
    return f"({child.text()})" if needs else child.text()


# evaluation helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    value: Any


def _is_missing(value: Any) -> bool:
    return type(value).__name__ == "_Missing"  # orchestrate.MISSING: a skipped step's output


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _truth(value: Any) -> bool:
    return bool(value)


def _field(container: Any, name: str, where: str) -> Any:
    """``container.name``: a mapping's key, a dataclass's or pydantic model's field; null when absent."""
    if container is None or _is_missing(container):
        return None
    if isinstance(container, Mapping):
        return container.get(name)
    if dataclasses.is_dataclass(container) and not isinstance(container, type):
        names = {f.name for f in dataclasses.fields(container)}
        return getattr(container, name) if name in names else None
    model_fields = getattr(type(container), "model_fields", None)
    if isinstance(model_fields, Mapping):
        return getattr(container, name) if name in model_fields else None
    raise EvaluationError(
        f"{where} is {_kind(container)} ({container!r:.60}), which has no field {name!r}"
        + ("; compare the value itself with 'value'" if where == "the value" else "")
    )


def _compare(op: str, left: Any, right: Any, text: str) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in ("in", "not in"):
        if isinstance(right, str):
            if not isinstance(left, str):
                raise EvaluationError(f"{text}: 'in' a string needs a string on the left, got {_kind(left)} {left!r}")
            found = left in right
        elif isinstance(right, list | tuple | Mapping):
            found = left in right
        else:
            raise EvaluationError(f"{text}: 'in' needs a string, a list or a mapping on the right, got {_kind(right)}")
        return found if op == "in" else not found
    if (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str)):
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    raise EvaluationError(
        f"{text}: cannot order {_shown(left)} and {_shown(right)}; '<', '<=', '>', '>=' compare two numbers "
        "or two strings"
    )


def _shown(value: Any) -> str:
    return "null" if value is None else f"{_kind(value)} ({value!r:.40})"


@dataclass(frozen=True)
class Function:
    """A function expressions may call."""

    fn: Callable[..., Any]
    min_args: int
    max_args: int
    doc: str


def _length(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise TypeError("len() takes a string, a list or a mapping")


def _text(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(value: Any, *args: Any) -> Any:
        if not isinstance(value, str) or not all(isinstance(a, str) for a in args):
            raise TypeError("strings expected")
        return fn(value, *args)

    return apply


def _numbers(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
        if not items or not all(_is_number(i) for i in items):
            raise TypeError("numbers expected")
        return fn(*items)

    return apply


def _round(value: Any, digits: Any = 0) -> Any:
    if not _is_number(value) or not isinstance(digits, int) or isinstance(digits, bool):
        raise TypeError("a number and a whole number of digits expected")
    return round(value, digits)


def _abs(value: Any) -> Any:
    if not _is_number(value):
        raise TypeError("a number expected")
    return abs(value)


FUNCTIONS: dict[str, Function] = {
    "len": Function(_length, 1, 1, "length of a string, list or mapping"),
    "lower": Function(_text(str.lower), 1, 1, "a string in lower case"),
    "upper": Function(_text(str.upper), 1, 1, "a string in upper case"),
    "startswith": Function(_text(str.startswith), 2, 2, "whether a string starts with another"),
    "endswith": Function(_text(str.endswith), 2, 2, "whether a string ends with another"),
    "abs": Function(_abs, 1, 1, "absolute value of a number"),
    "min": Function(_numbers(min), 1, 99, "the smallest of numbers (or of a list)"),
    "max": Function(_numbers(max), 1, 99, "the largest of numbers (or of a list)"),
    "round": Function(_round, 1, 2, "a number rounded to some digits (default 0)"),
}
"""The functions expressions may call, by name."""


# the parser --------------------------------------------------------------------------------

_COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, reason: str, token: _Token | None = None) -> ExpressionError:
        return ExpressionError(self.text, (token or self.token).column, reason)

    def take(self) -> _Token:
        token = self.token
        self.i += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.token
        return token.kind == kind and (text is None or token.text == text)

    def expect(self, text: str, what: str) -> None:
        if not self.at("op", text):
            raise self.fail(f"expected {text!r} {what}, found {self._shown()}")
        self.take()

    def _shown(self) -> str:
        return "the end" if self.token.kind == "end" else repr(self.token.text)

    def parse(self) -> _Node:
        if self.token.kind == "end":
            raise self.fail("the expression is empty")
        node = self.or_()
        if self.token.kind != "end":
            hint = ""
            if self.at("op", "=") or self.token.text == "=":
                hint = "; use '==' to compare"
            elif self.at("name") and self.token.text not in _KEYWORDS:
                hint = "; join conditions with 'and' / 'or'"
            raise self.fail(f"unexpected {self._shown()} after a complete expression{hint}")
        return node

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the expression is nested more than {MAX_DEPTH} levels deep")

    def or_(self) -> _Node:
        return self.logic("or", self.and_)

    def and_(self) -> _Node:
        return self.logic("and", self.not_)

    def logic(self, word: str, operand: Callable[[], _Node]) -> _Node:
        items = [operand()]
        while self.at("name", word):
            self.take()
            items.append(self.operand_after(word, operand))
        return items[0] if len(items) == 1 else _Logic(word, tuple(items))

    def operand_after(self, op: str, operand: Callable[[], _Node]) -> _Node:
        if self.token.kind == "end":
            raise self.fail(f"expected a value after {op!r}, found the end")
        return operand()

    def not_(self) -> _Node:
        if self.at("name", "not"):
            self.take()
            self.nested()
            node = _Not(self.operand_after("not", self.not_))
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> _Node:
        first = self.sum()
        rest: list[tuple[str, _Node]] = []
        while True:
            if self.token.kind == "op" and self.token.text in _COMPARE_OPS:
                op = self.take().text
            elif self.at("name", "in"):
                self.take()
                op = "in"
            elif (
                self.at("name", "not")
                and self.tokens[self.i + 1].kind == "name"
                and self.tokens[self.i + 1].text == "in"
            ):
                self.i += 2
                op = "not in"
            else:
                break
            rest.append((op, self.operand_after(op, self.sum)))
        return _Compare(first, tuple(rest)) if rest else first

    def sum(self) -> _Node:
        node = self.product()
        chain = 0
        while self.token.kind == "op" and self.token.text in "+-":
            chain = self.chained(chain)
            op = self.take().text
            node = _Arithmetic(op, node, self.operand_after(op, self.product))
        return node

    def product(self) -> _Node:
        node = self.unary()
        chain = 0
        while self.token.kind == "op" and self.token.text in ("*", "/", "%"):
            chain = self.chained(chain)
            op = self.take().text
            node = _Arithmetic(op, node, self.operand_after(op, self.unary))
        return node

    def chained(self, count: int) -> int:
        # Each operator of a chain nests the tree one level deeper (a + b + c is (a + b) + c).
        if count >= MAX_DEPTH:
            raise self.fail(f"more than {MAX_DEPTH} operators in a row; split the expression")
        return count + 1

    def unary(self) -> _Node:
        if self.at("op", "-"):
            self.take()
            self.nested()
            operand = self.operand_after("-", self.unary)
            self.depth -= 1
            if isinstance(operand, _Literal) and _is_number(operand.value):
                return _Literal(-operand.value)
            return _Negative(operand)
        return self.postfix()

    def postfix(self) -> _Node:
        node = self.primary()
        while True:
            if self.at("op", "."):
                self.take()
                if not self.at("name") or self.token.text in _KEYWORDS:
                    raise self.fail(f"expected a field name after '.', found {self._shown()}")
                name = self.take()
                if name.text.startswith("_"):
                    raise self.fail(f"fields starting with '_' are not reachable: {name.text!r}", name)
                node = _Attribute(node, name.text)
            elif self.at("op", "["):
                self.take()
                self.nested()
                index = self.or_()
                self.depth -= 1
                self.expect("]", "to close the index")
                node = _Index(node, index)
            else:
                return node

    def primary(self) -> _Node:
        token = self.token
        if token.kind in ("number", "string"):
            self.take()
            return _Literal(token.value)
        if token.kind == "name":
            self.take()
            if token.text in ("true", "True"):
                return _Literal(True)
            if token.text in ("false", "False"):
                return _Literal(False)
            if token.text in ("null", "None"):
                return _Literal(None)
            if token.text in _KEYWORDS:
                raise self.fail(f"expected a value, found {token.text!r}", token)
            if token.text.startswith("_"):
                raise self.fail(f"names starting with '_' are not reachable: {token.text!r}", token)
            if self.at("op", "("):
                return self.call(token)
            return _Name(token.text)
        if self.at("op", "("):
            self.take()
            self.nested()
            node = self.or_()
            self.depth -= 1
            self.expect(")", "to close the parenthesis")
            return node
        if self.at("op", "["):
            self.take()
            self.nested()
            items = self.arguments("]")
            self.depth -= 1
            return _List(tuple(items))
        if token.kind == "end":
            raise self.fail("expected a value, found the end")
        raise self.fail(f"expected a value, found {token.text!r}")

    def arguments(self, closing: str) -> list[_Node]:
        items: list[_Node] = []
        if self.at("op", closing):
            self.take()
            return items
        while True:
            items.append(self.or_())
            if self.at("op", ","):
                self.take()
                continue
            self.expect(closing, "after the items" if closing == "]" else "after the arguments")
            return items

    def call(self, name: _Token) -> _Node:
        function = FUNCTIONS.get(name.text)
        if function is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.fail(f"unknown function {name.text!r}; the functions are {known}", name)
        self.take()  # "("
        self.nested()
        args = self.arguments(")")
        self.depth -= 1
        if not function.min_args <= len(args) <= function.max_args:
            wanted = (
                str(function.min_args)
                if function.min_args == function.max_args
                else f"{function.min_args} to {function.max_args}"
            )
            raise self.fail(f"{name.text}() takes {wanted} argument(s), got {len(args)}", name)
        return _Call(name.text, tuple(args))


def _parse(text: str) -> _Node:
    if not isinstance(text, str):
        raise DefinitionError(f"an expression must be a string, got {text!r}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(text[:40] + "...", 1, f"longer than {MAX_LENGTH} characters")
    return _Parser(text).parse()


class Expression:
    """A parsed expression: call it with a value to evaluate it.

    ``Expression("score > 0.95")(value)``. Names are fields of the value (a mapping, a
    dataclass or a pydantic model); a field that is absent is ``null``; ``value`` is
    the value itself (``value > 0.95`` when the value is a number). Use it wherever the
    Python API takes a predicate or a function of a value: ``Branch`` rules,
    ``Loop(until=...)``, ``Map(over=...)``, ``Tier(when=...)``. An expression's version
    fingerprint is its canonical text, so a YAML definition and its Python twin built
    with the same expressions have the same version.

    Args:
        text: the expression.

    Raises:
        ExpressionError: the text does not parse, names an unknown function or gives a
            function the wrong number of arguments (a :class:`DefinitionError`).
    """

    # Pinned to the public module: the name is part of every version fingerprint that
    # describes an expression, so moving the implementation must not change versions.
    __module__ = "orchestrate.yaml"

    def __init__(self, text: str) -> None:
        tree = _parse(text)
        self._tree = tree
        self.source = text
        self.text = tree.text()
        # Version fingerprints describe a callable by its source, and fall back to its
        # module and qualified name for objects: the canonical text names this one.
        self.__qualname__ = f"Expression({self.text!r})"

    def __call__(self, value: Any) -> Any:
        """Evaluate on ``value``.

        Raises:
            EvaluationError: a value the expression cannot work on (``"abc" > 1``).
        """
        return self._tree.evaluate(_Scope(value))

    @property
    def path(self) -> tuple[str, ...] | None:
        """The field path when the expression is only that (``a.b`` → ``("a", "b")``), else ``None``."""
        parts: list[str] = []
        node = self._tree
        while isinstance(node, _Attribute):
            parts.append(node.name)
            node = node.target
        if isinstance(node, _Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
