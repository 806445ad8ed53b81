"""Bad input to the two CLIs: every case exits 2 with ONE line on stderr
(`error: ...`, no traceback), starts nothing, and leaves every file it could touch as it was.

Each case runs the real command in a subprocess against one shared fixture tree: a storage
path holding an experiment of another grid, a non-Ray directory, a regular file where a
directory should be; parquet data sets (good, empty, undecodable); fitting tables. The tree's
files (size, mtime, SHA-256) and directories are compared before and after every case.
Dataset and weight problems are caught by the pre-flight check (trainables/data/preflight.py)
before Ray starts, not by N errored trials; `--check-data` and `--dry-run` run it too. A few undecodable rows are not an error (skipped
and counted: tests/test_data.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NARROW = ["--grid", "smoke", "--configs", "T1-T1", "--variants", "baseline", "--steps", "5", "--no-fit",
          "--schedule", "cosine"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_input")
    store = root / "store"
    other = store / "phase1_study"  # a Ray experiment launched with another grid
    other.mkdir(parents=True)
    (other / "study.json").write_text(json.dumps({"grid": "phase1", "trials": []}))
    (other / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (other / "tuner.pkl").write_bytes(b"not touched")
    same = store / "smoke_steps6"  # a Ray experiment of this grid with other step counts / seeds
    same.mkdir()
    from search_spaces.grids import GRIDS, expand
    from trainables.learning_rates import assign

    trials, _ = assign(GRIDS["smoke"], expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[6]))
    (same / "study.json").write_text(json.dumps({"grid": "smoke", "trials": [t.to_dict() for t in trials]}))
    (same / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (same / "tuner.pkl").write_bytes(b"not touched")
    (store / "notes").mkdir()  # exists, not Ray
    (store / "notes" / "todo.txt").write_text("keep me")
    (root / "afile").write_text("a file, not a directory")

    data = root / "data"
    data.mkdir()

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), i % 255, np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    n = 300  # more than the smoke grid's eval_size (256)
    pq.write_table(pa.table({"image": [png(i) for i in range(n)], "caption": [f"red circle {i}" for i in range(n)]}),
                   data / "clips.parquet")
    pq.write_table(pa.table({"image": pa.array([], pa.binary()), "caption": pa.array([], pa.string())}),
                   data / "empty.parquet")
    pq.write_table(pa.table({"image": [b"not an image %d" % i for i in range(n)], "caption": ["x"] * n}),
                   data / "undecodable.parquet")
    pq.write_table(pa.table({"image": [png(i) for i in range(n)], "caption": pa.array([None] * n, pa.string())}),
                   data / "null_captions.parquet")
    (data / "garbage.parquet").write_bytes(b"not a parquet file at all")

    fit = root / "fit"
    fit.mkdir()
    (fit / "few.csv").write_text("N,C,L\n1e6,1e15,3.0\n2e6,2e15,2.8\n")
    (fit / "fresh.csv").write_text("N,C,L\n1e6,1e15,3.0\n2e6,2e15,2.8\n")  # no earlier fresh_analysis/
    (fit / "nan.csv").write_text("N,C,L\n" + "".join(f"{n:g},{c:g},nan\n" for n in (1e6, 2e6, 4e6) for c in (1e15, 1e16)))
    # one model size is fitted as L(D); with only 2 distinct D values it still cannot be
    (fit / "one_size.csv").write_text("N,C,L\n" + "".join(f"1e6,{c:.3e},{2 + 10 / c ** 0.1 + 1e-3 * i:.6f}\n"
                                                         for i, c in enumerate((1e14, 1e17) * 4)))
    for stem in ("few", "nan", "one_size"):  # earlier analyses must survive a failed one
        (fit / f"{stem}_analysis").mkdir()
        (fit / f"{stem}_analysis" / "report.md").write_text("an earlier report\n")
    (fit / "no_group.csv").write_text("N,C,L,G\n" + "".join(f"{n:g},{c:g},{2 + 1e3 / n ** 0.3 + 1e3 / c ** 0.1:.5f},\n"
                                                          for n in (1e6, 2e6, 4e6) for c in (1e15, 1e16, 1e17)))
    experiments(fit)
    (root / "cwd").mkdir()  # the commands run here: a stray write to the current directory shows up too
    return root


def experiments(fit: Path) -> None:
    """Fitting inputs shaped like a Ray experiment: one with a result.json value of the wrong type,
    and a good one whose directory cannot be written to (where the platform lets a test do that)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_experiment import write_experiment

    bad = write_experiment(fit / "bad_types", seeds=1)
    victim = sorted(bad.glob("*/result.json"))[0]
    rows = [json.loads(line) for line in victim.read_text().splitlines()]
    rows[1]["eval_loss"] = str(rows[1]["eval_loss"])  # a number written as text
    victim.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_experiment(fit / "locked", seeds=1)


