"""Checks a launch runs before Ray starts, and the `--check-data` report built on them.

`validate_launch(trials)`: pretrained weights resolvable without the network (a local directory
or the Hugging Face cache), each distinct data set opened as its trials will open it (path,
split, columns present and not all null) and one row decoded. Any failure is one ConfigError
line, so the CLI exits 2 having written nothing and started nothing.
`check_data(trials)`: the same, plus a report of the data set: rows, columns and types, frames
shape, sample captions, bad rows and decode speed over a few real batches, peak host memory.
"""
from __future__ import annotations

import os
import resource
import sys
import time

from search_spaces.errors import ConfigError
from trainables.data import synthetic
from trainables.data.prefetch import pipeline_host_bytes
from trainables.data.sources import CACHED_GROUPS, resolve
from trainables.hub import is_hub_id

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
LLM_FILES = ("tokenizer.json", "tokenizer_config.json")  # the trial loads the LLM's own tokenizer
DECODE_SAMPLE_ROWS = 32  # rows tried before a data set counts as undecodable


def _missing_weights(name: str | None, arg: str, extra: tuple[str, ...] = ()) -> str | None:
    """Why `name` (hub id or directory) cannot be loaded offline, or None when it can."""
    if name is None:
        return f"this size has no hub id: pass {arg}"
    path = os.path.expanduser(name)
    if not is_hub_id(name):
        if not os.path.isdir(path):
            return f"no directory {path}"
        return None if os.path.exists(os.path.join(path, "config.json")) else f"{path} has no config.json"
    from huggingface_hub import try_to_load_from_cache

    def cached(f: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(name, f), str)
        except Exception:  # noqa: BLE001 - an invalid repo id
            return False

    if not cached("config.json") or not any(cached(f) for f in WEIGHT_FILES):
        return f"{name} not in the Hugging Face cache"
    if extra and not any(cached(f) for f in extra):
        return f"{name}'s tokenizer not in the Hugging Face cache"
    return None


def check_weights(trials) -> None:
    """--init pretrained: every backbone must load without the network (trials never download:
    N of them would race for the same files on a cluster)."""
    problems: dict[str, tuple[str, str]] = {}  # what -> (name, why)
    for t in trials:
        if t.init != "pretrained":
            continue
        llm, vit = t.sizes
        for what, name, arg, extra in ((f"LLM {llm.key}", t.llm_path or llm.hub_id, "llm_path", LLM_FILES),
                                       (f"ViT {vit.key}", t.vit_path or vit.hub_id, "vit_path", ())):
            why = _missing_weights(name, arg, extra)
            if why and what not in problems:
                problems[what] = (name, why)
    if problems:
        from huggingface_hub.constants import HF_HUB_CACHE

        hub = [name for name, why in problems.values() if "cache" in why]
        how = f"download first (hf download {' / '.join(hub)}; cache {HF_HUB_CACHE})" if hub else "fix the path"
        raise ConfigError("--init pretrained: " + ", ".join(f"{w} ({why})" for w, (_, why) in problems.items())
                          + f"; {how} or use --init random")


def _data_key(t) -> tuple:
    return (t.dataset, t.image_column, t.frames_column, t.text_column, t.eval_size, t.dataset_seed,
            t.frames, t.image_size, t.dataset_size, t.init, t.llm_path, t.sizes[0].hub_id)


def distinct_data(trials) -> list:
    seen, out = set(), []
    for t in trials:
        if _data_key(t) not in seen:
            seen.add(_data_key(t))
            out.append(t)
    return out


def check_names(trials) -> None:
    """The cheap part (for --dry-run): every --dataset resolves (path exists or org/name id)."""
    for t in trials:
        resolve(t.dataset)


def open_dataset(cfg, tokenizer: bool = True):
    """load_data with every datasets / pyarrow failure turned into one ConfigError line."""
    import datasets

    from trainables.data.bundle import load_data  # torch: --dry-run imports this module, never torch

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the CLI's error must stay one line
    try:
        return load_data(cfg, tokenizer=tokenizer)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets / pyarrow raise many types for a bad file
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"dataset {cfg.dataset!r} cannot be read ({type(e).__name__}: {first})") from None
    finally:
        if bars:
            datasets.enable_progress_bars()


