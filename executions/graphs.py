"""Per-process cache of parsed graphs, keyed by the immutable WorkflowVersion id."""

from __future__ import annotations

import threading
from collections import OrderedDict

from executions.engine.graph import Graph

_cache: OrderedDict[int, Graph] = OrderedDict()
_lock = threading.Lock()
_MAX = 256


def graph_for_version(version_id: int, definition: dict | None = None) -> Graph:
    with _lock:
        graph = _cache.get(version_id)
        if graph is not None:
            _cache.move_to_end(version_id)
            return graph
    if definition is None:
        from workflows.models import WorkflowVersion

        definition = WorkflowVersion.objects.values_list("definition", flat=True).get(id=version_id)
    graph = Graph.from_definition(definition)
    with _lock:
        _cache[version_id] = graph
        while len(_cache) > _MAX:
            _cache.popitem(last=False)
    return graph
