"""Node handlers, one module per type; importing this package registers them all."""

from __future__ import annotations

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name not in {"base"}:
        importlib.import_module(f"{__name__}.{_mod.name}")
