"""Label and field selectors: the Kubernetes grammar, parsed once, matched on plain dicts.

Label selectors (apimachinery `labels.Parse`): comma-separated requirements, all of which
must hold: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`, `k<n`.
`!=` and `notin` also match when the label is absent; `=`, `in`, `>`, `<` need it present.
`n` must be a valid label value that is a 64-bit integer (so ASCII digits, no sign), and a
label compared with `>`/`<` is read as Go's `strconv.ParseInt` reads it: a value that is not
an int64 (`1_0`) never matches. Whitespace between tokens is space, tab, CR or LF only.
`k in ()` means the one value "" (as the server parses it). Keys are qualified names
(optional DNS-subdomain prefix and `/`), values are ≤63 characters of `[A-Za-z0-9_.-]`
beginning and ending alphanumeric, or empty.

Field selectors (apimachinery `fields.ParseSelector`): comma-separated `path=v`, `path==v`,
`path!=v` on dotted paths (`metadata.name`, `status.phase`); `\\`, `\\,` and `\\=` escape.
Empty terms are skipped (`a=b,` is `a=b`), as the server does.
A missing field reads as "" (see `objects.field_value`).

Invalid text raises `SelectorError` naming the offending part. An empty selector matches
everything. Parsed selectors are immutable and hashable, so they can key caches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kinformer.errors import SelectorError
from kinformer.objects import field_value, labels

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_WHITESPACE = " \t\r\n"  # apimachinery's isWhitespace: not Python's str.isspace
_SPECIAL = set("!=<>(),") | set(_WHITESPACE)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64 = 2**63


def _int64(text: str) -> int | None:
    """Go's `strconv.ParseInt(text, 10, 64)`: ASCII digits with an optional sign, in int64 range.

    Not Python's `int()`, which also takes `1_000`, surrounding spaces and non-ASCII digits
    that the server refuses (in a selector) or does not match (in a label value).
    """
    if not _INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if -_INT64 <= number < _INT64 else None

EXISTS, NOT_EXISTS, EQUALS, NOT_EQUALS, IN, NOT_IN, GT, LT = (
    "exists", "!", "=", "!=", "in", "notin", "gt", "lt",
)


def _validate_key(key: str) -> None:
    if not key:
        raise SelectorError("label key is empty")
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix):
            raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS subdomain")
    else:
        name = key
    if len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: name must be 63 characters or less, "
            "alphanumeric, '-', '_' or '.', beginning and ending alphanumeric"
        )


def _validate_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        raise SelectorError(
            f"invalid label value {value!r}: must be 63 characters or less, "
            "alphanumeric, '-', '_' or '.', beginning and ending alphanumeric"
        )


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement; `values` is sorted for a stable `str`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, lbls: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in lbls
        if op == NOT_EXISTS:
            return self.key not in lbls
        value = lbls.get(self.key)
        if op in (EQUALS, IN):
            return value is not None and value in self.values
        if op in (NOT_EQUALS, NOT_IN):
            return value is None or value not in self.values
        number = _int64(value) if value is not None else None
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if op == GT else number < bound

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == NOT_EXISTS:
            return f"!{self.key}"
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        symbol = {GT: ">", LT: "<"}.get(op, op)
        return f"{self.key}{symbol}{self.values[0]}"


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif c in "!=<>(),":
            tokens.append(c)
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self, what: str) -> str:
        tok = self._peek()
        if tok is None:
            raise SelectorError(f"invalid label selector {self.text!r}: expected {what} at end")
        self.pos += 1
        return tok

    def _identifier(self, what: str) -> str:
        tok = self._next(what)
        if tok in ("!", "=", "==", "!=", "<", ">", "(", ")", ","):
            raise SelectorError(f"invalid label selector {self.text!r}: expected {what}, found {tok!r}")
        return tok

    def parse(self) -> tuple[Requirement, ...]:
        reqs: list[Requirement] = []
        if self._peek() is None:
            return ()
        while True:
            reqs.append(self._requirement())
            tok = self._peek()
            if tok is None:
                break
            if tok != ",":
                raise SelectorError(f"invalid label selector {self.text!r}: expected ',' found {tok!r}")
            self.pos += 1
        return tuple(sorted(reqs, key=lambda r: (r.key, r.operator, r.values)))

    def _requirement(self) -> Requirement:
        if self._peek() == "!":
            self.pos += 1
            key = self._identifier("label key after '!'")
            _validate_key(key)
            tok = self._peek()
            if tok not in (None, ","):
                raise SelectorError(
                    f"invalid label selector {self.text!r}: unexpected {tok!r} after '!{key}'"
                )
            return Requirement(key, NOT_EXISTS)
        key = self._identifier("label key")
        _validate_key(key)
        tok = self._peek()
        if tok in (None, ","):
            return Requirement(key, EXISTS)
        self.pos += 1
        if tok in ("=", "=="):
            value = self._value()
            return Requirement(key, EQUALS, (value,))
        if tok == "!=":
            return Requirement(key, NOT_EQUALS, (self._value(),))
        if tok in (">", "<"):
            value = self._identifier(f"integer after {tok!r}")
            _validate_value(value)  # the server validates it as a label value too: no sign
            if _int64(value) is None:
                raise SelectorError(f"invalid label selector {self.text!r}: {value!r} after {tok!r} is not an integer")
            return Requirement(key, GT if tok == ">" else LT, (value,))
        if tok in ("in", "notin"):
            return Requirement(key, IN if tok == "in" else NOT_IN, self._values())
        raise SelectorError(f"invalid label selector {self.text!r}: unknown operator {tok!r} after {key!r}")

    def _value(self) -> str:
        tok = self._peek()
        if tok in (None, ","):
            return ""  # `k=` selects the empty value, as the server parses it
        value = self._identifier("label value")
        _validate_value(value)
        return value

    def _values(self) -> tuple[str, ...]:
        if self._next("'('") != "(":
            raise SelectorError(f"invalid label selector {self.text!r}: expected '(' after in/notin")
        values: set[str] = set()
        expect_value = True
        while True:
            tok = self._next("')'")
            if tok == ")":
                if expect_value:
                    values.add("")
                break
            if tok == ",":
                if expect_value:
                    values.add("")
                expect_value = True
                continue
            if not expect_value:
                raise SelectorError(
                    f"invalid label selector {self.text!r}: expected ',' or ')', found {tok!r}"
                )
            if tok in ("!", "=", "==", "!=", "<", ">", "("):
                raise SelectorError(f"invalid label selector {self.text!r}: unexpected {tok!r} in value list")
            _validate_value(tok)
            values.add(tok)
            expect_value = False
        return tuple(sorted(values))


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed label selector. `LabelSelector.parse("app=web,tier!=db")`."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        return cls(_LabelParser(text or "").parse())

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any]) -> LabelSelector:
        """From a `metav1.LabelSelector` (`matchLabels`, `matchExpressions`)."""
        reqs: list[Requirement] = []
        for key, value in (selector.get("matchLabels") or {}).items():
            _validate_key(key)
            _validate_value(value)
            reqs.append(Requirement(key, EQUALS, (value,)))
        ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": NOT_EXISTS}
        for expr in selector.get("matchExpressions") or ():
            key, op = expr.get("key", ""), expr.get("operator", "")
            _validate_key(key)
            if op not in ops:
                raise SelectorError(f"invalid matchExpressions operator {op!r} for key {key!r}")
            values = tuple(sorted(expr.get("values") or ()))
            if ops[op] in (IN, NOT_IN) and not values:
                raise SelectorError(f"matchExpressions {op} for key {key!r} needs values")
            if ops[op] in (EXISTS, NOT_EXISTS) and values:
                raise SelectorError(f"matchExpressions {op} for key {key!r} takes no values")
            for v in values:
                _validate_value(v)
            reqs.append(Requirement(key, ops[op], values))
        return cls(tuple(sorted(reqs, key=lambda r: (r.key, r.operator, r.values))))

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, lbls: Mapping[str, str]) -> bool:
        for req in self.requirements:
            if not req.matches(lbls):
                return False
        return True

    def matches_object(self, obj: Any) -> bool:
        return self.matches(labels(obj))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str, whole: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector {whole!r}: invalid escape in {text!r}")
            out.append(text[i + 1])
            i += 2
            continue
        if c in ",=":
            raise SelectorError(f"invalid field selector {whole!r}: unescaped {c!r} in value {text!r}")
        out.append(c)
        i += 1
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: str
    operator: str  # "=" or "!="
    value: str

    def matches(self, obj: Any) -> bool:
        equal = field_value(obj, self.path) == self.value
        return equal if self.operator == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.path}{self.operator}{_escape(self.value)}"


def _find_operator(term: str) -> tuple[int, str] | None:
    i = 0
    while i < len(term):
        c = term[i]
        if c == "\\":
            i += 2
            continue
        if term.startswith("!=", i):
            return i, "!="
        if term.startswith("==", i):
            return i, "=="
        if c == "=":
            return i, "="
        i += 1
    return None


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed field selector. `FieldSelector.parse("metadata.name=a,status.phase!=Failed")`."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        text = text or ""
        if not text.strip():
            return cls(())
        reqs: list[FieldRequirement] = []
        for term in _split_unescaped(text, ","):
            if not term:
                continue  # `a=b,` and `a=b,,c=d`: the server skips empty terms
            found = _find_operator(term)
            if found is None:
                raise SelectorError(f"invalid field selector {text!r}: can't understand {term!r}")
            at, op = found
            path = term[:at].strip()
            if not path or not re.fullmatch(r"[A-Za-z0-9_.\-/]+", path):
                raise SelectorError(f"invalid field selector {text!r}: bad field path in {term!r}")
            value = _unescape(term[at + len(op) :], text)
            reqs.append(FieldRequirement(path, "!=" if op == "!=" else EQUALS, value))
        return cls(tuple(sorted(reqs, key=lambda r: (r.path, r.operator, r.value))))

    def empty(self) -> bool:
        return not self.requirements

    def fields(self) -> Iterable[str]:
        return (r.path for r in self.requirements)

    def matches(self, obj: Any) -> bool:
        for req in self.requirements:
            if not req.matches(obj):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_label_selector(text: str | None) -> LabelSelector:
    return LabelSelector.parse(text)


def parse_field_selector(text: str | None) -> FieldSelector:
    return FieldSelector.parse(text)