def first_decodable(data, cfg) -> None:
    """A few bad rows are fine (skipped and counted); none among the first rows is an error."""
    ds = data.train
    n = min(len(ds), DECODE_SAMPLE_ROWS)
    first_error = None
    for i in range(n):
        item = ds[i]
        if "bad_row" not in item:
            return
        first_error = first_error or f"row {i}: {item['error'].splitlines()[0][:120]}"
    column = f"frames column {ds.frames_column!r}" if ds.frames_column else f"image column {ds.image_column!r}"
    raise ConfigError(f"dataset {cfg.dataset!r}: none of the first {n} training rows has a decodable {column} "
                      f"({first_error})")


def validate_launch(trials) -> None:
    """Everything a launch checks before Ray starts (one ConfigError line on failure)."""
    check_names(trials)
    check_weights(trials)
    for t in distinct_data(trials):
        if t.dataset not in synthetic.TASKS:
            first_decodable(open_dataset(t, tokenizer=False), t)


def peak_rss_bytes() -> int:
    """Peak RSS of this process or its largest finished child (loader workers), in bytes."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) * 1024  # Linux reports KiB


def describe_source(data, cfg, opened_s: float, out=print) -> None:
    """--check-data's lines on what was opened: rows, columns and their roles, null captions."""
    tr = data.train
    types = tr.rows.column_types if hasattr(tr.rows, "column_types") else {
        "frames": f"uint8[{cfg.frames},{cfg.image_size},{cfg.image_size},3] (computed per index)",
        "caption": "string"}
    out(f"dataset {cfg.dataset}: {len(data.train):,} train rows, "
        f"{len(data.eval):,} eval rows (opened in {opened_s:.1f} s)")
    used = {tr.frames_column: "frames", tr.image_column: "image", tr.text_column: "text"}
    for c, ty in types.items():
        role = f"  <- {used[c]}" if c in used else ""
        out(f"  column {c}: {ty}{role}")
    if hasattr(tr.rows, "largest_group_bytes"):
        out(f"  parquet: {len(tr.rows.group_sizes)} row groups, largest {tr.rows.largest_group_bytes / 2**20:.1f} MiB "
            f"uncompressed (each loader process caches up to {CACHED_GROUPS})")
    if data.null_captions:
        out(f"  null captions: {data.null_captions} rows (skipped as bad rows)")


def check_data(trials, batches: int = 4, out=print) -> int:
    """--check-data: validate as a launch would, then report on each distinct data set."""
    from trainables.data.pipeline import BadRows, loader_workers, train_loader  # torch: not for --dry-run

    check_names(trials)
    try:
        check_weights(trials)
        weights_error = None
    except ConfigError as e:  # still report the data; the error ends the command
        weights_error = e
    for cfg in distinct_data(trials):
        t0 = time.perf_counter()
        data = open_dataset(cfg, tokenizer=weights_error is None)
        opened_s = time.perf_counter() - t0
        first_decodable(data, cfg)
        tr = data.train
        describe_source(data, cfg, opened_s, out)
        workers = loader_workers()
        _, loader = train_loader(tr, cfg, workers=workers)
        try:
            it = iter(loader)
            first = next(it)  # not timed: worker start-up
            t0, n, bad = time.perf_counter(), 0, first["n_bad_rows"]
            for _ in range(batches):
                b = next(it)
                n += b["frames"].shape[0] + b["n_bad_rows"]
                bad += b["n_bad_rows"]
        except BadRows as e:  # a whole batch undecodable: the trial would fail the same way
            raise ConfigError(str(e).splitlines()[0]) from None
        rate = n / (time.perf_counter() - t0)
        del it, loader
        texts = (tr.row(i)[tr.text_column] for i in range(min(len(tr), DECODE_SAMPLE_ROWS)))
        captions = [str(c) for c in texts if c is not None][:3]
        out(f"  frames per sample: {tuple(first['frames'].shape[1:])} {str(first['frames'].dtype).replace('torch.', '')} "
            f"(T, 3, H, W; normalised on the device)")
        for c in captions:
            out(f"  caption: {c!r}")
        decoded = n + first["frames"].shape[0] + first["n_bad_rows"]
        out(f"  decoded {decoded} rows in {batches + 1} batches of {cfg.micro_batch}: {bad} bad rows; "
            f"{rate:.1f} samples/s with {workers} loader worker(s) (FOVEATED_DATA_WORKERS)")
        out(f"  loader host memory per GPU trial (planner): {pipeline_host_bytes(cfg) / 2**20:.0f} MiB")
    out(f"peak host memory: {peak_rss_bytes() / 2**30:.2f} GiB")
    sys.stdout.flush()
    if weights_error is not None:
        raise weights_error
    return 0
