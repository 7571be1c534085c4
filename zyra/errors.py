"""One error family for the whole project, mapped once to the API error shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErrorDetail:
    path: str  # JSON pointer into the request body ("" for the whole body)
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


@dataclass
class ZyraError(Exception):
    code: str
    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    status: int = 400

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": [d.as_dict() for d in self.details]}}


class NotFound(ZyraError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__("not_found", message, [], 404)


class Conflict(ZyraError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, [], 409)


def pointer(*parts: object) -> str:
    """Build a JSON pointer (RFC 6901) from path parts."""
    out = []
    for part in parts:
        text = str(part).replace("~", "~0").replace("/", "~1")
        out.append(text)
    return "/" + "/".join(out) if out else ""
