"""Small object builders shared by the tests."""

from __future__ import annotations

from typing import Any


def obj(name: str, namespace: str | None = "default", rv: str | int = "1", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(rv)}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return {"metadata": meta}
