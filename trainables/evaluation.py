"""Held-out evaluation of a training engine: the caption loss with each clip's own frames and
with another clip's (a fixed derangement of the split), and the vision gap between the two."""
from __future__ import annotations

import math

import numpy as np
import torch

from search_spaces import metric_names as M
from trainables.data.pipeline import derangement, eval_batches, normalise_frames

EVAL_BATCH = 32
EVAL_SHUFFLE_SEED = 1234  # the shuffled-frames pairing: the same for every trial


def _to_device(batch: dict, device, dtype) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "n_bad_rows"}
    out["frames"] = normalise_frames(out["frames"], dtype)  # uint8 on the host, normalised here
    return out


@torch.no_grad()
def _eval_pass(engine, eval_set, dtype, frames_from: torch.Tensor | None = None,
               positions: list | None = None) -> list[tuple[float, int]]:
    """(caption loss sum, caption tokens) per eval batch, in order. positions: a list that gets
    the pass's (loss sum, tokens) per caption position, summed over batches."""
    engine.eval()
    out, pos_loss, pos_n = [], 0.0, 0
    for batch in eval_batches(eval_set, EVAL_BATCH, frames_from=frames_from):
        res = engine(**_to_device(batch, engine.device, dtype))
        out.append((float(res["loss_sum"]), int(res["n_tokens"])))
        if positions is not None:
            pos_loss = pos_loss + res["position_loss_sum"].double().cpu()
            pos_n = pos_n + res["position_tokens"].cpu()
    engine.train()
    if positions is not None:
        positions.extend([pos_loss, pos_n])
    return out


def field_losses(positions: list, fields: tuple[str, ...]) -> dict[str, float]:
    """Caption loss per field: field k is caption token k, label position k + 1 (after BOS)."""
    loss, n = positions
    return {f"{M.EVAL_FIELD_PREFIX}{name}": float(loss[k + 1] / n[k + 1])
            for k, name in enumerate(fields) if k + 1 < len(n) and n[k + 1] > 0}


def _se(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def evaluate(engine, eval_set, dtype, shuffle_frames: bool = True,
             fields: tuple[str, ...] | None = None) -> dict[str, float]:
    """Mean caption loss over the held-out split and its standard error over eval batches.

    With shuffle_frames, also the loss with every caption paired with another clip's frames
    (a derangement of the whole split, fixed by EVAL_SHUFFLE_SEED, so no clip keeps its own
    and every run is scored on the same pairs) and the vision gap, shuffled - true; the gap's
    standard error is over the per-batch paired differences (same captions in both passes).
    fields: what each caption token names (a fixed-format caption): adds the loss per field.
    """
    positions = [] if fields else None
    true = _eval_pass(engine, eval_set, dtype, positions=positions)
    sums, counts = sum(s for s, _ in true), sum(n for _, n in true)
    means = [s / max(n, 1) for s, n in true]
    out = {M.EVAL_LOSS: sums / max(counts, 1), M.EVAL_LOSS_SE: _se(means)}
    if fields:
        out.update(field_losses(positions, fields))
    if shuffle_frames and len(eval_set) >= 2:
        perm = derangement(len(eval_set), torch.Generator().manual_seed(EVAL_SHUFFLE_SEED))
        shuf = _eval_pass(engine, eval_set, dtype, perm)
        s_sums, s_counts = sum(s for s, _ in shuf), sum(n for _, n in shuf)
        s_means = [s / max(n, 1) for s, n in shuf]
        out[M.EVAL_LOSS_SHUFFLED] = s_sums / max(s_counts, 1)
        out[M.EVAL_LOSS_SHUFFLED_SE] = _se(s_means)
        out[M.VISION_GAP] = out[M.EVAL_LOSS_SHUFFLED] - out[M.EVAL_LOSS]
        out[M.VISION_GAP_SE] = _se([b - a for a, b in zip(means, s_means)])
    return out
