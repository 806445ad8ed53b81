"""The GPU benchmark scripts still run (on CPU, tiny configs): their numbers come from a GPU,
but a script that broke since it was last run on one would waste the GPU time of its next run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_trainer_throughput_runs_both_paths(capsys, tmp_path):
    import trainer_throughput

    assert trainer_throughput.main(["--config", "T1-T1", "--micro-batch", "2", "--frames", "2",
                                    "--steps", "2", "--warmup", "1", "--profile", str(tmp_path),
                                    "--profile-steps", "1", "--trace"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["path"] for r in out["runs"]] == ["plain", "trainer"]
    assert all(r["samples_per_s"] > 0 and r["tflops"] > 0 for r in out["runs"])
    assert out["flops_per_sample"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace_plain.json", "trace_trainer.json"]
    trainer = out["runs"][1]  # its losses: warm-up + timed steps, read after the timed loop
    assert trainer["n_steps"] == 3 and 0 < trainer["last_loss"] < 20 and 0 < trainer["first_loss"] < 20


def test_trainer_throughput_alternates_windows_and_reports_medians(capsys):
    import trainer_throughput

    assert trainer_throughput.main(["--device", "cpu", "--config", "T1-T1", "--micro-batch", "2", "--frames", "2",
                                    "--text-len", "8", "--steps", "1", "--warmup", "1", "--repeats", "3",
                                    "--plan-gpu-mem", "24", "--global-batch", "4"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["plan"]["gpu_mem_gib"] == 24 and out["micro_batch"] * out["grad_accum"] == 4
    for r in out["runs"]:
        assert len(r["windows_s"]) == 3 and r["seconds"] == sorted(r["windows_s"])[1]
    assert out["runs"][1]["n_steps"] == 1 + 3  # warm-up + one step per window


def test_memory_check_lists_every_distinct_phase4_plan(capsys):
    import memory_check

    choices = memory_check.grid_choices("phase4", 24.0)
    keys = {(c["variant"], c["config"]) for c in choices}
    assert len(keys) == len(choices) == 18  # one plan per (variant, config): steps do not change it
    assert {c[0] for c in {k[1] for k in keys}} == {"S", "M", "L"}
    assert all(c["pred_gpu_total_gib"] <= 24.0 for c in choices)
    tightest = max(choices, key=lambda c: c["pred_gpu_total_gib"])
    assert (tightest["variant"], tightest["config"], tightest["micro_batch"]) == ("foveated", "M-S", 32)
    assert all(c["offload"] == c["config"].startswith("L") for c in choices)
    memory_check.main(["--grid", "phase4", "--gpu-mem", "24", "--list", "--plans", "offload"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("6 distinct planner choices of phase4 at 24 GiB") and len(lines) == 7


def test_summary_tables_from_a_log(tmp_path, capsys):
    import summarize_gpu_checks as summary

    def record(config, variant, offload, mb, accum, runs, plan=None):
        return json.dumps({"device": "GPU", "config": config, "variant": variant, "micro_batch": mb, "grad_accum": accum,
                           "offload": offload, "ckpt": False, "compile": False, "zero": {}, "plan": plan, "runs": runs})

    def run(path, sps, mfu, peak=10.0):
        return {"path": path, "samples_per_s": sps, "mfu": mfu, "peak_gib": peak, "reserved_gib": peak + 1}

    log = tmp_path / "gpu.log"
    log.write_text("\n".join([
        "=== step", record("L-S", "baseline", False, 32, 1, [run("plain", 40.0, 0.2), run("trainer", 50.0, 0.25)],
                           {"gpu_mem_gib": 139, "planned_gib": 60.0}),
        record("L-L", "baseline", False, 4, 8, [run("trainer", 20.0, 0.1)]),
        record("L-L", "baseline", True, 4, 8, [run("trainer", 12.0, 0.06, 21.0)]),
        '{"device": "cut off by a time lim']))
    mem = tmp_path / "memory.json"
    mem.write_text(json.dumps([{"variant": "foveated", "config": "M-S", "micro_batch": 32, "grad_accum": 1,
                                "offload": False, "ckpt": False, "peak_alloc_gib": 20.0, "pred_peak_alloc_gib": 21.0,
                                "peak_reserved_gib": 24.5}]))
    assert summary.main([str(log), str(mem)]) == 0
    text = capsys.readouterr().out
    assert "| L-S | baseline | 32 × 1 | no | 40.0 (20.0%) | 50.0 (25.0%) | 1.25× | 10.00 / 11.00 | 60.00 |" in text
    assert "| L-L | baseline | 4 × 8 | 12.0 | 20.0 | 60% | 21.00 / 22.00 |" in text
    assert "| M-S | foveated | 32 × 1 | no | no | 20.00 | 21.00 | +5.0% | 24.50 | **no** |" in text
    assert '    ("baseline", "L-S"): 0.25,' in text and '"L-L"): 0.1' not in text  # only planned runs


def test_compare_verdicts_agrees_with_itself_and_names_a_flipped_verdict(tmp_path, capsys, monkeypatch):
    import compare_verdicts

    fits = {"vision_runs": [{"group": "foveated", "config": "T1-T1", "seed": 0, "sees": True}],
            "vision": {"foveated": {"cells": {"T1-T1": {"n_seeing": 1, "n_runs": 1}}}},
            "derived": {"comparisons": {"foveated vs baseline": {"status": "not identified"}},
                        "optimal_allocation": {"foveated": {"status": "ok"}}},
            "laws": {"L(C)": {"foveated": {"status": "ok", "flags": {"alpha": [], "E": ["at bound"]}}}}}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "fits.json").write_text(json.dumps(fits))
    monkeypatch.setattr(sys, "argv", ["compare_verdicts.py", str(tmp_path / "a"), str(tmp_path / "b")])
    assert compare_verdicts.main() == 0
    assert "5 of 5 verdicts agree" in capsys.readouterr().out
    fits["vision_runs"][0]["sees"] = False
    (tmp_path / "b" / "fits.json").write_text(json.dumps(fits))
    assert compare_verdicts.main() == 1
    out = capsys.readouterr().out
    assert "!! run foveated T1-T1 s0: sees  |  BLIND" in out and "1 differ" in out


def test_target_patch_is_the_patch_holding_the_coloured_object():
    import foveated_looking

    frames = torch.full((2, 3, 3, 56, 56), 120, dtype=torch.uint8)  # grey clips, 4x4 patches of 14 px
    frames[:, :, 1] += torch.randint(0, 20, frames[:, :, 1].shape, dtype=torch.uint8)  # a faint tint everywhere
    frames[0, 1, :, 30:38, 2:10] = torch.tensor([230, 40, 40], dtype=torch.uint8)[:, None, None]  # red: patch (2, 0)
    frames[1, 2, :, 0:8, 44:52] = torch.tensor([40, 90, 240], dtype=torch.uint8)[:, None, None]  # blue: patch (0, 3)
    got = foveated_looking.target_patch(frames, 14)
    assert got[0, 1] == 1 + 2 * 4 + 0 and got[1, 2] == 1 + 0 * 4 + 3


@pytest.mark.slow
def test_foveated_looking_reports_fields_attention_per_layer_and_a_probe(capsys):
    import foveated_looking

    assert foveated_looking.main(["--config", "T0-T0", "--steps", "4", "--every", "2", "--probe-clips", "48",
                                  "--override", "eval_size=16", "--override", "dataset_size=64",
                                  "--override", "warmup_steps=1", "--order-seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["step"] for r in out["rows"]] == [2, 4] and out["order_seed"] == 3
    for row in out["rows"]:
        assert set(row["fields"]) == {"colour", "shape", "motion", "quadrant", "tag"}
        assert len(row["attention_on_target"]) == 2  # T0's ViT has two layers
        for a in row["attention_on_target"]:
            assert 0 <= a["frame0"] <= 1 and 0 <= a["later"] <= 1 and a["uniform"] == pytest.approx(1 / 17)
    assert set(out["linear_probe"]) == set(out["rows"][0]["fields"])
    assert all(r["probe_ce"] > 0 and r["guess_ce"] > 0 for r in out["linear_probe"].values())