@pytest.fixture(scope="module")
def locked_experiment(tree):
    """tree/fit/locked made unwritable for the test (chattr +i as root, who ignores mode bits)."""
    path = tree / "fit" / "locked"
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot make a directory unwritable for root here (no chattr)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def state(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            out[rel] = "dir"
        else:
            st = p.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# (id, argv with {root} placeholders, text the one error line must contain)
CASES = [
    ("unknown-grid", ["--grid", "nope"], "unknown grid 'nope'; valid grids: smoke"),
    ("unknown-config", [*NARROW, "--configs", "Q-Q"], "Q-Q"),
    ("unknown-variant", [*NARROW, "--variants", "fancy"], "unknown variant 'fancy'"),
    ("zero-steps", [*NARROW, "--steps", "0"], "steps must be positive, got 0"),
    ("negative-steps", [*NARROW, "--steps=-5"], "steps must be positive, got -5"),
    ("steps-not-a-number", [*NARROW, "--steps", "ten"], "cannot parse 'ten'"),
    ("milestone-zero", [*NARROW, "--milestones", "0"], "milestones must lie in 1..5"),
    ("gpu-mem-negative", [*NARROW, "--gpu-mem", "-1"], "--gpu-mem must be positive"),
    ("resume-missing", [*NARROW, "--resume", "--name", "missing"], "--resume: no experiment at {root}/store/missing"),
    ("resume-not-ray", [*NARROW, "--resume", "--name", "notes"], "{root}/store/notes exists but is not a Ray Tune experiment"),
    ("resume-other-grid", [*NARROW, "--resume", "--name", "phase1_study"], "was launched with grid 'phase1'"),
    ("launch-over-other-grid", [*NARROW, "--name", "phase1_study"], "was launched with grid 'phase1'"),
    ("unwritable-storage", [*NARROW, "--storage-path", "{root}/afile/results"], "is not writable"),
    ("unreachable-address", [*NARROW, "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    ("unreachable-ray-client", [*NARROW, "--address", "ray://127.0.0.1:1"], "cannot reach a Ray cluster at ray://127.0.0.1:1"),
    ("dataset-not-found", [*NARROW, "--dataset", "{root}/data/no_such_clips"], "dataset path {root}/data/no_such_clips does not exist"),
    ("dataset-missing-column", [*NARROW, "--dataset", "{root}/data/clips.parquet", "--text-column", "title"],
     "no text column 'title' (columns: caption, image)"),
    ("dataset-missing-image-column", [*NARROW, "--dataset", "{root}/data/clips.parquet", "--image-column", "jpg"],
     "no image column 'jpg'"),
    ("dataset-empty", [*NARROW, "--dataset", "{root}/data/empty.parquet"], "the train split is empty"),
    ("dataset-all-undecodable", [*NARROW, "--dataset", "{root}/data/undecodable.parquet"],
     "none of the first 32 training rows has a decodable image column 'image'"),
    ("dataset-relative-missing", [*NARROW, "--dataset", "my_clips"], "dataset path my_clips does not exist"),
    ("dataset-tilde-missing", [*NARROW, "--dataset", "~/no_such_clips.parquet"],
     "dataset path ~/no_such_clips.parquet does not exist"),
    ("dataset-null-captions", [*NARROW, "--dataset", "{root}/data/null_captions.parquet"],
     "the text column 'caption' is null in all 300 rows"),
    ("dataset-not-parquet", [*NARROW, "--dataset", "{root}/data/garbage.parquet"], "is not a readable parquet file"),
    ("pretrained-weights-missing", [*NARROW, "--configs", "S-S", "--init", "pretrained"],
     "--init pretrained: LLM S (HuggingFaceTB/SmolLM2-135M not in the Hugging Face cache), ViT S (facebook/dinov2-small"),
    ("vit-position-std-pretrained", [*NARROW, "--init", "pretrained", "--vit-position-std", "1"],
     "vit_position_std re-draws a random-init ViT's position embeddings; init=pretrained keeps the checkpoint's"),
    ("vit-position-std-zero", [*NARROW, "--vit-position-std", "0"], "--vit-position-std must be positive, got 0"),
    ("check-data-missing-dataset", ["--grid", "smoke", "--check-data", "--dataset", "./no_such_dir"],
     "dataset path ./no_such_dir does not exist"),
    ("check-data-empty", ["--grid", "smoke", "--check-data", "--dataset", "{root}/data/empty.parquet"],
     "the train split is empty"),
    ("check-data-pretrained-weights-missing", ["--grid", "smoke", "--configs", "S-S", "--check-data", "--init", "pretrained"],
     "--init pretrained: LLM S (HuggingFaceTB/SmolLM2-135M not in the Hugging Face cache)"),
    ("dry-run-missing-dataset", ["--grid", "phase1", "--dry-run", "--dataset", "./no_such_dir"],
     "dataset path ./no_such_dir does not exist"),
    ("fit-too-few-points", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "N", "--c", "C", "--loss", "L",
                            "--bootstrap", "5"], "need at least"),
    ("fit-nan-losses", ["-m", "fitting", "csv", "{root}/fit/nan.csv", "--n", "N", "--c", "C", "--loss", "L",
                        "--bootstrap", "5"], "no rows with finite"),
    ("fit-one-model-size", ["-m", "fitting", "csv", "{root}/fit/one_size.csv", "--n", "N", "--c", "C", "--loss", "L",
                            "--bootstrap", "5"], "only 2 distinct data sizes (D); exponent beta is not identifiable"),
    # empty or duplicate list entries, names that are not plain, senseless counts,
    # non-finite numbers, absurd requests, fitting paths that do not exist, --out that is a file
    ("configs-empty", [*NARROW, "--configs", ""], "--configs '' has an empty entry"),
    ("configs-comma", [*NARROW, "--configs", ","], "--configs ',' has an empty entry"),
    ("variants-trailing-comma", [*NARROW, "--variants", "baseline,"], "--variants 'baseline,' has an empty entry"),
    ("steps-duplicate", [*NARROW, "--steps", "100,100"], "--steps lists 100 more than once"),
    ("configs-duplicate", [*NARROW, "--configs", "T1-T1,T1-T1"], "--configs lists T1-T1 more than once"),
    ("name-parent", [*NARROW, "--name", "../x"], "--name '../x' must be a plain name"),
    ("name-absolute", [*NARROW, "--name", "{root}/x"], "--name '{root}/x' must be a plain name"),
    ("name-dot", [*NARROW, "--name", "."], "--name '.' must be a plain name"),
    ("max-failures-negative", [*NARROW, "--max-failures=-1"], "--max-failures must be >= 0, got -1"),
    ("keep-checkpoints-zero", [*NARROW, "--keep-checkpoints", "0"], "--keep-checkpoints must be >= 1, got 0"),
    ("seeds-zero", [*NARROW, "--seeds", "0"], "--seeds must be >= 1, got 0"),
    ("seed-negative", [*NARROW, "--seed=-1"], "--seed must be >= 0, got -1"),
    ("max-concurrent-negative", [*NARROW, "--max-concurrent=-2"], "--max-concurrent must be >= 0, got -2"),
    ("bootstrap-negative", [*NARROW, "--bootstrap=-5"], "--bootstrap must be >= 0, got -5"),
    ("cpus-zero", [*NARROW, "--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    ("gpu-mem-inf", [*NARROW, "--gpu-mem", "inf"], "--gpu-mem must be a finite number, got inf"),
    ("gpu-mem-nan", [*NARROW, "--gpu-mem", "nan"], "--gpu-mem must be a finite number, got nan"),
    ("mfu-nan", ["--grid", "phase1", "--dry-run", "--mfu", "nan"], "--mfu must be a finite number"),
    ("plot-interval-inf", [*NARROW, "--plot-interval", "inf"], "--plot-interval must be a finite number"),
    ("lr-seeds-zero", [*NARROW, "--lr-search", "--lr-seeds", "0"], "--lr-seeds must be >= 1, got 0"),
    ("absurd-request", ["--grid", "phase4", "--steps", "3000000", "--init", "random", "--no-fit"], "add --yes to launch it anyway"),
    ("resume-other-steps", [*NARROW, "--seeds", "1", "--resume", "--name", "smoke_steps6"],
     "was launched with other values of milestones, steps; Ray cannot change a grid"),
    ("resume-other-seed-count", [*NARROW, "--steps", "6", "--seeds", "2", "--resume", "--name", "smoke_steps6"],
     "was launched with 1 trials (this command: 2); other values of seed"),
    ("fit-typo-dir", ["-m", "fitting", "{root}/typo/dir"], "no experiment directory {root}/typo/dir"),
    ("fit-out-is-a-file", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "N", "--c", "C", "--loss", "L",
                           "--out", "{root}/afile"], "--out {root}/afile is a file, not a directory"),
    ("fit-failure-leaves-no-new-dir", ["-m", "fitting", "csv", "{root}/fit/fresh.csv", "--n", "N", "--c", "C",
                                       "--loss", "L", "--bootstrap", "5"], "need at least"),
    ("fit-missing-column", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "params", "--c", "C", "--loss", "L"],
     "params"),
    # values no trial can use, names and addresses that are empty or too long, grids of
    # absurd size, storage that does not answer; the fitting CLI's seeds, outputs and inputs
    ("seed-too-large", [*NARROW, "--seed", "4294967296"], "--seed 4294967296: seeds run from --seed to --seed + "
     "--seeds - 1 and must stay <= 4294967295"),
    ("seeds-past-the-seed-range", [*NARROW, "--seed", "4294967295", "--seeds", "2"], "must stay <= 4294967295"),
    ("name-too-long", [*NARROW, "--name", "n" * 300], "--name is 300 characters long; at most 100"),
    ("address-empty", [*NARROW, "--address", ""], "--address is empty"),
    ("dashboard-host-not-here", [*NARROW, "--dashboard", "--dashboard-host", "203.0.113.7"],
     "--dashboard-host '203.0.113.7': this machine cannot listen there"),
    ("dashboard-host-unknown", [*NARROW, "--dashboard", "--dashboard-host", "no-such-host.invalid"],
     "--dashboard-host 'no-such-host.invalid': this machine cannot listen there"),
    ("storage-unreachable-bucket", [*NARROW, "--storage-path", "s3://no-such-bucket-for-this-test/res"],
     "storage s3://no-such-bucket-for-this-test/res is not reachable"),
    ("seeds-absurd-dry-run", ["--grid", "smoke", "--seeds", "100000", "--dry-run"],
     "this grid has 1,800,000 trials (100,000 seeds); more than 5,000 is refused"),
    ("fit-seed-negative", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "N", "--c", "C", "--loss", "L",
                           "--seed=-1"], "--seed must be >= 0, got -1"),
    ("fit-out-empty", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "N", "--c", "C", "--loss", "L", "--out", ""],
     "--out is empty"),
    ("fit-out-unwritable", ["-m", "fitting", "csv", "{root}/fit/few.csv", "--n", "N", "--c", "C", "--loss", "L",
                            "--out", "/sys/analysis"], "cannot write the analysis to /sys/analysis"),
    ("fit-group-column-empty", ["-m", "fitting", "csv", "{root}/fit/no_group.csv", "--n", "N", "--c", "C", "--loss", "L",
                                "--group", "G", "--bootstrap", "5"], "column 'G' (--group) is empty in 9 of 9 rows"),
    ("fit-result-wrong-type", ["-m", "fitting", "{root}/fit/bad_types", "--bootstrap", "5"],
     "result.json: row 2: 'eval_loss' is '"),
]


