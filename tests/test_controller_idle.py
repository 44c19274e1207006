"""`Controller.idle()` / `wait_idle()`: the signal tests (and the convergence machine) settle on."""

from __future__ import annotations

import asyncio

import pytest

from kinformer import Controller, Request, Result
from kinformer.testing import FakeClock, eventually
from tests.test_controller import Recorder, ScriptedInformer, cm, raising, running


async def test_idle_only_when_nothing_is_ready_handed_out_or_running() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    release = asyncio.Event()

    async def slow(request: Request) -> None:
        await release.wait()
    rec.script["a"] = slow
    rec.script["b"] = raising(RuntimeError("boom"))
    rec.script["c"] = lambda request: Result(requeue_after=60)
    controller = Controller("c", rec, clock=clock).watches(informer)
    assert not controller.idle()  # not running
    async with running(controller):
        assert not controller.idle()  # syncing
        informer.add(cm("a"))
        informer.sync()
        await eventually(lambda: rec.count("a") == 1)
        assert not controller.idle()  # a reconcile in flight
        with pytest.raises(TimeoutError):
            await controller.wait_idle(0.05)
        release.set()
        await controller.wait_idle()
        informer.add(cm("b"))
        assert not controller.idle()  # ready in the queue (or just handed to the worker)
        await controller.wait_idle()  # failed: its retry waits on the clock
        assert rec.count("b") == 1
        assert not controller.idle(delayed=True)
        clock.advance(1.0)
        await eventually(lambda: rec.count("b") == 2)
        await controller.wait_idle()
        informer.add(cm("c"))
        await controller.wait_idle()
        assert rec.count("c") == 1 and not controller.idle(delayed=True)  # the requeue_after waits
    assert not controller.idle()  # stopped
