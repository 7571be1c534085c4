"""Structured key=value logs, with registered secret values redacted."""

from __future__ import annotations

import json
import logging
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extras = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        parts = [self.formatTime(record), record.levelname, record.name, message]
        for key, value in extras.items():
            parts.append(f"{key}={_fmt(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _fmt(value: Any) -> str:
    if isinstance(value, str) and " " not in value:
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


class RedactFilter(logging.Filter):
    """Replaces every secret value registered in this process with its marker."""

    def filter(self, record: logging.LogRecord) -> bool:
        from zyra.redaction import global_redactor

        redactor = global_redactor()
        if not redactor.active():
            return True
        record.msg = redactor.redact_text(record.getMessage())
        record.args = ()
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED:
                record.__dict__[key] = redactor.redact(value)
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.msg}\n{redactor.redact_text(text)}"
        return True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
