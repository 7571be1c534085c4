"""Strict JSON request parsing for every API endpoint (DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from zyra.errors import ErrorDetail, ZyraError, pointer

MAX_BODY_DEPTH = 80  # the definition may nest 64 deep (validation); the body wraps it


class StrictJSONParser(JSONParser):
    """JSON bodies that PostgreSQL can store and Python can walk.

    Rejects, with a 4xx and a pointer, what the stock parser lets through to
    become a 500 later: bodies over the upload cap, nesting deep enough to
    exhaust the stack, NUL characters and lone surrogates (not storable in
    jsonb/UTF-8), numbers that overflow to infinity.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        cap = int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 5 * 1024 * 1024)
        raw = stream.read(cap + 1) if stream is not None else b""
        if len(raw) > cap:
            message = f"The request body is larger than {cap} bytes."
            raise ZyraError("body_too_large", message, [ErrorDetail("", "body_too_large", message)], 413)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise _bad_body("", "too_deeply_nested", "The body nests too deeply.") from None
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        _check_body(data)
        return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _bad_body(path: str, code: str, message: str) -> ZyraError:
    # The pointer may hold the very characters being rejected: escape them so
    # the error itself can be rendered.
    safe = path.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return ZyraError(code, message, [ErrorDetail(safe, code, message)], 400)


def _check_body(data: Any) -> None:
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            if len(path) >= MAX_BODY_DEPTH:
                raise _bad_body(pointer(*path), "too_deeply_nested", f"The body nests deeper than {MAX_BODY_DEPTH} levels.")
            for key, value in item.items():
                _check_text(key, (*path, key))
                stack.append((value, (*path, key)))
        elif isinstance(item, list):
            if len(path) >= MAX_BODY_DEPTH:
                raise _bad_body(pointer(*path), "too_deeply_nested", f"The body nests deeper than {MAX_BODY_DEPTH} levels.")
            stack.extend((value, (*path, str(i))) for i, value in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _bad_body(pointer(*path), "invalid_number", "The number is too large.")


def _check_text(text: str, path: tuple[str, ...]) -> None:
    if "\x00" in text:
        raise _bad_body(pointer(*path), "invalid_string", "Text must not contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_body(pointer(*path), "invalid_string", "Text must not contain unpaired surrogates.") from None
