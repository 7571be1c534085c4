"""zyra.redaction.Redactor: values and their encoded forms become markers."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from zyra.redaction import Redactor

VALUE = "sk-live+abc/123 XYZ&q=1"


def _redactor() -> Redactor:
    r = Redactor()
    r.register("API_KEY", VALUE)
    return r


def test_plain_and_nested() -> None:
    r = _redactor()
    data = {"a": [f"x {VALUE} y", {VALUE: 1}], "n": 5}
    out = r.redact(data)
    assert out == {"a": ["x [redacted:API_KEY] y", {"[redacted:API_KEY]": 1}], "n": 5}
    assert VALUE not in json.dumps(out)


def test_encoded_forms() -> None:
    r = _redactor()
    raw = VALUE.encode()
    for form in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        json.dumps(VALUE)[1:-1],
    ):
        text = f"echo: {form}!"
        assert r.redact_text(text) == "echo: [redacted:API_KEY]!", form


def test_authorization_header_echoes() -> None:
    r = _redactor()
    basic = base64.b64encode(f"user:{VALUE}".encode()).decode()
    echoed = {"headers": {"Authorization": f"Basic {basic}", "X-Token": f"Bearer {VALUE}"}}
    out = r.redact(echoed)
    assert out["headers"]["Authorization"] == "Basic [redacted:API_KEY]"
    assert out["headers"]["X-Token"] == "Bearer [redacted:API_KEY]"
    # An unrelated Basic credential is left alone.
    other = "Basic " + base64.b64encode(b"user:other").decode()
    assert r.redact_text(other) == other


def test_longest_first_and_short_values_exact_only() -> None:
    r = Redactor()
    r.register("INNER", "abcdef")
    r.register("OUTER", "xxabcdefyy")
    r.register("PIN", "123")
    assert r.redact_text("xxabcdefyy abcdef") == "[redacted:OUTER] [redacted:INNER]"
    assert r.redact_text("123") == "[redacted:PIN]"
    assert r.redact_text("a 123 b") == "a 123 b"


def test_merge_and_inactive() -> None:
    empty = Redactor()
    assert not empty.active() and empty.redact({"a": VALUE}) == {"a": VALUE}
    empty.merge(_redactor())
    assert empty.active() and empty.redact_text(VALUE) == "[redacted:API_KEY]"
