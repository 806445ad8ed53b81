"""Real data sources, read one row at a time: nothing loads a whole set or a whole image column.

- a `save_to_disk` directory or a hub id: `datasets` Arrow files, memory-mapped (reading a row
  touches only its own pages; the OS may drop them again);
- parquet files: read with pyarrow one row group at a time, a few cached per process. No Arrow
  copy is written: `load_dataset("parquet")` would write one as large as the data set into
  ~/.cache/huggingface first.

Each source says how its rows lie on disk (`group_sizes`: parquet row groups, None for Arrow's
random access). The split and the training order keep a group's rows together (see
pipeline.EpochCursor), so a parquet row group is read about once per epoch and loader worker.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from glob import glob, has_magic

import numpy as np

from search_spaces.errors import ConfigError
from trainables.data.synthetic import TASKS
from trainables.hub import is_hub_id

SHUFFLE_WINDOW = 4  # parquet: the epoch order shuffles rows across this many row groups at a time
CACHED_GROUPS = SHUFFLE_WINDOW + 1  # row groups kept per process: a window, and a batch straddling the next


def resolve(name: str) -> tuple[str, str]:
    """(kind, location) with kind in synthetic / arrow / parquet / hub. A path-like name that
    does not exist is an error at once (no hub lookup, no retries); `~` is expanded."""
    if name in TASKS:  # the embedded tasks
        return "synthetic", name
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if any(os.path.exists(os.path.join(path, f)) for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "arrow", path
        if glob(os.path.join(glob_escape(path), "*.parquet")):
            return "parquet", path
        raise ConfigError(f"dataset {name!r}: a path, but neither a save_to_disk directory nor parquet files")
    if os.path.exists(path):
        if path.endswith(".parquet"):
            return "parquet", path
        raise ConfigError(f"dataset {name!r}: a path, but neither a save_to_disk directory nor parquet files")
    if has_magic(path) and glob(path):
        return "parquet", path
    if is_hub_id(name):  # only an org/name id goes to the hub; anything else is a missing path
        return "hub", name
    where = "" if path == name and os.path.isabs(path) else f" ({os.path.abspath(path)})"
    raise ConfigError(f"dataset path {name} does not exist{where}; a hub data set is given as org/name")


def glob_escape(path: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", path)


def parquet_files(location: str) -> list[str]:
    if os.path.isdir(location):
        return sorted(glob(os.path.join(glob_escape(location), "*.parquet")))
    return sorted(glob(location)) if has_magic(location) else [location]


class ArrowRows:
    """A `datasets.Dataset` (memory-mapped Arrow) behind the source interface."""

    group_sizes = None  # random access is cheap: split and shuffle row by row

    def __init__(self, ds, frames_column: str | None = None):
        import datasets

        if frames_column and isinstance(ds.features.get(frames_column), (datasets.Array3D, datasets.Array4D)):
            # fixed-shape arrays: numpy per row (python format would build nested lists)
            ds = ds.with_format("numpy", columns=[frames_column], output_all_columns=True)
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        return self.ds[int(i)]

    @property
    def column_types(self) -> dict[str, str]:
        return {f.name: str(f.type) for f in self.ds.data.schema}

    def null_count(self, column: str) -> int | None:
        return self.ds.data.column(column).null_count  # validity bitmaps only, nothing decoded

    def iter_column(self, column: str, batch: int = 8192):
        col = self.ds.data.column(column)
        for start in range(0, len(col), batch):
            yield from col.slice(start, batch).to_pylist()


class ParquetRows:
    """Parquet files read with pyarrow by row group; only the footers are read when opened."""

    def __init__(self, files: list[str]):
        import pyarrow.parquet as pq

        self.files = files
        self.groups: list[tuple[int, int]] = []  # (file, row group)
        sizes, group_bytes = [], []
        for fi, f in enumerate(files):
            meta = pq.ParquetFile(f).metadata
            for rg in range(meta.num_row_groups):
                if meta.row_group(rg).num_rows == 0:
                    continue
                self.groups.append((fi, rg))
                sizes.append(meta.row_group(rg).num_rows)
                group_bytes.append(meta.row_group(rg).total_byte_size)
        self.group_sizes = np.array(sizes, np.int64)
        self.largest_group_bytes = max(group_bytes, default=0)  # uncompressed; what one cached group costs
        self._starts = np.concatenate([[0], np.cumsum(self.group_sizes)])
        self.schema = pq.read_schema(files[0])
        self.columns: list[str] | None = None  # set by the pipeline: read only what a trial uses
        self._cache: OrderedDict = OrderedDict()
        self._open: dict = {}

    def __getstate__(self) -> dict:  # a DataLoader worker starts with its own empty cache
        return {**self.__dict__, "_cache": OrderedDict(), "_open": {}}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _group(self, g: int):
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        import pyarrow.parquet as pq

        fi, rg = self.groups[g]
        if fi not in self._open:
            self._open[fi] = pq.ParquetFile(self.files[fi])
        table = self._open[fi].read_row_group(rg, columns=self.columns)
        self._cache[g] = table
        while len(self._cache) > CACHED_GROUPS:
            self._cache.popitem(last=False)
        return table

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        g = int(np.searchsorted(self._starts, i, side="right") - 1)
        table = self._group(g)
        local = int(i - self._starts[g])
        return {c: table.column(c)[local].as_py() for c in table.column_names}

    @property
    def column_types(self) -> dict[str, str]:
        return {f.name: str(f.type) for f in self.schema}

    def null_count(self, column: str) -> int | None:
        """Null rows of a flat column (a caption), from the footers' statistics or, when a writer
        left them out, by reading that column alone; None for a nested column (frames), whose
        leaf statistics count elements, not rows (its null rows show up as bad rows)."""
        import pyarrow.parquet as pq

        total = 0
        for f in self.files:
            meta = pq.ParquetFile(f).metadata
            leaf = next((j for j in range(meta.num_columns) if meta.schema.column(j).path == column), None)
            if leaf is None:
                return None
            for rg in range(meta.num_row_groups):
                stats = meta.row_group(rg).column(leaf).statistics
                if stats is None or not stats.has_null_count:
                    return sum(v is None for v in self.iter_column(column))
                total += stats.null_count
        return total

    def iter_column(self, column: str, batch: int = 8192):
        import pyarrow.parquet as pq

        for f in self.files:
            for b in pq.ParquetFile(f).iter_batches(batch_size=batch, columns=[column]):
                yield from b.column(0).to_pylist()


def open_rows(kind: str, location: str, frames_column: str | None = None):
    """An ArrowRows / ParquetRows of the train split (or the only split) of a real data set."""
    import datasets

    if kind == "parquet":
        files = parquet_files(location)
        try:
            return ParquetRows(files)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a non-parquet file
            raise ConfigError(f"dataset {location!r}: {files[0]} is not a readable parquet file "
                              f"({type(e).__name__})") from None
    src = datasets.load_from_disk(location) if kind == "arrow" else _from_hub(location)
    if isinstance(src, datasets.DatasetDict):
        if "train" not in src:
            raise ConfigError(f"dataset {location!r} has no 'train' split (splits: {', '.join(src)})")
        src = src["train"]
    return ArrowRows(src, frames_column)


def _from_hub(name: str):
    import datasets

    try:
        return datasets.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        raise ConfigError(f"dataset {name!r} not found locally or on the hub ({type(e).__name__}); "
                          "pass a save_to_disk directory or parquet files") from None


def split_rows(group_sizes: np.ndarray, eval_size: int, seed: int):
    """Seeded held-out split by whole groups (rows of the last group taken go to both as needed).

    Returns (train row ids, train group sizes, eval row ids), ids ascending: rows of one group
    stay adjacent in both splits.
    """
    n = int(group_sizes.sum())
    starts = np.concatenate([[0], np.cumsum(group_sizes)[:-1]])
    held = np.zeros(n, bool)
    need = eval_size
    for g in np.random.default_rng([seed, 0xE7A1]).permutation(len(group_sizes)):
        if need <= 0:
            break
        take = min(need, int(group_sizes[g]))
        held[starts[g] : starts[g] + take] = True
        need -= take
    train_groups = np.add.reduceat((~held).astype(np.int64), starts) if n else group_sizes
    return np.flatnonzero(~held), train_groups[train_groups > 0], np.flatnonzero(held)
