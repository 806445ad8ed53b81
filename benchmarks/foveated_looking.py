"""Does the foveated query learn to look? One foveated trial, trained in-process, and three probes.

The ladder's foveated arm learns the colour of the graded task and, at its smaller sizes, little
else (docs/ladder.md). This script asks where that stops, on the trainer's own engine, data and
learning rates (the grid's committed table):

* the caption loss per field (the trainer's `evaluate`: what is learned);
* **attention on the target**: the share of the query's attention, per ViT layer, that falls on the
  patch holding the target in that frame (the most colourful patch: on the synthetic tasks the
  target is the only coloured object), for frame 0 (the learned first query) and frames 1+ (queries
  the LLM made from the coarse pass); 1 / (patches + 1) is what uniform attention gives;
* **a linear probe** of the visual tokens at the end: per field, the held-out cross-entropy of a
  logistic regression on all frames' tokens (what the LLM could read off them linearly), next to
  the field's entropy in the probe's training clips (what a guess from the frequencies gives).

`--order-seed K` trains on another (seeded) order of the same training clips: the same model init
and samples, another trajectory. Run on CPU in about 15 s per 400 steps for T1-T1:

    python benchmarks/foveated_looking.py --config T1-T1 --steps 800 --every 400
    python benchmarks/foveated_looking.py --config T1-T1 --steps 800 --order-seed 1
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.grids import expand, get_grid  # noqa: E402
from search_spaces.metric_names import EVAL_FIELD_PREFIX, EVAL_LOSS, VISION_GAP  # noqa: E402
from trainables.data.pipeline import collate, normalise_frames, train_loader  # noqa: E402
from trainables.evaluation import evaluate  # noqa: E402
from trainables.hot_loop import DevicePrefetcher  # noqa: E402
from trainables.learning_rates import assign  # noqa: E402
from trainables.train import build_trial  # noqa: E402


def target_patch(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """uint8 frames [B, T, 3, H, W] -> token index (1 + patch, CLS is 0) of the most colourful
    patch per frame [B, T]: mean over its pixels of max - min over the colour channels."""
    f = frames.float()
    chroma = f.max(2).values - f.min(2).values  # [B, T, H, W]
    B, T, H, W = chroma.shape
    gh, gw = H // patch, W // patch
    per_patch = chroma[:, :, : gh * patch, : gw * patch].reshape(B, T, gh, patch, gw, patch).mean((3, 5))
    return 1 + per_patch.flatten(2).argmax(-1)


@torch.no_grad()
def attention_on_target(model, frames_u8: torch.Tensor) -> list[dict[str, float]]:
    """Per ViT layer: mean attention (over heads and clips) of the fine pass's queries on the
    target's patch, for frame 0 and for frames 1+."""
    vision = model.vision
    frames = normalise_frames(frames_u8, torch.float32)
    B, T = frames.shape[:2]
    target = target_patch(frames_u8, vision.patch)
    cache = vision.encode_cache(frames.flatten(0, 1))
    x = model.query_in(model.frame_queries(cache, B, T).flatten(0, 1))[:, None, :]
    out = []
    for layer, (k, v) in zip(vision.layers, cache):
        q = vision._heads(layer.attention.q_proj(layer.norm1(x)))
        w = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)  # [B*T, heads, 1, S]
        on = w.mean(1)[:, 0].view(B, T, -1).gather(-1, target[..., None])[..., 0]  # [B, T]
        out.append({"frame0": float(on[:, 0].mean()), "later": float(on[:, 1:].mean()) if T > 1 else math.nan,
                    "uniform": 1.0 / k.shape[2]})
        x = vision._query_layer(layer, x, k, v)
    return out


@torch.no_grad()
def visual_features(model, ds, rows: range, batch: int = 64) -> tuple[torch.Tensor, list[list[str]]]:
    feats, words = [], []
    for s in range(rows.start, rows.stop, batch):
        items = [ds[i] for i in range(s, min(s + batch, rows.stop))]
        b = collate(items)
        feats.append(model.visual_tokens(normalise_frames(b["frames"], torch.float32)).flatten(1))
        words += [str(ds.row(i)["caption"]).split() for i in range(s, min(s + batch, rows.stop))]
    return torch.cat(feats), words


