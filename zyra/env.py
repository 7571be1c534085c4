"""The one place that reads the environment.

Every setting that comes from the environment is read through these helpers,
which fail loudly (naming the variable) on a value they cannot parse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class ConfigError(RuntimeError):
    """A bad environment value; raised at start-up, never swallowed."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default or [])
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_features(name: str, defaults: dict[str, bool]) -> dict[str, bool]:
    """Parse ``"parallel=on,circuit_breaker=off"``; unknown flags are errors."""
    flags = dict(defaults)
    for item in env_list(name):
        if "=" not in item:
            raise ConfigError(f"{name}: {item!r} must look like flag=on|off")
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"{name}: unknown feature flag {key!r}; known: {sorted(defaults)}")
        value = raw.strip().lower()
        if value in {"on", "true", "1", "yes"}:
            flags[key] = True
        elif value in {"off", "false", "0", "no"}:
            flags[key] = False
        else:
            raise ConfigError(f"{name}: {key}={raw!r} must be on or off")
    return flags


def database_from_url(url: str) -> dict[str, object]:
    """Turn ``postgres://user:pw@host:port/name`` or ``sqlite:///path`` into a Django DB dict."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "zyra",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "OPTIONS": options,
        }
    if parsed.scheme == "sqlite":
        path = parsed.path
        if path.startswith("//"):
            path = path[1:]
        elif path.startswith("/"):
            path = path[1:]
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path or ":memory:"}
    raise ConfigError(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (postgres://, sqlite:///)")


def dev_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Embedded mode only: a random development secret, created once (mode 0600) and reused."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
    return path.read_text().strip()
