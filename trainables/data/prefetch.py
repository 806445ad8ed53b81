"""How much the data loader holds in host memory (torch-free: the planner imports it).

A trial's loader keeps `workers x PREFETCH_FACTOR` decoded batches in flight, plus the pinned
copy on its way to the GPU and the batch in use; frames travel as uint8 (normalised on the
device), so a sample is T x 3 x H x W bytes plus its int64 caption ids, mask and labels.
"""
from __future__ import annotations

PREFETCH_FACTOR = 2  # batches each loader worker decodes ahead
GPU_WORKERS = 4  # loader worker processes of a CUDA trial (FOVEATED_DATA_WORKERS overrides)
EVAL_BATCH = 32  # the trainer's eval batch (trainables/train.py): its batches are in flight too


def sample_bytes(cfg) -> int:
    return cfg.frames * 3 * cfg.image_size**2 + 3 * cfg.text_len * 8


def pipeline_host_bytes(cfg, micro_batch: int | None = None, workers: int = GPU_WORKERS) -> float:
    """Host bytes of one trial's loader. A parquet source adds up to sources.CACHED_GROUPS cached row
    groups per loader process (sources.ParquetRows.largest_group_bytes; --check-data prints it)."""
    batch = max(cfg.micro_batch if micro_batch is None else micro_batch, EVAL_BATCH)
    in_flight = max(1, workers) * PREFETCH_FACTOR + 2
    return float(in_flight * batch * sample_bytes(cfg))
