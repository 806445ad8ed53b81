"""The launch pre-flight (trainables/data/preflight.py) and `tune_scaling.py --check-data`:
weights resolved offline (local directory or the Hugging Face cache), the data set opened and
decoded as the trials would, a report printed, and nothing written anywhere. The error cases
(exit 2, one line) are in tests/test_bad_input.py."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from trainables.data import preflight, synthetic
from trainables.planner import plan_grid

ROOT = Path(__file__).resolve().parents[1]


def _fake_hub_cache(cache: Path, repo: str, files=("config.json", "model.safetensors", "tokenizer.json")) -> None:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/<file>}."""
    d = cache / f"models--{repo.replace('/', '--')}"
    (d / "refs").mkdir(parents=True)
    (d / "refs" / "main").write_text("0" * 40)
    snap = d / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in files:
        (snap / f).write_text("{}")


def test_pretrained_weights_resolve_from_the_cache_or_a_directory(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    trials = expand("phase1", configs=["S-S"], variants=["baseline"], steps=[100])
    with pytest.raises(ConfigError, match="LLM S .*SmolLM2-135M not in the Hugging Face cache.*ViT S"):
        preflight.check_weights(trials)
    _fake_hub_cache(tmp_path / "hub", "HuggingFaceTB/SmolLM2-135M")
    with pytest.raises(ConfigError, match="ViT S") as e:
        preflight.check_weights(trials)
    assert "LLM" not in str(e.value)
    _fake_hub_cache(tmp_path / "hub", "facebook/dinov2-small", files=("config.json", "model.safetensors"))
    preflight.check_weights(trials)  # both cached: no error
    # a local directory needs its config.json; a missing one is named
    local = tmp_path / "my_vit"
    local.mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        preflight.check_weights([t.replace(vit_path=str(local)) for t in trials])
    (local / "config.json").write_text("{}")
    preflight.check_weights([t.replace(vit_path=str(local)) for t in trials])
    with pytest.raises(ConfigError, match=f"no directory {tmp_path}/nope"):
        preflight.check_weights([t.replace(llm_path=str(tmp_path / "nope")) for t in trials])
    # random init needs nothing; a tiny size without a hub id cannot be pretrained
    preflight.check_weights([t.replace(init="random") for t in trials])
    (tiny,) = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[10], overrides={"init": "pretrained"})
    with pytest.raises(ConfigError, match="this size has no hub id: pass llm_path"):
        preflight.check_weights([tiny])


def files_under(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def check_data(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), HF_HOME=str(home / ".cache" / "huggingface"),
               RAY_TMPDIR=str(home / "ray_tmp_unused"))
    return subprocess.run([sys.executable, str(ROOT / "tune_scaling.py"), "--check-data", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def write_jpeg_clips(path: Path, n: int, frames: int = 8, size: int = 224, row_group: int = 100,
                     null_every: int = 0) -> None:
    """Clips as a user would store them: one JPEG per frame (list<binary>) and a caption per row,
    in parquet row groups of `row_group` rows (what `datasets`' to_parquet writes for images)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def jpeg(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    schema = pa.schema([("frames", pa.list_(pa.binary())), ("caption", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, n, row_group):  # one row group at a time: memory stays flat
            clips, caps = [], []
            for i in range(start, min(n, start + row_group)):
                video, caption = synthetic.make_clip(np.random.default_rng(i), frames, size)
                clips.append([jpeg(f) for f in video])
                caps.append(None if null_every and i % null_every == 3 else caption)
            w.write_table(pa.table({"frames": clips, "caption": caps}, schema=schema), row_group_size=row_group)


def test_check_data_on_parquet_clips_reports_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """80 clips of 8 JPEG frames x 224² with a few null captions, checked as the phase grid's
    trials would read them (eval_size narrowed to fit): the report names rows, columns and
    types, frames shape, captions, bad rows and decode speed; nothing is written anywhere."""
    path = tmp_path / "clips.parquet"
    write_jpeg_clips(path, 80, row_group=20, null_every=10)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    before = files_under(tmp_path)
    trials = plan_grid(GRIDS["phase1"], expand("phase1", configs=["S-S"], steps=[100, 300], overrides={
        "init": "random", "dataset": str(path), "frames_column": "frames", "eval_size": 16}), 24.0)  # as the CLI
    assert len(trials) == 4 and trials[0].micro_batch == 32
    assert preflight.check_data(trials, batches=1) == 0
    out = capsys.readouterr().out
    assert out.count("dataset ") == 1  # four trials, one data set: checked once
    assert f"dataset {path}: 64 train rows, 16 eval rows" in out
    assert "column frames: list<element: binary>  <- frames" in out and "column caption: string  <- text" in out
    assert "parquet: 4 row groups" in out
    assert "null captions: 8 rows (skipped as bad rows)" in out
    assert "frames per sample: (8, 3, 224, 224) uint8" in out
    assert out.count("  caption: '") == 3
    bad = int(out.split(" bad rows;")[0].rsplit(": ", 1)[1])
    assert 0 < bad <= 8  # 64 train rows decoded (2 batches of 32): the null-caption ones among them
    assert "samples/s" in out and "peak host memory:" in out
    assert files_under(tmp_path) == before


def test_check_data_synthetic_cli_writes_nothing(tmp_path):
    """The CLI on the smoke grid's synthetic set: exit 0, a report, no file under HOME."""
    home = tmp_path / "home"
    home.mkdir()
    proc = check_data(["--grid", "smoke", "--configs", "T1-T1"], home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dataset synthetic: 2,048 train rows, 256 eval rows" in proc.stdout
    assert "decoded 80 rows in 5 batches of 16: 0 bad rows" in proc.stdout
    assert proc.stderr.strip() == ""
    assert files_under(home) == {}


def test_a_wholly_undecodable_batch_is_one_config_error(tmp_path, monkeypatch):
    """Past the first-rows check, a batch with no decodable row ends --check-data with the
    trial's own message as one line (not a BadRows traceback)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"frames": [[b"not a jpeg"]] * 40, "caption": ["red circle top stays"] * 40}), path)
    monkeypatch.setattr(preflight, "first_decodable", lambda data, cfg: None)
    trials = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[10],
                    overrides={"dataset": str(path), "frames_column": "frames", "eval_size": 4})
    with pytest.raises(ConfigError, match="every row of a batch failed to decode") as e:
        preflight.check_data(trials, batches=1, out=lambda line: None)
    assert "\n" not in str(e.value)