def linear_probe(model, data, fields: tuple[str, ...], n_train: int) -> dict[str, dict[str, float]]:
    """Per field: held-out CE of an L2-regularised logistic regression on the visual tokens, and
    the entropy of the field's values in the probe's training clips."""
    model.eval()
    x_tr, w_tr = visual_features(model, data.train, range(n_train))
    x_ev, w_ev = visual_features(model, data.eval, range(len(data.eval)))
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_ev = (x_tr - mu) / sd, (x_ev - mu) / sd
    out = {}
    for k, name in enumerate(fields):
        values = sorted({w[k] for w in w_tr})
        y_tr = torch.tensor([values.index(w[k]) for w in w_tr])
        keep = [i for i, w in enumerate(w_ev) if w[k] in values]  # an eval value unseen in training cannot be scored
        y_ev = torch.tensor([values.index(w_ev[i][k]) for i in keep])
        W = torch.zeros(x_tr.shape[1], len(values), requires_grad=True)
        b = torch.zeros(len(values), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=200)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(x_tr @ W + b, y_tr) + 1e-3 * W.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        p = torch.bincount(y_tr, minlength=len(values)).float() / len(y_tr)
        with torch.no_grad():
            ce = F.cross_entropy(x_ev[keep] @ W + b, y_ev).item()
        out[name] = {"probe_ce": ce, "guess_ce": float(-(p[p > 0] * p[p > 0].log()).sum())}
    model.train()
    return out


def trainer_order(t):
    """The trainer's own batches (its seeded epoch order, train_loader + DevicePrefetcher)."""
    cursor, loader = train_loader(t.data.train, t.cfg, None)
    for _, batch in DevicePrefetcher(loader, t.engine.device, t.dtype):
        cursor.advance()
        yield batch


def seeded_order(t, order_seed: int):
    """The same training clips in another order: a torch permutation seeded with order_seed."""
    ds, mb = t.data.train, t.cfg.micro_batch
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(order_seed))
    for start in range(0, 10**12, mb):
        batch = collate([ds[int(order[(start + i) % len(order)])] for i in range(mb)])
        batch.pop("n_bad_rows")
        batch["frames"] = normalise_frames(batch["frames"], t.dtype)
        yield batch


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="ladder")
    p.add_argument("--config", default="T1-T1")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--every", type=int, default=400, help="evaluate and probe attention every N steps")
    p.add_argument("--seed", type=int, default=0, help="the trial's seed (model init and the trainer's data order)")
    p.add_argument("--order-seed", type=int, default=None,
                   help="train on another seeded order of the same clips (default: the trainer's own order)")
    p.add_argument("--lr", type=float, default=None, help="default: the grid's learning-rate table")
    p.add_argument("--probe-clips", type=int, default=3000, help="training clips for the linear probe (0: skip it)")
    p.add_argument("--attention-clips", type=int, default=64)
    p.add_argument("--override", action="append", default=[], help="trial setting key=json, e.g. eval_size=64")
    return p.parse_args(argv)


def main(argv=None) -> int:
    torch.set_num_threads(1)
    args = parse_args(argv)
    grid = get_grid(args.grid)
    overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.override)}
    (cfg,) = expand(grid, [args.config], ["foveated"], [args.steps], {"schedule": "wsd", **overrides})
    (cfg,), source = assign(grid, [cfg.replace(seed=args.seed)], lr=args.lr, lr_backbone=args.lr)
    print(f"foveated {cfg.config} seed {cfg.seed}, {cfg.steps} steps, lr {cfg.lr:g} ({source})", flush=True)
    t = build_trial(cfg)
    engine, data, fields = t.engine, t.data, t.data.caption_fields or ()
    batches = trainer_order(t) if args.order_seed is None else seeded_order(t, args.order_seed)
    attn_frames = collate([data.eval[i] for i in range(min(args.attention_clips, len(data.eval)))])["frames"]
    rows, start = [], time.time()
    engine.train()
    for step in range(1, cfg.steps + 1):
        out = engine(**next(batches))
        engine.backward(out["loss"])
        engine.step()
        if step % args.every == 0 or step == cfg.steps:
            ev = evaluate(engine, data.eval, t.dtype, fields=fields)
            row = {"step": step, "eval_loss": ev[EVAL_LOSS], "vision_gap": ev.get(VISION_GAP),
                   "fields": {f: ev.get(EVAL_FIELD_PREFIX + f) for f in fields},
                   "attention_on_target": attention_on_target(engine.module, attn_frames)}
            engine.train()
            rows.append(row)
            att = "  ".join(f"L{i}: {a['frame0']:.3f} / {a['later']:.3f}" for i, a in enumerate(row["attention_on_target"]))
            print(f"step {step:5d}  eval {row['eval_loss']:.3f}  "
                  + " ".join(f"{f} {v:.3f}" for f, v in row["fields"].items())
                  + f"  | attention on target (frame 0 / later), uniform "
                  f"{row['attention_on_target'][0]['uniform']:.3f}: {att}  ({time.time() - start:.0f} s)", flush=True)
    probe = linear_probe(engine.module, data, fields, min(args.probe_clips, len(data.train))) if args.probe_clips and fields else {}
    for f, r in probe.items():
        print(f"linear probe  {f:9s} CE {r['probe_ce']:.3f}  (guess from frequencies {r['guess_ce']:.3f})")
    print(json.dumps({"config": cfg.config, "seed": cfg.seed, "order_seed": args.order_seed, "lr": cfg.lr,
                      "rows": rows, "linear_probe": probe}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
