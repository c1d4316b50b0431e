"""Stopping tasks that ignore a cancel (as 3.11's asyncio.wait_for inside nats-py can make them do)."""

import asyncio
import logging

from events.tasks import cancel_and_wait


async def ignores_cancels(times: int) -> None:
    """What a task looks like to its stopper when a library swallowed the cancel ``times`` times."""
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed += 1
            if swallowed > times:
                raise


async def test_a_task_that_swallowed_a_cancel_is_cancelled_again_until_it_ends(caplog):
    task = asyncio.create_task(ignores_cancels(2), name="follow")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        still = await cancel_and_wait([task], recancel_s=0.05)
    assert still == set() and task.cancelled()
    assert caplog.text.count("ignored a cancel") == 2 and "follow" in caplog.text


async def test_a_task_that_never_ends_does_not_hang_the_stop_and_is_named(caplog):
    task = asyncio.create_task(ignores_cancels(3), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        still = await cancel_and_wait([task], attempts=3, recancel_s=0.02)
    assert still == {task} and not task.done()
    assert "still running after 3 cancels" in caplog.text and "stubborn" in caplog.text
    task.cancel()  # a fourth cancel: the test cleans up after itself
    await asyncio.gather(task, return_exceptions=True)


async def test_what_a_task_raised_stays_on_the_task_and_the_others_still_end():
    async def fails():
        raise ValueError("boom")
    failing = asyncio.create_task(fails())
    sleeping = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    assert await cancel_and_wait([failing, sleeping]) == set()
    assert isinstance(failing.exception(), ValueError) and sleeping.cancelled()
