"""The lifespan's shutdown never waits for ever on a background task (app.main._stop)."""

from __future__ import annotations

import asyncio
import logging

from app import main


async def _deaf() -> None:
    """A task that a buggy library keeps alive: every cancellation is swallowed."""
    while True:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            continue


def test_a_task_that_will_not_stop_is_left_behind_and_logged_with_where_it_waits(monkeypatch, caplog):
    monkeypatch.setattr(main, "STOP_WAIT", 0.3)
    caplog.set_level(logging.ERROR, logger="packhouse")

    async def scenario() -> float:
        task = asyncio.create_task(_deaf())
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await main._stop(task, "the deaf task", cancel=True)
        waited = loop.time() - started
        assert not task.done()
        task.get_coro().close()  # the test's own clean-up
        return waited

    assert asyncio.run(scenario()) < 5
    assert "the deaf task did not stop within 0.3 s of the shutdown" in caplog.text
    assert "in _deaf" in caplog.text and "test_shutdown.py" in caplog.text


def test_a_task_that_failed_is_logged_and_one_that_stops_is_not(caplog):
    async def fails() -> None:
        raise OSError("disk gone")

    async def scenario() -> None:
        failing = asyncio.create_task(fails())
        quiet = asyncio.create_task(asyncio.sleep(30))
        await asyncio.sleep(0)
        await main._stop(failing, "the failing task", cancel=False)
        await main._stop(quiet, "the quiet task", cancel=True)
        await main._stop(None, "no task", cancel=True)

    asyncio.run(scenario())
    assert "the failing task failed: disk gone" in caplog.text
    assert "quiet task" not in caplog.text
