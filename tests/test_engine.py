"""The DeepSpeed engine of a trial: a stale extension lock left by a killed process cannot hang it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = textwrap.dedent("""
    from deepspeed.comm import comm
    from search_spaces.grids import expand
    from trainables.models import build_vlm
    from trainables.engine import build_engine

    (cfg,) = expand("smoke", ["T1-T1"], ["foveated"], [4])
    model = build_vlm(cfg, 40)
    engine, _, _ = build_engine(model, model.param_groups(1e-3, 1e-3, 0.0), cfg)
    print("engine built; shared-memory op:", comm.cdb.shm_comm_op)
""")


def test_engine_builds_despite_a_stale_extension_lock(tmp_path):
    """A SIGKILL while DeepSpeed JIT-loads its shared-memory op leaves `lock` in the extension's
    build directory; torch then waits for it forever. The engine must not need that op."""
    lock_dir = tmp_path / "deepspeed_shm_comm"  # torch's build dir under TORCH_EXTENSIONS_DIR
    lock_dir.mkdir()
    (lock_dir / "lock").touch()
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", BUILD], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=180)  # the failure this guards against is a hang, not an error
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shared-memory op: None" in done.stdout
    assert (lock_dir / "lock").exists()  # nothing touched it: the op was never loaded
