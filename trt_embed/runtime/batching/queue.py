"""The scheduler's queue: queued inputs in queue order, and the batch the next engine call takes from them."""

from __future__ import annotations

import bisect
import heapq
import itertools

from trt_embed.engines.base import EngineSpec
from trt_embed.runtime.batching.work import Item, Pending
from trt_embed.runtime.types import BatchKey

SPREAD_FLOOR = 512  # tokens: below this a CPU engine call's fixed cost starts to show
Entry = tuple[int, int, Item]


class BatchQueue:
    """A heap in queue order (priority, then age) that picks each batch's anchor, and per (priority, key) a list
    sorted longest first (ties oldest first) that fills it. An input taken by a batch leaves its group list at
    once and the heap lazily (`Item.taken`), so taking a batch costs O(log n) plus the batch, not a scan of the
    queue. Not thread-safe: the scheduler holds its lock around every call."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._groups: dict[tuple[int, BatchKey], list[Entry]] = {}
        self._seq = itertools.count()
        self.count = 0  # inputs waiting
        self.cost = 0  # their summed cost (tokens)

    def push(self, request: Pending, priority: int) -> None:
        """Queue every unit of a request (an input, or a token block of many), longest first (consecutive units
        then pad little when batched)."""
        units = request.items
        group = self._groups.setdefault((priority, request.key), [])
        rows = 0
        for index in sorted(range(len(units)), key=lambda i: units[i].span, reverse=True):
            unit = units[index]
            item = Item(priority, next(self._seq), request, index, length=unit.span, real=unit.cost, rows=unit.rows)
            heapq.heappush(self._heap, (priority, item.seq, item))
            group.append((-item.length, item.seq, item))
            rows += unit.rows
        group.sort(key=_order)
        self.count += rows
        self.cost += sum(unit.cost for unit in units)

    def take(self, spec: EngineSpec, budget: int) -> list[Item]:
        """Pop the next batch. The first input in queue order anchors it and sets its width; it is filled with
        queued inputs of the same key and priority that are no longer than the anchor, longest first, within
        `budget` tokens (padded or real, by the spec's layout), the spec's batch size and its profiles."""
        while True:
            first = heapq.heappop(self._heap)[2]
            if not first.taken:
                break
        where = (first.priority, first.request.key)
        group = self._groups[where]
        del group[bisect.bisect_left(group, (-first.length, first.seq), key=_order)]
        width = first.length
        batch = [first]
        real, rows = first.real, first.rows  # the batch's real tokens and inputs, grown with it
        start = end = bisect.bisect_left(group, (-width, -1), key=_order)
        for _, _, item in itertools.islice(group, start, None):
            size = rows + item.rows
            cost = spec.batch_cost(size, width, real + item.real)
            if size > spec.max_batch_size or cost > budget or not spec.fits(size, width):
                break
            batch.append(item)
            real += item.real
            rows = size
            end += 1
        del group[start:end]
        if not group:
            del self._groups[where]
        for item in batch:
            item.taken = True
        self.count -= rows
        self.cost -= real
        return batch

    def fair_share(self, spec: EngineSpec, workers: int) -> int:
        """A CPU worker's budget: the spec's, or an even share of a queue too short to fill every worker's."""
        return min(spec.max_batch_tokens, max(SPREAD_FLOOR, -(-self.cost // max(1, workers))))


def _order(entry: Entry) -> tuple[int, int]:
    """Sort key of a group list: longest first, then oldest first."""
    return entry[0], entry[1]
