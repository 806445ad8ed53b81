"""The planner (trainables/planner.py) on the original experiment plan's configs at 24 GiB, its errors, and the
72-row phase-4 dry run."""
from __future__ import annotations

import itertools
import json

import pytest

from search_spaces.errors import ConfigError
from search_spaces.sizes import GRID_VARIANTS, REAL_CONFIGS, VARIANTS
from search_spaces.trial import TrialConfig
from trainables.planner import dry_run_rows, dry_run_totals, format_table, plan_trial

PLAN_GIB = 24.0  # the plan's RTX 4090


def plan_setting(config: str, variant: str, **kw) -> TrialConfig:
    """The plan's setting: 8 frames x 224^2, ~64 caption tokens, global batch 16."""
    return TrialConfig(**{**dict(variant=variant, config=config, steps=1000, frames=8, text_len=64), **kw})


@pytest.fixture(scope="module")
def plan_trials():
    return {(c, v): plan_trial(plan_setting(c, v), PLAN_GIB) for c in REAL_CONFIGS for v in VARIANTS}


def test_plans_fit_and_accumulate_to_the_global_batch(plan_trials):
    for (c, v), p in plan_trials.items():
        assert p.memory.gpu_gib <= PLAN_GIB
        assert p.micro_batch * p.grad_accum == 16
        cfg = p.apply(plan_setting(c, v))  # a valid TrialConfig carrying the plan
        assert (cfg.micro_batch, cfg.grad_accum, cfg.offload) == (p.micro_batch, p.grad_accum, p.offload)


def test_the_plans_table_in_spirit(plan_trials):
    for v in VARIANTS:
        for c in ("S-S", "S-B"):  # the plan: S-* at batch 16
            p = plan_trials[(c, v)]
            assert (p.micro_batch, p.offload, p.grad_checkpointing) == (16, False, False)
        for c in ("M-S", "M-B"):  # the plan: 8-12
            assert plan_trials[(c, v)].micro_batch >= 8 and not plan_trials[(c, v)].offload
        assert plan_trials[("M-L", v)].micro_batch <= 8  # the plan: 4-8
        for c in ("L-S", "L-B", "L-L"):  # the plan: needs accumulation tricks; here ZeRO offload
            assert plan_trials[(c, v)].offload
    # nothing needs checkpointing at 24 GiB with 8 frames
    assert not any(p.grad_checkpointing for p in plan_trials.values())


def _le(a: str, b: str) -> bool:
    """Config a is no larger than b in both the LLM and the ViT (S < M < L, S < B < L)."""
    rank = {"S": 0, "M": 1, "B": 1, "L": 2}
    (al, av), (bl, bv) = a.split("-"), b.split("-")
    return rank[al] <= rank[bl] and rank[av] <= rank[bv]


def test_larger_configs_never_get_a_larger_micro_batch(plan_trials):
    """Monotone within a memory mode. Across modes it need not be (and is not): L-L foveated,
    offloaded, keeps only 2 B/param on the GPU and fits micro-batch 8, while M-L, which fits
    without offload, keeps 16 B/param there and fits 4. Offloading M-L to get 8 would cost
    a host Adam step per optimizer step for nothing: accumulation is free."""
    for v in VARIANTS:
        for a, b in itertools.permutations(REAL_CONFIGS, 2):
            pa, pb = plan_trials[(a, v)], plan_trials[(b, v)]
            if _le(a, b) and (pa.offload, pa.grad_checkpointing) == (pb.offload, pb.grad_checkpointing):
                assert pb.micro_batch <= pa.micro_batch, (v, a, b)
    assert plan_trials[("L-L", "foveated")].micro_batch > plan_trials[("M-L", "foveated")].micro_batch


def test_memory_savers_only_when_needed():
    s_s = plan_trial(plan_setting("S-S", "baseline"), PLAN_GIB)
    assert not s_s.offload and not s_s.grad_checkpointing
    # 16 frames of DINOv2-L at 12 GiB: not even micro-batch 1 fits without recomputation
    p = plan_trial(plan_setting("S-L", "baseline", frames=16), 12.0)
    assert p.grad_checkpointing and not p.offload
    # a bigger card never gets a smaller micro-batch or more savers
    for c in REAL_CONFIGS:
        small, big = plan_trial(plan_setting(c, "foveated"), 24.0), plan_trial(plan_setting(c, "foveated"), 80.0)
        assert big.micro_batch >= small.micro_batch or small.offload > big.offload
        assert (big.offload, big.grad_checkpointing) <= (small.offload, small.grad_checkpointing)


def test_non_power_of_two_global_batch_uses_a_divisor():
    p = plan_trial(plan_setting("S-S", "foveated", global_batch=12, micro_batch=12), PLAN_GIB)
    assert p.micro_batch == 4 and p.grad_accum == 3


@pytest.mark.parametrize("gib", [0, -8.0])
def test_error_non_positive_memory(gib):
    with pytest.raises(ConfigError, match="positive"):
        plan_trial(plan_setting("S-S", "foveated"), gib)


