"""Secret redaction: a run's redactor replaces registered values with markers.

The secrets vault registers every value it resolves (``register(name, value)``)
before anything that could carry it is stored, sent or logged. Redaction walks
JSON-like structures (dict keys and values, lists, strings).
"""

from __future__ import annotations

import threading
from typing import Any

MIN_SECRET_LEN = 4


class Redactor:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, name: str, value: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
            # Very short values would redact ordinary text; they are still
            # never stored because redaction of exact matches covers them.
            if isinstance(value, str) and value:
                with self._lock:
                    self._values.setdefault(value, name)
            return
        with self._lock:
            self._values[value] = name

    def active(self) -> bool:
        return bool(self._values)

    def redact_text(self, text: str) -> str:
        if not self._values or not text:
            return text
        # Longest first, so a secret that contains another is replaced whole.
        for value in sorted(self._values, key=len, reverse=True):
            if len(value) < MIN_SECRET_LEN:
                if text == value:
                    return f"[redacted:{self._values[value]}]"
                continue
            if value in text:
                text = text.replace(value, f"[redacted:{self._values[value]}]")
        return text

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
        with self._lock, other._lock:
            self._values.update(other._values)


_global = Redactor()


def global_redactor() -> Redactor:
    """Process-wide redactor used by the log filter: every value any run resolved here."""
    return _global
