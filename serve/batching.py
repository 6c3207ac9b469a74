"""Dynamic batching under a budget, with batches formed when the model is free (as TEI does).

Ray Serve's `@serve.batch` forms a batch as soon as its wait ends and then queues it behind the running one, so under
load the replica runs a line of small batches (texts that arrive one by one during a forward pass each start their
own). Here one loop takes the next batch from the queue only after the previous one has finished, so everything that
arrived meanwhile shares it, up to the budget (benchmarks/results/serve_throughput.txt: texts per forward pass).
"""

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any


logger = logging.getLogger(__name__)


class BudgetBatcher:
    """Queue items from all requests; run `run_batch` on batches cut from the front of the queue, one at a time.

    Args:
        run_batch (`Callable[[list], Awaitable[list]]`): embeds a batch; returns one result per item (an exception
            instance is a result too: that item's caller gets it as its value).
        cost (`Callable[[list], float]`): what a list of items costs against `max_cost`.
        max_cost (`float`): the budget of one batch; a single item over it is refused at `submit`.
        wait_s (`float`): how long a batch with room left waits for more items before it runs.

    Example:
        >>> async def double(items):  # doctest: +SKIP
        ...     return [2 * i for i in items]
        >>> batcher = BudgetBatcher(double, cost=len, max_cost=32, wait_s=0.005)  # doctest: +SKIP
        >>> await asyncio.gather(*(batcher.submit(i) for i in range(3)))  # doctest: +SKIP
        [0, 2, 4]
    """

    def __init__(
        self,
        run_batch: Callable[[list], Awaitable[list]],
        cost: Callable[[list], float],
        max_cost: float,
        wait_s: float,
    ):
        if max_cost <= 0 or wait_s < 0:
            raise ValueError(f"max_cost must be > 0 and wait_s >= 0, got {max_cost}, {wait_s}")
        self.run_batch, self.cost, self.max_cost, self.wait_s = run_batch, cost, max_cost, wait_s
        self.queue: collections.deque[tuple[Any, asyncio.Future]] = collections.deque()
        self.arrived = asyncio.Event()
        self.loop_task: asyncio.Task | None = None

    def submit(self, item) -> asyncio.Future:
        """Queue `item`; the future resolves to its result. Cancelling the future drops the item if it has not run."""
        if self.cost([item]) > self.max_cost:
            raise ValueError(f"an item costs {self.cost([item])}, over the batch budget {self.max_cost}")
        future = asyncio.get_running_loop().create_future()
        self.queue.append((item, future))
        self.arrived.set()
        if self.loop_task is None or self.loop_task.done():
            self.loop_task = asyncio.get_running_loop().create_task(self._run())
        return future

    def waiting(self) -> int:
        return sum(not future.done() for _, future in self.queue)

    def _live(self) -> list:
        while self.queue and self.queue[0][1].done():  # cancelled (a timed-out request): never run
            self.queue.popleft()
        return [item for item, future in self.queue if not future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._live():
                self.arrived.clear()
                await self.arrived.wait()
            deadline = loop.time() + self.wait_s
            while self.cost(self._live()) < self.max_cost and (remaining := deadline - loop.time()) > 0:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            try:
                results = await self.run_batch([item for item, _ in batch])
            except Exception as error:  # noqa: BLE001 - given to the batch's callers, the loop goes on
                logger.exception("a batch of %d failed", len(batch))
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    def _take(self) -> list[tuple[Any, asyncio.Future]]:
        """The longest run from the front of the queue (cancelled items skipped) that fits the budget, in order."""
        batch = []
        while self.queue:
            item, future = self.queue[0]
            if future.done():
                self.queue.popleft()
                continue
            if batch and self.cost([i for i, _ in batch] + [item]) > self.max_cost:
                break
            batch.append(self.queue.popleft())
        return batch
