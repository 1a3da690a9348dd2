"""RFC 8941 Structured Field Dictionaries, and RFC 9213 CDN-Cache-Control on top. Pure.

`parse_dictionary` follows RFC 8941 section 4.2 step by step, in one left-to-right pass; any
error makes the whole field invalid (None), which callers ignore.
"""

from __future__ import annotations

import base64
import binascii
import string
from dataclasses import dataclass, field

__all__ = ["BareItem", "Item", "Token", "cdn_cache_control", "parse_dictionary"]


class Token(str):
    """An sf-token, told apart from an sf-string (plain `str`) by its type."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Token({str.__repr__(self)})"


BareItem = int | float | str | Token | bytes | bool


@dataclass(frozen=True)
class Item:
    """A dictionary member: a bare item or an inner list (a list of Items), with parameters."""

    value: BareItem | list[Item]
    params: dict[str, BareItem] = field(default_factory=dict)


class _Invalid(Exception):
    pass


_LCALPHA = frozenset(string.ascii_lowercase)
_KEY_FIRST = _LCALPHA | {"*"}
_KEY_CHARS = _LCALPHA | frozenset(string.digits) | frozenset("_-.*")
_DIGITS = frozenset(string.digits)
_ALPHA = frozenset(string.ascii_letters)
_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")
_TOKEN_CHARS = _TCHAR | {":", "/"}
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def dictionary(self) -> dict[str, Item]:
        members: dict[str, Item] = {}
        while self.pos < len(self.text):
            key = self.key()
            if self.peek() == "=":
                self.pos += 1
                member = self.item_or_inner_list()
            else:
                member = Item(True, self.parameters())
            members.pop(key, None)  # last one wins, in its own place
            members[key] = member
            self.skip(" \t")
            if self.pos >= len(self.text):
                return members
            if self.peek() != ",":
                raise _Invalid
            self.pos += 1
            self.skip(" \t")
            if self.pos >= len(self.text):
                raise _Invalid  # trailing comma
        return members

    def item_or_inner_list(self) -> Item:
        if self.peek() == "(":
            return self.inner_list()
        return Item(self.bare_item(), self.parameters())

    def inner_list(self) -> Item:
        self.pos += 1
        items: list[Item] = []
        while self.pos < len(self.text):
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return Item(items, self.parameters())
            items.append(Item(self.bare_item(), self.parameters()))
            if self.peek() not in (" ", ")"):
                raise _Invalid
        raise _Invalid

    def parameters(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params.pop(key, None)
            params[key] = value
        return params

    def key(self) -> str:
        if self.peek() not in _KEY_FIRST or not self.peek():
            raise _Invalid
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        char = self.peek()
        if not char:
            raise _Invalid
        if char == "-" or char in _DIGITS:
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char in _ALPHA or char == "*":
            return self.token()
        raise _Invalid

    def number(self) -> int | float:
        sign = 1
        if self.peek() == "-":
            sign = -1
            self.pos += 1
        if self.peek() not in _DIGITS or not self.peek():
            raise _Invalid
        start, dot = self.pos, -1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _DIGITS:
                self.pos += 1
            elif char == "." and dot < 0:
                if self.pos - start > 12:
                    raise _Invalid
                dot = self.pos
                self.pos += 1
            else:
                break
            if dot < 0 and self.pos - start > 15 or dot >= 0 and self.pos - start > 16:
                raise _Invalid
        number = self.text[start : self.pos]
        if dot < 0:
            return sign * int(number)
        fraction = self.pos - dot - 1
        if fraction == 0 or fraction > 3:
            raise _Invalid
        return sign * float(number)

    def string(self) -> str:
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                if self.pos >= len(self.text) or self.text[self.pos] not in '"\\':
                    raise _Invalid
                chars.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise _Invalid
            else:
                chars.append(char)
        raise _Invalid

    def token(self) -> Token:
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        end = self.text.find(":", self.pos + 1)
        if end < 0:
            raise _Invalid
        content = self.text[self.pos + 1 : end]
        self.pos = end + 1
        if not all(char in _BASE64 for char in content):
            raise _Invalid
        try:  # RFC 8941 4.2.7: a missing "=" padding should not fail
            return base64.b64decode(content + "=" * (-len(content) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid from None

    def boolean(self) -> bool:
        self.pos += 1
        char = self.peek()
        if char not in ("0", "1") or not char:
            raise _Invalid
        self.pos += 1
        return char == "1"


def parse_dictionary(value: str) -> dict[str, Item] | None:
    """The members of an sf-dictionary field value, or None when it is invalid (ignore the field).

    Combine repeated field lines with ", " before calling.
    """
    if not value.isascii():
        return None
    parser = _Parser(value.strip(" "))
    try:
        return parser.dictionary()
    except _Invalid:
        return None


_SECONDS = ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error")
_FLAGS = ("no-store", "no-cache", "private", "public", "must-revalidate", "proxy-revalidate")
_MAY_LIST_FIELDS = ("no-cache", "private")


def _field_names(item: Item) -> bool:
    if isinstance(item.value, list):
        return all(isinstance(inner.value, str) for inner in item.value)
    return isinstance(item.value, str) and not isinstance(item.value, Token)


def cdn_cache_control(value: str) -> dict[str, int | bool] | None:
    """RFC 9213 CDN-Cache-Control directives, or None when the field is invalid (ignore it).

    Invalid: not an sf-dictionary, a delta-seconds directive that is not a non-negative
    Integer, or a flag that is not Boolean true (no-cache and private may instead name fields,
    as a String or an inner list; they are then treated as unqualified, as RFC 9111 allows).
    Parameters are ignored; unknown directives are kept when their value is an Integer or
    Boolean and dropped otherwise.
    """
    members = parse_dictionary(value)
    if members is None:
        return None
    directives: dict[str, int | bool] = {}
    for name, item in members.items():
        bare = item.value
        if name in _SECONDS:
            if isinstance(bare, bool) or not isinstance(bare, int) or bare < 0:
                return None
            directives[name] = bare
        elif name in _FLAGS:
            if isinstance(bare, bool):  # ?0 is a valid "off"
                directives[name] = bare
            elif name in _MAY_LIST_FIELDS and _field_names(item):
                directives[name] = True
            else:
                return None
        elif isinstance(bare, (bool, int)) and not isinstance(bare, list):
            directives[name] = bare
    return directives
