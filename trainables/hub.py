"""One rule for a name the user gives as weights (a size's hub id, `llm_path` / `vit_path`) or as
a data set (`--dataset`): a Hugging Face hub id, or a local path?

A hub id has the hub's form, "org/name" (one '/', not starting with '/', '.' or '~'), and nothing
exists at that path here. Everything else is a local path; one that does not exist is an error
at once, never a hub lookup (with its network retries) that fails minutes later.
"""
from __future__ import annotations

import os
import re

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
FILE_SUFFIXES = (".parquet",)  # "dir/clips.parquet" is a file someone mistyped, not a repository


def is_hub_id(name: str) -> bool:
    return (HUB_ID.fullmatch(name) is not None and not name.endswith(FILE_SUFFIXES)
            and not os.path.exists(os.path.expanduser(name)))
