"""Throughput, MFU and memory metrics reported with every trial report."""
from __future__ import annotations

import time

import torch

from search_spaces.metric_names import SAMPLES_PER_S
from trainables.flops import mfu


class ThroughputMeter:
    """Samples/s over training time only: eval and checkpoint time are paused out."""

    def __init__(self, samples: int):
        self._t0 = time.perf_counter()
        self._train_s = 0.0
        self._samples0 = samples
        self._samples = samples

    def pause(self, samples: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # note: GPU work is async; time what actually finished
        self._train_s += time.perf_counter() - self._t0
        self._samples = samples

    def resume(self) -> None:
        self._t0 = time.perf_counter()

    def rates(self, flops_per_sample: float, peak_flops: float | None) -> dict:
        sps = (self._samples - self._samples0) / self._train_s if self._train_s > 0 else 0.0
        self._samples0, self._train_s = self._samples, 0.0
        achieved = sps * flops_per_sample
        utilisation = mfu(sps, flops_per_sample, peak_flops)
        return {
            SAMPLES_PER_S: sps,
            "tflops": achieved / 1e12,
            "mfu": float("nan") if utilisation is None else utilisation,
        }


def memory_metrics() -> dict:
    import psutil

    out = {"host_rss_gib": psutil.Process().memory_info().rss / 2**30}
    if torch.cuda.is_available():
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        out["peak_gpu_mem_gib"] = 0.0
    return out
