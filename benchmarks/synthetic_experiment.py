"""Write a Ray-Tune-shaped experiment directory from a known law, without Ray or a trainer.

    python benchmarks/synthetic_experiment.py OUT_DIR [--seeds 1] [--blind foveated:T2-T2] [--noise 0.03]

Each trial gets the files fitting/table.py reads (params.json with the trial config under
"trial", result.json with one JSON line per milestone report, experiment_state-*.json with
its status), shaped like the smoke grid: 3 tiny configs x variants x 3 step counts x seeds.
Losses follow L = E + A/N^alpha + B/D^beta per variant, plus one noise draw per run (seed
spread) and a smaller one per evaluation. The shuffled-frames loss is the true-frames loss
plus a per-variant vision gap, reported with its paired SE (eval_vision_gap[_se]) as the
trainer does. A --blind run is the trainer's control with zeroed visual tokens
(zero_visual_tokens): gap exactly 0, shuffled loss equal to its loss. --blind names an arm
("foveated"), a cell ("foveated:T2-T2") or one seed's runs ("foveated:T1-T1:s1").
Used by benchmarks/fit_speed.py --experiment and the fitting tests.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CONFIGS = {"T1-T1": (2.6e5, 8.2e4, 1.5e5), "T1-T2": (3.4e5, 8.2e4, 2.3e5), "T2-T2": (5.5e5, 2.2e5, 2.3e5)}
STEPS = (150, 300, 600)
BATCH = 16
# per variant: E, A, alpha, B, beta, vision gap, FLOPs per (N * sample)
LAW = {"foveated": (0.9, 40.0, 0.3, 8.0, 0.35, 0.3, 30.0),
       "baseline": (0.85, 40.0, 0.3, 9.0, 0.35, 0.4, 70.0),
       "pooled1": (0.95, 40.0, 0.3, 8.0, 0.35, 0.2, 25.0)}
# per config: the learning rates (new parameters, backbones) in each trial's config
LRS = {"T1-T1": (3e-3, 1e-3), "T1-T2": (3e-3, 1e-3), "T2-T2": (2e-3, 7e-4)}


def is_blind(blind, variant: str, config: str, seed: int) -> bool:
    return bool({variant, f"{variant}:{config}", f"{variant}:{config}:s{seed}"} & set(blind))


def write_experiment(root, variants=("foveated", "baseline"), seeds: int = 1, blind=(), noise: float = 0.03,
                     eval_se: float = 0.005, rng_seed: int = 0, steps=STEPS, configs=CONFIGS, laws=LAW) -> Path:
    """Write the experiment under `root` (created) and return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    trial_data = []
    i = 0
    for variant in variants:
        e, a, alpha, b, beta, arm_gap, k = laws[variant]
        for config, (n, n_llm, n_vis) in configs.items():
            for trial_steps in steps:
                for seed in range(seeds):
                    name = f"trial_{i:04d}"
                    tid = f"t{i:04d}"
                    i += 1
                    blind_run = is_blind(blind, variant, config, seed)
                    gap = 0.0 if blind_run else arm_gap
                    lr, lr_backbone = LRS.get(config, (1e-3, 1e-4))
                    cfg = {"variant": variant, "config": config, "steps": trial_steps, "seed": seed,
                           "schedule": "cosine", "lr": lr, "lr_backbone": lr_backbone,
                           "zero_visual_tokens": blind_run}
                    tdir = root / name
                    tdir.mkdir(exist_ok=True)
                    (tdir / "params.json").write_text(json.dumps({"trial": cfg}))
                    run_offset = rng.normal(0, noise)  # seed-to-seed spread of this run
                    lines = []
                    for step in (trial_steps // 4, trial_steps // 2, trial_steps):
                        samples = step * BATCH
                        law = e + a / n**alpha + b / samples**beta
                        undecayed = 0.0 if step == trial_steps else 0.05
                        loss = law + run_offset + undecayed + rng.normal(0, eval_se)
                        rep = {"trial_id": tid, "variant": variant, "config_id": config, "step": step,
                               "trial_steps": trial_steps, "samples": samples, "tokens": samples * 20,
                               "flops": k * n * samples, "n_params": n, "n_params_llm": n_llm,
                               "n_params_vision": n_vis, "eval_loss": loss, "eval_loss_se": eval_se,
                               "train_loss": loss, "milestone": True, "schedule": "cosine", "config": cfg}
                        if step == trial_steps:
                            shuffled = loss + gap + (rng.normal(0, eval_se) if gap else 0.0)
                            rep["eval_loss_shuffled_frames"] = shuffled
                            rep["eval_loss_shuffled_frames_se"] = eval_se
                            rep["eval_vision_gap"] = shuffled - loss
                            # paired over batches: the captions' own difficulty cancels
                            rep["eval_vision_gap_se"] = eval_se / 2 if gap else 0.0
                        lines.append(json.dumps(rep))
                    (tdir / "result.json").write_text("\n".join(lines) + "\n")
                    trial_data.append([json.dumps({"relative_logdir": name, "status": "TERMINATED"}), ""])
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    return root


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--variants", default="foveated,baseline")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--blind", default="", help="comma-separated arms, arm:config cells or arm:config:sSEED "
                    "runs whose visual tokens are zeroed (gap 0)")
    ap.add_argument("--noise", type=float, default=0.03, help="sd of the per-run loss offset")
    a = ap.parse_args(argv)
    out = write_experiment(a.out, a.variants.split(","), a.seeds, [b for b in a.blind.split(",") if b], a.noise)
    print(out)


if __name__ == "__main__":
    main()
