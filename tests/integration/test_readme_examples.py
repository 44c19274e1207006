"""The README's testing example runs as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _block(heading: str) -> str:
    text = (Path(__file__).parent.parent.parent / "README.md").read_text()
    section = text[text.index(heading):]
    return section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]


async def test_testing_your_operator_example() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_block("## Testing your operator"), "README.md", "exec"), namespace)
    await namespace["test_my_handler"]()