# Each case is a fresh interpreter (seconds apiece): the quick loop (`-m "not slow"`) runs one case
# per kind of refusal (arguments, resume, data set, fitting, names); CI runs them all.
QUICK_CASES = {"unknown-grid", "resume-other-grid", "dataset-not-found", "fit-too-few-points", "name-parent"}


@pytest.mark.parametrize("argv,expected", [
    pytest.param(*c[1:], id=c[0], marks=() if c[0] in QUICK_CASES else pytest.mark.slow) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tree, argv, expected):
    argv = [a.replace("{root}", str(tree)) for a in argv]
    expected = expected.replace("{root}", str(tree))
    if argv[0] != "-m":  # the study CLI; the storage path is the fixture's unless the case names one
        argv = [str(ROOT / "tune_scaling.py"), "--storage-path", str(tree / "store"), *argv]
    check_refused(tree, argv, expected)


def check_refused(tree: Path, argv: list[str], expected: str, env_extra: dict | None = None) -> None:
    before = state(tree)
    env = {**os.environ, "RAY_TMPDIR": str(tree / "ray_tmp_unused"),  # nothing may start Ray here
           "HF_HUB_CACHE": str(tree / "hf_cache_unused"),  # an empty Hugging Face cache, never created
           "PYTHONPATH": str(ROOT), **(env_extra or {})}
    proc = subprocess.run([sys.executable, *argv], cwd=tree / "cwd", env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert state(tree) == before, "a rejected command changed files"


@pytest.mark.slow
def test_an_unwritable_experiment_directory_is_one_line_for_the_fitting(tree, locked_experiment):
    check_refused(tree, ["-m", "fitting", str(locked_experiment), "--bootstrap", "5"],
                  f"cannot write the analysis to {locked_experiment}/analysis")


@pytest.mark.slow
def test_more_gpus_per_trial_than_the_cluster_has_is_refused_before_launch(tree, tmp_path):
    """Needs Ray's own count of the cluster: Ray starts (in a private temp dir) and stops again;
    the storage stays as it was and no trial is ever pending."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = [str(ROOT / "tune_scaling.py"), *NARROW, "--storage-path", str(tree / "store"), "--name", "gpu",
            "--gpus-per-trial", "1"]
    raytmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    try:
        check_refused(tree, argv, "--gpus-per-trial 1: the Ray cluster has 0 GPU(s) in all, so no trial could ever start",
                      env_extra={"RAY_TMPDIR": raytmp})
    finally:
        shutil.rmtree(raytmp, ignore_errors=True)
