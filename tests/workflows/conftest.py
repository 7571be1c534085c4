"""Helpers for the workflow tests: the builder fixture documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUILDER_DOCUMENTS = ["linear_chain", "health_monitor", "approval_flow"]


def load_fixture(name: str) -> dict[str, Any]:
    with open(FIXTURES / f"{name}.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@pytest.fixture
def chain() -> dict[str, Any]:
    return copy.deepcopy(load_fixture("linear_chain"))


@pytest.fixture
def monitor() -> dict[str, Any]:
    return copy.deepcopy(load_fixture("health_monitor"))


@pytest.fixture
def approval() -> dict[str, Any]:
    return copy.deepcopy(load_fixture("approval_flow"))
