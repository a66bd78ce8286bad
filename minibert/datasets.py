"""Readers for the fine-tuning data sets, as the 2019 ``run_classifier`` processors read them.

Every reader returns a list of :class:`InputExample` and raises ``ValueError`` naming the file and the line
of any row it cannot read, so a broken download never turns into a silently wrong data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from minibert.assets import data_path


@dataclass(frozen=True)
class InputExample:
    """One example: a sentence (``text_b`` None) or a pair, and its label index (None where unlabelled)."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: int | None = None
    source: str | None = field(default=None, repr=False, compare=False)  # "file, line N", for error messages


MRPC_LABELS = ("0", "1")  # 1 = the two sentences are paraphrases
CHNSENTICORP_LABELS = ("0", "1")  # 1 = positive review

# GLUE's files for train/dev; the labelled MSR file for test (GLUE's own test.tsv has no labels).
_MRPC_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "msr_paraphrase_test.txt", "glue_test": "test.tsv"}


def read_tsv(path: Path, num_columns: int, header: tuple[str, ...] | None = None) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file after its header, as (line number, fields).

    Quotes are not special (MRPC and ChnSentiCorp have unbalanced ``"``), the UTF-8 BOM is dropped, and a row
    with the wrong number of fields, or bytes that are not UTF-8, is an error that names the file and line.
    ``header`` lists the names the header's first field may have: a file whose first line is not one (its
    header was lost, so line 1 is an example) is an error instead of a silently dropped first example.
    """
    rows = []
    with open(path, "rb") as f:  # bytes, decoded line by line, so an encoding error can name its line
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}, line {lineno}: byte {raw[err.start:err.start + 1]!r} (byte "
                                 f"{err.start + 1} of the line) is not UTF-8 ({err.reason}); convert the file to "
                                 f"UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > fixed.tsv`, or download it "
                                 "again") from None
            if lineno == 1:
                first = line.split("\t")[0].strip()
                if header is not None and first not in header:
                    names = " or ".join(map(repr, header))
                    raise ValueError(f"{path}, line 1: expected the header line (first field {names}), found "
                                     f"{line[:80]!r}: the header is missing, and reading on would drop this "
                                     "first example; put the header line back (or download the file again)")
                continue
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != num_columns:
                raise ValueError(f"{path}, line {lineno}: expected {num_columns} tab-separated columns, "
                                 f"found {len(fields)}: {line[:80]!r}")
            rows.append((lineno, fields))
    if not rows:
        raise ValueError(f"{path}: no examples (the file is empty or has only a header)")
    return rows


def label_index(label: str, labels: tuple[str, ...], path: Path, lineno: int) -> int:
    """Index of ``label`` in ``labels``; surrounding spaces are ignored (ChnSentiCorp test has ``"    0"``)."""
    label = label.strip()
    if label not in labels:
        raise ValueError(f"{path}, line {lineno}: label {label!r} is not one of {list(labels)}")
    return labels.index(label)


def read_mrpc(split: str = "train", path: str | Path | None = None) -> list[InputExample]:
    """MRPC sentence pairs: 'train' (3668), 'dev' (408), 'test' (1725, labelled MSR file), 'glue_test' (unlabelled)."""
    if split not in _MRPC_FILES:
        raise ValueError(f"MRPC split {split!r} does not exist; choose one of {list(_MRPC_FILES)}")
    path = Path(path) if path is not None else data_path("mrpc", _MRPC_FILES[split])
    examples = []
    for lineno, (quality, id1, id2, s1, s2) in read_tsv(path, 5, header=("Quality", "index")):
        label = None if split == "glue_test" else label_index(quality, MRPC_LABELS, path, lineno)
        examples.append(InputExample(f"{split}-{id1}-{id2}", s1, s2, label, f"{path}, line {lineno}"))
    return examples


def read_chnsenticorp(split: str = "train", path: str | Path | None = None) -> list[InputExample]:
    """ChnSentiCorp reviews with sentiment labels: 'train' (9600), 'dev' (1200), 'test' (1200)."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"ChnSentiCorp split {split!r} does not exist; choose 'train', 'dev' or 'test'")
    path = Path(path) if path is not None else data_path("chnsenticorp", f"{split}.tsv")
    return [InputExample(f"{split}-{lineno}", text, None, label_index(label, CHNSENTICORP_LABELS, path, lineno),
                         f"{path}, line {lineno}")
            for lineno, (label, text) in read_tsv(path, 2, header=("label",))]


def check_labels(examples: list[InputExample], num_labels: int) -> None:
    """Raise ValueError naming the file and line of the first example whose label is not in [0, num_labels),
    and when the split is empty: a model built with the wrong ``num_labels`` fails here, not deep in a loss."""
    if not examples:
        raise ValueError("the split has no examples; check the file and any subset size")
    for ex in examples:
        if ex.label is not None and not (isinstance(ex.label, int) and 0 <= ex.label < num_labels):
            where = getattr(ex, "source", None) or f"example {ex.guid!r}"
            seen = sorted({e.label for e in examples if e.label is not None})
            raise ValueError(f"{where}: label {ex.label!r} is outside [0, {num_labels}) (num_labels={num_labels}); "
                             f"this data has labels {seen}: build the model with num_labels={max(seen) + 1}")
