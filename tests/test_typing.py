"""Types a user gets: mypy --strict catches a wrong handler arity; typed models on the cold path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kubernetes_asyncio.client import V1Pod

from kinformer import Lister, to_model
from kinformer.store import Indexer
from kinformer.testing import make_pod

GOOD = """
    from typing import Any
    from kinformer import (DeletedFinalStateUnknown, Event, EventHandler, KubeObject, ListWatch, Resource,
                           SharedIndexInformer)

    def make(api: Any) -> None:
        informer = SharedIndexInformer(ListWatch(api, Resource.pods))
        def on_add(pod: KubeObject, is_in_initial_list: bool) -> None: ...
        def on_add_short(pod: KubeObject) -> None: ...
        async def on_update(old: KubeObject, new: KubeObject) -> None: ...
        def on_delete(pod: KubeObject | DeletedFinalStateUnknown) -> None: ...
        informer.add_event_handler(on_add, on_update, on_delete)
        informer.add_event_handler(on_add_short)

        class Handler(EventHandler):
            def on_add(self, obj: KubeObject, is_in_initial_list: bool, /) -> None: ...
        informer.add_event_handler(Handler())

        names = SharedIndexInformer(ListWatch(api, Resource.pods), transform=lambda o: str(o["metadata"]["name"]))
        def on_name(name: str, initial: bool) -> None: ...
        names.add_event_handler(on_name)

    async def consume(informer: SharedIndexInformer) -> None:
        async with informer.events() as events:
            async for ev in events:
                kind: str = ev.type
                if ev.type == "ADDED":
                    print(kind)
"""

BAD = """
    from typing import Any
    from kinformer import KubeObject, ListWatch, Resource, SharedIndexInformer

    def make(api: Any) -> None:
        informer = SharedIndexInformer(ListWatch(api, Resource.pods))
        def on_update(new: KubeObject) -> None: ...
        informer.add_event_handler(on_update=on_update)
        def on_delete(pod: KubeObject) -> None: ...
        informer.add_event_handler(on_delete=on_delete)

    async def consume(informer: SharedIndexInformer) -> None:
        async for ev in informer.events():
            if ev.type == "CREATED":
                pass
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One mypy --strict run over both scripts (mypy's start-up is most of the cost)."""
    tmp = tmp_path_factory.mktemp("typing")
    for name, source in (("good_script", GOOD), ("bad_script", BAD), ("readme_example", readme_example())):
        (tmp / f"{name}.py").write_text(textwrap.dedent(source))
    # kubernetes_asyncio's generated client is large; its types are not what is tested here.
    (tmp / "mypy.ini").write_text("[mypy]\n[mypy-kubernetes_asyncio.*]\nfollow_imports = skip\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp / "cache"),
                             "good_script.py", "bad_script.py", "readme_example.py"],
                            check=False, capture_output=True, text=True, cwd=tmp, timeout=300)
    lines = result.stdout.splitlines()
    return {name: "\n".join(x for x in lines if x.startswith(name))
            for name in ("good_script", "bad_script", "readme_example")}


def readme_example() -> str:
    """The README's "Using it" example, as a user would copy it."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("## Using it"):]
    return section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]


def test_readme_example_passes_mypy_strict(mypy_output: dict[str, str]) -> None:
    assert mypy_output["readme_example"] == ""


def test_mypy_accepts_correct_handlers(mypy_output: dict[str, str]) -> None:
    assert mypy_output["good_script"] == ""


def test_mypy_rejects_wrong_handlers(mypy_output: dict[str, str]) -> None:
    out = mypy_output["bad_script"]
    assert 'Argument "on_update"' in out  # one argument where (old, new) is called
    assert 'Argument "on_delete"' in out  # no room for a DeletedFinalStateUnknown
    assert "comparison-overlap" in out  # "CREATED" is no EventType
    assert "import-not-found" not in out


def test_to_model_and_typed_lister() -> None:
    pod = make_pod(1, "default")
    model = to_model(pod, V1Pod)
    assert isinstance(model, V1Pod) and model.metadata.name == pod["metadata"]["name"]
    indexer = Indexer()
    indexer.add(pod)
    typed = Lister(indexer).typed(V1Pod)
    got = typed.get(pod["metadata"]["name"], "default")
    assert got is not None and got.metadata.namespace == "default"
    assert [p.metadata.name for p in typed.list("default")] == [pod["metadata"]["name"]]