def test_error_no_candidate_divides_the_global_batch():
    with pytest.raises(ConfigError, match="not divisible") as e:
        plan_trial(plan_setting("S-S", "foveated", global_batch=12, micro_batch=12), PLAN_GIB, micro_batches=(8, 16))
    assert "\n" not in str(e.value)


def test_error_nothing_fits():
    with pytest.raises(ConfigError, match="does not fit") as e:
        plan_trial(plan_setting("L-L", "baseline"), 4.0)
    assert "\n" not in str(e.value)


def phase4() -> list[TrialConfig]:
    return [plan_setting(c, v, steps=s) for c in REAL_CONFIGS for v in GRID_VARIANTS for s in (100, 300, 1000, 3000)]


def test_phase4_dry_run_72_rows():
    """Its speed is measured, not asserted here (docs/measurements.md); that planning builds no
    model and imports no torch is test_dry_run_imports_no_torch_and_builds_no_model."""
    trials = phase4()
    rows = dry_run_rows(trials, PLAN_GIB, gpu_name="H100")
    assert len(rows) == 72
    for r, cfg in zip(rows, trials):
        assert r["total_flops"] == pytest.approx(cfg.steps * cfg.global_batch * r["flops_per_sample"])
        assert r["n_params"] > r["n_params_llm"] > 0 and r["n_params_vision"] > 0
        assert r["gpu_mem_gib"] <= PLAN_GIB and r["gpu_hours"] > 0
    totals = dry_run_totals(rows, PLAN_GIB, "H100")
    assert totals["total_flops"] == pytest.approx(sum(r["total_flops"] for r in rows))
    text = format_table(rows, totals)
    lines = text.splitlines()
    assert len(lines) == 72 + 3 and len({len(l) for l in lines[:2]}) == 1  # header and rule aligned
    assert json.loads(json.dumps({"rows": rows, "totals": totals}))["totals"]["trials"] == 72  # --format json


def test_dry_run_time_model():
    trials = [plan_setting("S-S", "foveated", steps=100), plan_setting("L-L", "baseline", steps=100)]
    base = dry_run_rows(trials, PLAN_GIB, mfu_assumption=0.35)
    slower = dry_run_rows(trials, PLAN_GIB, mfu_assumption=0.175)
    assert slower[0]["gpu_hours"] == pytest.approx(2 * base[0]["gpu_hours"])
    measured = dry_run_rows(trials, PLAN_GIB, samples_per_s={("foveated", "S-S"): 16.0})
    assert measured[0]["gpu_hours"] == pytest.approx(100 * 16 / 16.0 / 3600)
    assert measured[0]["time_from"] == "measured" and measured[1]["time_from"].startswith("mfu")
    a100 = dry_run_rows(trials, PLAN_GIB, gpu_name="A100")
    assert a100[0]["gpu_hours"] > base[0]["gpu_hours"]
    with pytest.raises(ConfigError):
        dry_run_rows(trials, PLAN_GIB, mfu_assumption=0)
    with pytest.raises(ConfigError, match="unknown GPU"):
        dry_run_rows(trials, PLAN_GIB, gpu_name="Voodoo2")


def test_dry_run_uses_measured_mfu_per_size_class():
    from trainables.measured_mfu import MEASURED_MFU, mfu_for

    trials = [plan_setting("M-S", "baseline", steps=100), plan_setting("M-L", "foveated", steps=100),
              plan_setting("S-S", "foveated", steps=100)]
    rows = dry_run_rows(trials, PLAN_GIB, gpu_name="H200")
    assumed = dry_run_rows(trials, PLAN_GIB, gpu_name="H200", mfu_assumption=0.35)
    exact = MEASURED_MFU[("baseline", "M-S")]
    assert rows[0]["time_from"] == f"mfu={exact:g} (measured M-S baseline)"
    # same FLOPs, measured (lower) MFU: the bill grows by 0.35 / measured
    assert rows[0]["gpu_hours"] == pytest.approx(assumed[0]["gpu_hours"] * 0.35 / exact)
    # M-L foveated: nothing measured at that config; the same variant's M class is used
    assert rows[1]["time_from"] == f"mfu={MEASURED_MFU[('foveated', 'M-S')]:g} (measured M-S foveated)"
    # S-*: no S measured; the nearest class (M) stands in, and the row says so
    assert "nearest measured size" in rows[2]["time_from"] and rows[2]["gpu_hours"] > assumed[2]["gpu_hours"]
    assert mfu_for("baseline", "S-S", table={}) is None


@pytest.mark.parametrize("args, total", [
    (["--seeds", "2"], "total: 144 trials (72 cells x 2 seeds)"),
    (["--seeds", "1", "--variants", "foveated,baseline,pooled1"], "total: 108 trials"),
], ids=["grid-arms", "with-pooled1"])
def test_dry_run_imports_no_torch_and_builds_no_model(args, total):
    """Planning the phase grids reads the parameter table: no torch / transformers / DeepSpeed."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, tune_scaling\n"
            f"assert tune_scaling.main(['--grid', 'phase4', '--dry-run', *{args!r}]) == 0\n"
            "heavy = [m for m in ('torch', 'transformers', 'deepspeed', 'ray') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    n = int(total.split()[1])
    assert total in lines[-3] and len(lines) == n + 5 and lines[-1].startswith("learning rates: size rule")
