"""Secret redaction: a run's redactor replaces registered values with markers.

The secrets vault registers every value it resolves (``register(name, value)``)
before anything that could carry it is stored, sent or logged. Redaction walks
JSON-like structures (dict keys and values, lists, strings).

Besides the value itself, the encoded forms a node is likely to echo are
redacted too: base64 (standard and URL-safe, padded or not), percent-encoding
(``quote``/``quote_plus``) and the JSON-escaped form; an HTTP ``Basic``
credential whose decoded ``user:password`` contains a secret is replaced whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MIN_SECRET_LEN = 4
# Encoded variants are only derived from values at least this long: the base64
# of a very short value is short enough to occur in ordinary text.
MIN_VARIANT_LEN = 6

_BASIC = re.compile(r"(?i)\b(basic)(\s+)([A-Za-z0-9+/_-]{4,}={0,2})")


def _variants(value: str) -> set[str]:
    raw = value.encode("utf-8", "surrogatepass")
    out = {
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    out |= {v.rstrip("=") for v in out}
    out.discard(value)
    return {v for v in out if len(v) >= MIN_VARIANT_LEN}


class Redactor:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}  # exact value -> name (short values included)
        self._forms: dict[str, str] = {}  # every redactable form (value and its encodings) -> name
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, name: str, value: str) -> None:
        if not isinstance(value, str) or not value:
            return
        with self._lock:
            if len(value) < MIN_SECRET_LEN:
                # Very short values would redact ordinary text: only exact matches.
                self._values.setdefault(value, name)
                return
            if self._values.get(value) == name:
                return
            self._values[value] = name
            self._forms[value] = name
            if len(value) >= MIN_VARIANT_LEN:
                for form in _variants(value):
                    self._forms.setdefault(form, name)
            self._pattern = None

    def active(self) -> bool:
        return bool(self._values)

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._forms:
            with self._lock:
                # Longest first, so a secret that contains another is replaced whole.
                forms = sorted(self._forms, key=len, reverse=True)
                pattern = re.compile("|".join(re.escape(f) for f in forms))
                self._pattern = pattern
        return pattern

    def _basic(self, text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            token = m.group(3)
            try:
                decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_" if ("-" in token or "_" in token) else None)
                plain = decoded.decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return m.group(0)
            for value, name in self._values.items():
                if len(value) >= MIN_SECRET_LEN and value in plain:
                    return f"{m.group(1)}{m.group(2)}[redacted:{name}]"
            return m.group(0)

        return _BASIC.sub(replace, text)

    def redact_text(self, text: str) -> str:
        if not self._values or not text:
            return text
        short = self._values.get(text)
        if short is not None:
            return f"[redacted:{short}]"
        if "asic" in text or "ASIC" in text:
            text = self._basic(text)
        pattern = self._compiled()
        if pattern is None:
            return text
        forms = self._forms
        return pattern.sub(lambda m: f"[redacted:{forms[m.group(0)]}]", text)

    def redact(self, data: Any) -> Any:
        if not self._values:
            return data
        if isinstance(data, str):
            return self.redact_text(data)
        if isinstance(data, dict):
            return {self.redact_text(k) if isinstance(k, str) else k: self.redact(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact(v) for v in data]
        return data

    def merge(self, other: Redactor) -> None:
        with other._lock:
            items = list(other._values.items())
        for value, name in items:
            self.register(name, value)


_global = Redactor()


def global_redactor() -> Redactor:
    """Process-wide redactor used by the log filter: every value any run resolved here."""
    return _global
