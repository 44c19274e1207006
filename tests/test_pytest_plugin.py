"""kinformer's pytest plugin never breaks pytest, and its fixtures work under each async plugin.

Each case runs pytest in a subprocess (the plugin is loaded from kinformer's `pytest11`
entry point, as in a user's project). "Not installed" is simulated by disabling the plugin
(`-p no:asyncio`) *and* making its module unimportable (`-p _kinformer_block`, loaded before
entry points), so the plugin sees exactly what it would see without the package.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BLOCKER = '''
import importlib.abc
import sys

BLOCKED = ("pytest_asyncio", "hypothesis")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


for _name in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[_name]
sys.meta_path.insert(0, _Blocker())
'''

NOT_INSTALLED = ["-p", "_kinformer_block", "-p", "no:asyncio", "-p", "no:hypothesispytest"]

# A test that needs both fixtures to be live on the test's loop: a write through the
# Python API and a list over HTTP through the client (which would hang, and hit the
# timeout, if the server ran on another loop).
ANYIO_MARK = "@pytest.mark.anyio"
USES_FIXTURES = '''
import asyncio

from kubernetes_asyncio.client import CoreV1Api

from kinformer.testing import make_pod


{marker}
async def test_lists_a_pod(fake_api_server, fake_api_client):
    fake_api_server.create("pods", make_pod(1, "default"))
    pods = await asyncio.wait_for(CoreV1Api(fake_api_client).list_namespaced_pod("default"), 10)
    assert [p.metadata.name for p in pods.items] == [make_pod(1, "default")["metadata"]["name"]]
'''


ANYIO_BACKENDS = """
import pytest


@pytest.fixture(params={params})
def anyio_backend(request):
    return request.param
"""


def test_without_pytest_asyncio_plugin_loads_anyio_works_and_errors_explain(pytester: pytest.Pytester) -> None:
    """No pytest-asyncio, no hypothesis: pytest starts, a plain test passes, an anyio test
    gets the fixtures (asyncio backend) and a trio one a message, and an async test with no
    plugin for it fails at set-up with a message naming what to install."""
    pytester.makepyfile(_kinformer_block=BLOCKER)
    pytester.makepyfile(
        test_plain="def test_arithmetic():\n    assert 1 + 1 == 2\n",
        test_unplugged=USES_FIXTURES.format(marker=""),
        test_anyio=ANYIO_BACKENDS.format(params=["asyncio", "trio"]) + USES_FIXTURES.format(marker=ANYIO_MARK),
    )
    result = pytester.runpytest_subprocess(*NOT_INSTALLED, "-v")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*test_anyio.py::test_lists_a_pod?asyncio? PASSED*"])
    result.stdout.fnmatch_lines(["*'fake_api_server' fixture runs on asyncio only*anyio_backend is 'trio'*"])
    result.stdout.fnmatch_lines(["*'fake_api_server' fixture is async and needs an async test plugin*"
                                 "Install pytest-asyncio*@pytest.mark.asyncio*@pytest.mark.anyio*"])
    result.stdout.no_fnmatch_line("*ModuleNotFoundError*")


def test_strict_mode_with_marker_and_anyio_beside_it(pytester: pytest.Pytester) -> None:
    """pytest-asyncio strict mode (its default) needs `@pytest.mark.asyncio`; with both plugins
    installed, an anyio test's fixtures run on anyio's loop and an asyncio test's on
    pytest-asyncio's (a fixture on the wrong loop would hang the list into its timeout)."""
    pytester.makepyfile(
        test_asyncio="import pytest\n" + USES_FIXTURES.format(marker="@pytest.mark.asyncio"),
        test_anyio=ANYIO_BACKENDS.format(params=["asyncio"]) + USES_FIXTURES.format(marker=ANYIO_MARK),
    )
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=strict", "-v")
    result.assert_outcomes(passed=2)


def test_auto_mode_needs_no_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_it=USES_FIXTURES.format(marker=""))
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=auto", "-p", "no:anyio")
    result.assert_outcomes(passed=1)
