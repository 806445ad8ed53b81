"""A trial's data: its train and eval splits of one source (the synthetic clips, or a real
data set checked for its columns), and the tokenizer; the items and loaders are pipeline.py's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from trainables.data import sources, synthetic
from trainables.data.pipeline import ClipDataset
from trainables.data.tokenizer import pretrained_tokenizer, vocabulary_from_texts, word_level_tokenizer


@dataclass
class DataBundle:
    train: ClipDataset
    eval: ClipDataset
    tokenizer: object
    vocab_size: int
    null_captions: int | None = None  # a real data set's rows without a caption (skipped as bad rows)
    # what each caption token names (a fixed-format caption, e.g. the graded synthetic task):
    # the evaluation then also reports the caption loss per field
    caption_fields: tuple[str, ...] | None = None


def load_data(cfg: TrialConfig, tokenizer: bool = True) -> DataBundle:
    """The trial's splits, opened lazily. tokenizer=False: no tokenizer (items carry captions)."""
    null_captions = caption_fields = None
    if cfg.dataset in synthetic.TASKS:
        train = synthetic.SyntheticClips(cfg.dataset_seed, "train", cfg.dataset_size, cfg.frames, cfg.image_size,
                                         cfg.dataset)
        evl = synthetic.SyntheticClips(cfg.dataset_seed, "eval", cfg.eval_size, cfg.frames, cfg.image_size, cfg.dataset)
        frames_col, image_col, text_col = "frames", None, "caption"
        train_index = eval_index = train_groups = None
        _, vocabulary, caption_fields = synthetic.task(cfg.dataset)
        words = vocabulary()
    else:
        rows, frames_col, image_col, text_col = open_real(cfg)
        sizes = rows.group_sizes if rows.group_sizes is not None else np.ones(len(rows), np.int64)
        train_index, train_groups, eval_index = sources.split_rows(sizes, cfg.eval_size, cfg.dataset_seed)
        train_groups = None if rows.group_sizes is None else train_groups
        train = evl = rows
        words = None
        null_captions = rows.null_count(text_col)
    tok = None
    if tokenizer and cfg.init == "pretrained":
        llm, _ = cfg.sizes
        tok = pretrained_tokenizer(cfg.llm_path or llm.hub_id)
    elif tokenizer:
        if words is None:  # train captions only, streamed from the text column
            keep = np.zeros(len(rows), bool)
            keep[train_index] = True
            words = vocabulary_from_texts(str(t) for t, k in zip(rows.iter_column(text_col), keep) if k and t is not None)
        tok = word_level_tokenizer(words)
    name = cfg.dataset
    return DataBundle(
        train=ClipDataset(train, cfg, tok, frames_col, image_col, text_col, name, train_index, train_groups),
        eval=ClipDataset(evl, cfg, tok, frames_col, image_col, text_col, name, eval_index),
        tokenizer=tok,
        vocab_size=len(tok) if tok else 0,
        null_captions=null_captions,
        caption_fields=caption_fields,
    )


def open_real(cfg: TrialConfig):
    """(rows, frames column, image column, text column) of a real data set, its columns checked."""
    kind, location = sources.resolve(cfg.dataset)
    rows = sources.open_rows(kind, location, cfg.frames_column)
    if len(rows) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r}: the train split is empty")
    cols = set(rows.column_types)
    frames_col, image_col, text_col = cfg.frames_column, cfg.image_column, cfg.text_column
    if not frames_col and not image_col:
        image_col = next((c for c in ("image", "img", "jpg", "png") if c in cols), None)
        frames_col = next((c for c in ("frames", "video_frames") if c in cols), None) if not image_col else None
    for role, col in (("text", text_col), ("image", image_col), ("frames", frames_col)):
        if col is not None and col not in cols:
            raise ConfigError(f"dataset {cfg.dataset!r}: no {role} column {col!r} (columns: {', '.join(sorted(cols))})")
    if not frames_col and not image_col:
        raise ConfigError(f"dataset {cfg.dataset!r}: no image or frames column found; pass --image-column "
                          f"or --frames-column (columns: {', '.join(sorted(cols))})")
    if isinstance(rows, sources.ArrowRows) and image_col:
        import datasets

        if isinstance(rows.ds.features.get(image_col), datasets.Image):  # decode ourselves: count bad rows
            rows.ds = rows.ds.cast_column(image_col, datasets.Image(decode=False))
    for role, col in (("text", text_col), ("image", image_col), ("frames", frames_col)):
        if col is not None and rows.null_count(col) == len(rows):
            raise ConfigError(f"dataset {cfg.dataset!r}: the {role} column {col!r} is null in all {len(rows)} rows")
    if isinstance(rows, sources.ParquetRows):
        rows.columns = [c for c in (frames_col, image_col, text_col) if c]
    if len(rows) <= cfg.eval_size:
        raise ConfigError(f"dataset {cfg.dataset!r}: {len(rows)} rows, not more than eval_size {cfg.eval_size}")
    return rows, frames_col, image_col, text_col
