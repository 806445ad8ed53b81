"""What keeps the training step free of host syncs: batch prefetch and a deferred NaN check.

* `DevicePrefetcher` copies batch k+1 to the GPU (pinned host memory, a side stream,
  non_blocking) while step k runs, so the step never waits on a host-to-device copy.
* `NonFiniteWatch` remembers, on the device, the first step whose loss was not finite. `poll`
  reads a copy started at the previous poll only if that copy has finished (a CUDA event
  query, never a wait); `check` blocks and is meant for report steps only.

On the CPU both are plain: copies are synchronous and reading a tensor costs nothing.
"""
from __future__ import annotations

import torch

from trainables.data.pipeline import normalise_frames


class DevicePrefetcher:
    """Iterator of (n_bad_rows, device batch) over a loader of host batches, one batch ahead.

    Frames travel as the loader's uint8 and are normalised to `dtype` on the device.
    """

    def __init__(self, batches, device, dtype: torch.dtype):
        self.batches = iter(batches)
        self.device = torch.device(device)
        self.dtype = dtype
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._next = self._load()

    def _copy(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if self.cuda and not v.is_pinned():
                v = v.pin_memory()  # a pageable source would make the "async" copy synchronous
            out[k] = v.to(self.device, non_blocking=True)
        out["frames"] = normalise_frames(out["frames"], self.dtype)
        return out

    def _load(self):
        try:
            batch = dict(next(self.batches))
        except StopIteration:
            return None
        n_bad = batch.pop("n_bad_rows", 0)
        if not self.cuda:
            return n_bad, self._copy(batch)
        with torch.cuda.stream(self.stream):
            return n_bad, self._copy(batch)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._next
        if item is None:
            raise StopIteration
        if self.cuda:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)  # this batch's copy is done before the step reads it
            for v in item[1].values():
                v.record_stream(current)  # its memory is not reused by the side stream too early
        self._next = self._load()  # start the next copy now: it overlaps this step's compute
        return item


class NonFiniteWatch:
    """The first step (>= 1) with a non-finite loss, kept on the device; -1 while all are finite."""

    def __init__(self, device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        cuda = self.first_bad.is_cuda
        self._host = torch.full((), -1, dtype=torch.long, pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda else None

    def update(self, step: int, loss: torch.Tensor) -> None:
        """No host sync: a device-side where."""
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)

    def poll(self) -> int:
        """Non-blocking: the step from the copy started at the previous poll (if it has landed),
        then start a new copy. -1 when nothing non-finite is known yet."""
        if self._event is None:
            return int(self.first_bad)
        bad = int(self._host) if self._event.query() else -1  # pinned host tensor: no device sync
        self._host.copy_(self.first_bad, non_blocking=True)
        self._event.record()
        return bad

    def check(self) -> int:
        """Blocking read (a host sync): for report steps, where the step syncs anyway."""
        return int(self.first_bad)
