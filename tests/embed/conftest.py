import asyncio

import pytest


@pytest.fixture
def run():
    """Run a coroutine in a fresh event loop; afterwards no task may be left running."""

    def runner(coro_fn, *args, **kw):
        async def wrapper():
            result = await coro_fn(*args, **kw)
            await asyncio.sleep(0)
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not left, f"tasks left running after the broker stopped: {left}"
            return result

        return asyncio.run(wrapper())

    return runner
