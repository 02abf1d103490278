"""Label validation and the label-selector language of the Hetzner Cloud API.

The control plane finds its own servers by label selector after a crash, so the simulator must
implement the whole grammar (``k==v``, ``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (..)``,
``k notin (..)``, comma = AND) with the same validation rules, not a convenient subset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_PREFIX_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
RESERVED_PREFIX = "hetzner.cloud/"


def key_problem(key: str) -> str | None:
    """Return why ``key`` is not a valid label key, or None."""
    if not isinstance(key, str) or not key:
        return "label key must not be empty"
    if "/" in key:
        prefix, _, name = key.partition("/")
        if "/" in name:
            return f"label key '{key}' has more than one '/'"
        if not prefix or len(prefix) > 253 or not all(_PREFIX_LABEL.match(p) for p in prefix.split(".")):
            return f"label key prefix '{prefix}' must be a DNS subdomain"
        if key.startswith(RESERVED_PREFIX):
            return f"label key prefix '{RESERVED_PREFIX}' is reserved"
    else:
        name = key
    if not _NAME.match(name):
        return (
            f"label key '{key}' must be at most 63 characters, start and end alphanumeric "
            "and contain only alphanumerics, '-', '_' and '.'"
        )
    return None


def value_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "label value must be a string"
    if not _VALUE.match(value):
        return (
            f"label value '{value}' must be at most 63 characters, empty or start and end "
            "alphanumeric and contain only alphanumerics, '-', '_' and '.'"
        )
    return None


def label_problems(labels: object) -> list[str]:
    """All reasons why ``labels`` is not a valid label map (empty list: valid)."""
    if not isinstance(labels, Mapping):
        return ["labels must be an object of string keys and string values"]
    problems: list[str] = []
    for key, value in labels.items():
        for problem in (key_problem(key), value_problem(value)):
            if problem:
                problems.append(problem)
    return problems


Op = Literal["eq", "ne", "exists", "absent", "in", "notin"]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "absent":
            return not present
        if self.op == "eq":
            return present and labels[self.key] == self.values[0]
        if self.op == "ne":
            return not present or labels[self.key] != self.values[0]
        if self.op == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


class SelectorError(ValueError):
    """An unparsable selector; the API reports it as ``invalid_input`` on ``label_selector``."""


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|[^\s=!(),]+)")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise SelectorError(f"unexpected character at position {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        sym = self.peek()
        if sym is None:
            raise SelectorError("unexpected end of selector")
        self.pos += 1
        return sym

    def word(self, what: str) -> str:
        sym = self.take()
        if sym in {"==", "!=", "=", "!", "(", ")", ","}:
            raise SelectorError(f"expected {what}, found '{sym}'")
        return sym

    def key(self) -> str:
        key = self.word("a label key")
        problem = key_problem(key)
        if problem and not key.startswith(RESERVED_PREFIX):
            raise SelectorError(problem)
        return key

    def value(self) -> str:
        sym = self.peek()
        if sym in {",", ")", None}:
            return ""
        value = self.word("a label value")
        problem = value_problem(value)
        if problem:
            raise SelectorError(problem)
        return value

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.key(), "absent")
        key = self.key()
        sym = self.peek()
        if sym in {None, ","}:
            return Requirement(key, "exists")
        if sym in {"=", "=="}:
            self.take()
            return Requirement(key, "eq", (self.value(),))
        if sym == "!=":
            self.take()
            return Requirement(key, "ne", (self.value(),))
        if sym in {"in", "notin"}:
            self.take()
            return Requirement(key, "in" if sym == "in" else "notin", self.value_set())
        raise SelectorError(f"unexpected '{sym}' after label key '{key}'")

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise SelectorError("expected '(' to open a value set")
        values = [self.value()]
        while True:
            sym = self.take()
            if sym == ")":
                return tuple(values)
            if sym != ",":
                raise SelectorError(f"expected ',' or ')' in value set, found '{sym}'")
            values.append(self.value())

    def selector(self) -> Selector:
        requirements = [self.requirement()]
        while self.peek() is not None:
            if self.take() != ",":
                raise SelectorError("requirements must be separated by ','")
            requirements.append(self.requirement())
        return Selector(tuple(requirements))


def parse_selector(text: str) -> Selector:
    """Parse a label selector; an empty or blank one selects everything."""
    tokens = _tokens(text)
    if not tokens:
        return Selector(())
    return _Parser(tokens).selector()
