"""pytorch-pretrained-bert 0.6.2's ``file_utils`` names, so a 2019 script's ``from pytorch_pretrained_bert.file_utils
import ...`` runs with the package name replaced by ``minibert``. They live in :mod:`minibert.assets`; this module
only gives them their 2019 address.

0.6.2's S3 helpers (``s3_get``, ``s3_etag``, ...) are gone with its S3 links: asking for one says so.
"""
from __future__ import annotations

import os

from minibert.assets import (CONFIG_NAME, PYTORCH_PRETRAINED_BERT_CACHE, WEIGHTS_NAME, cached_path,
                             url_to_filename)

__all__ = ["PYTORCH_PRETRAINED_BERT_CACHE", "WEIGHTS_NAME", "CONFIG_NAME", "cached_path", "url_to_filename",
           "read_set_from_file", "get_file_extension"]

_GONE = ("split_s3_path", "s3_request", "s3_etag", "s3_get", "http_get", "get_from_cache", "filename_to_url")


def read_set_from_file(filename: str | os.PathLike) -> set[str]:
    """The lines of a UTF-8 text file as a set, each without its line end (0.6.2's helper)."""
    with open(filename, encoding="utf-8") as f:
        return {line.rstrip() for line in f}


def get_file_extension(path: str | os.PathLike, dot: bool = True, lower: bool = True) -> str:
    """``path``'s extension: with its dot unless ``dot=False``, lower-cased unless ``lower=False`` (0.6.2's helper)."""
    ext = os.path.splitext(path)[1]
    ext = ext if dot else ext[1:]
    return ext.lower() if lower else ext


def __getattr__(name: str):
    if name in _GONE:
        raise AttributeError(f"minibert.file_utils has no {name}: pytorch-pretrained-bert's S3 links and its "
                             "ETag cache are gone; use cached_path(url, cache_dir) to download a file once")
    raise AttributeError(f"module 'minibert.file_utils' has no attribute {name!r}")
