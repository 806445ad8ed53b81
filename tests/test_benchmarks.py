"""The GPU benchmark scripts still run (on CPU, tiny configs): their numbers come from a GPU,
but a script that broke since it was last run on one would waste a GPU session."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_trainer_throughput_runs_both_paths(capsys, tmp_path):
    import trainer_throughput

    assert trainer_throughput.main(["--config", "T1-T1", "--micro-batch", "2", "--frames", "2",
                                    "--steps", "2", "--warmup", "1", "--profile", str(tmp_path),
                                    "--profile-steps", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["path"] for r in out["runs"]] == ["plain", "trainer"]
    assert all(r["samples_per_s"] > 0 and r["tflops"] > 0 for r in out["runs"])
    assert out["flops_per_sample"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace_plain.json", "trace_trainer.json"]
    trainer = out["runs"][1]  # its losses: warm-up + timed steps, read after the timed loop
    assert trainer["n_steps"] == 3 and 0 < trainer["last_loss"] < 20 and 0 < trainer["first_loss"] < 20
