"""Readers for the fine-tuning data sets, as the 2019 ``run_classifier``, ``run_squad`` and ``run_swag`` read them.

Every reader returns a list of :class:`InputExample` and raises ``ValueError`` naming the file and the line
of any row it cannot read, so a broken download never turns into a silently wrong data set.
"""

from __future__ import annotations

import csv
import json
import numbers
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minibert.assets import data_path
from minibert.inputs import first_index, invalid_labels
from minibert.metrics import iob1_to_iob2


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


def check_labels(examples: list[InputExample], num_labels: int | None) -> None:
    """Raise ValueError naming the file and line of the first example whose label is not a class index in
    [0, num_labels) (the rule of ``minibert.inputs``, which lets -100 and -1 through as "not predicted"; None:
    any index), and when the split is empty: a model built with the wrong ``num_labels`` fails here, not deep in
    a loss."""
    if not examples:
        raise ValueError("the split has no examples; check the file and any subset size")
    labelled = [ex for ex in examples if ex.label is not None]
    for ex in labelled:
        if isinstance(ex.label, bool) or not isinstance(ex.label, numbers.Integral):
            raise ValueError(f"{_where(ex)} has label {ex.label!r}; labels must be class indices 0, 1, ... (map "
                             "label strings to indices when reading the file)")
    index = first_index(invalid_labels(torch.tensor([int(ex.label) for ex in labelled], dtype=torch.long),
                                       num_labels)) if labelled else None
    if index is not None:
        ex = labelled[index[0]]
        seen = sorted({int(e.label) for e in labelled})
        fix = (f": build the model with num_labels={max(seen) + 1}"
               if num_labels is not None and ex.label >= num_labels else "")
        raise ValueError(f"{_where(ex)}: label {ex.label!r} is outside {_range(num_labels)} (num_labels="
                         f"{num_labels}); this data has labels {seen}{fix}")


def _where(ex: InputExample) -> str:
    return ex.source or f"example {ex.guid!r}"


def _range(limit: int | None) -> str:
    return f"[0, {limit})" if limit is not None else "[0, ...)"


# ----------------------------------------------------------------------------------------------------------
# SQuAD, SWAG, CoNLL-2003 and Resume NER: the readers of run_squad, run_swag and the NER examples


@dataclass(frozen=True)
class SquadExample:
    """One SQuAD question on its paragraph. ``answers`` holds (text, character start in ``context_text``);
    empty for a v2.0 unanswerable question (``is_impossible``)."""

    qas_id: str
    question_text: str
    context_text: str
    answers: tuple[tuple[str, int], ...] = ()
    is_impossible: bool = False
    title: str = ""


def read_squad(path: str | Path | None = None, split: str = "dev-v1.1") -> list[SquadExample]:
    """Every question of a SQuAD v1.1 or v2.0 JSON file, in file order; each answer is checked against its
    context (``context[start:start+len(text)] == text``) and a mismatch names the question id."""
    path = Path(path) if path is not None else data_path("squad", f"{split}.json")
    with open(path, encoding="utf-8") as f:
        dataset = json.load(f)
    if not isinstance(dataset, dict) or "data" not in dataset:
        raise ValueError(f"{path}: not a SQuAD file (expected a JSON object with a 'data' list)")
    examples = []
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = []
                for a in qa.get("answers", []):
                    start, text = a["answer_start"], a["text"]
                    if not (0 <= start and context[start:start + len(text)] == text):
                        raise ValueError(f"{path}, question {qa['id']!r}: answer {text!r} at character {start} "
                                         f"is not in its context (found {context[start:start + len(text)]!r})")
                    answers.append((text, start))
                if not answers and not impossible:
                    raise ValueError(f"{path}, question {qa['id']!r}: no answers and not marked is_impossible")
                examples.append(SquadExample(qa["id"], qa["question"], context, tuple(answers), impossible,
                                             article.get("title", "")))
    if not examples:
        raise ValueError(f"{path}: no questions")
    return examples


@dataclass(frozen=True)
class SwagExample:
    """One multiple-choice example as run_swag reads it: a context sentence, the start of the next one, and
    the endings that may complete it; ``label`` is the index of the true ending (None if unlabelled)."""

    guid: str
    context_sentence: str
    start_ending: str
    endings: tuple[str, ...]
    label: int | None = None
    source: str | None = field(default=None, repr=False, compare=False)


def _swag_example(row: dict, guid: str, where: str) -> SwagExample:
    endings = tuple(row[k] for k in ("ending0", "ending1", "ending2", "ending3") if row.get(k) not in (None, ""))
    if not endings:
        raise ValueError(f"{where}: example {guid!r} has no choices (columns ending0..ending3 are empty)")
    for k in ("sent1", "sent2"):
        if k not in row:
            raise ValueError(f"{where}: example {guid!r} has no {k!r} column")
    label = row.get("label")
    if label not in (None, ""):
        try:
            label = int(label)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: example {guid!r} has label {label!r}, expected 0..{len(endings) - 1}")
        if not 0 <= label < len(endings):
            raise ValueError(f"{where}: example {guid!r} has label {label} but only {len(endings)} choices")
    else:
        label = None
    return SwagExample(guid, row["sent1"], row["sent2"], endings, label, where)


def read_swag(path: str | Path | None = None, split: str = "val") -> list[SwagExample]:
    """SWAG from the original swagaf CSV (``,video-id,fold-ind,startphrase,sent1,sent2,gold-source,
    ending0..3,label``) or from JSON lines with the same ``sent1, sent2, ending0..3, label`` keys (the 10 rows
    of ``swag/sample.json``). Errors name the file and line."""
    path = Path(path) if path is not None else data_path("swag", f"{split}.csv")
    examples = []
    with open(path, encoding="utf-8") as f:
        if path.suffix in (".json", ".jsonl"):
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {lineno}: not JSON ({err})") from None
                examples.append(_swag_example(row, f"{split}-{lineno}", f"{path}, line {lineno}"))
        else:
            reader = csv.DictReader(f)
            for row in reader:
                lineno = reader.line_num
                guid = row.get("fold-ind") or row.get("") or str(lineno)
                examples.append(_swag_example(row, f"{split}-{guid}", f"{path}, line {lineno}"))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


@dataclass(frozen=True)
class TaggedSentence:
    """A sentence as words (or characters) and one IOB2 tag per word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str | None = field(default=None, repr=False, compare=False)


CONLL2003_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")  # HF's order
RESUME_NER_TYPES = ("CONT", "EDU", "LOC", "NAME", "ORG", "PRO", "RACE", "TITLE")
RESUME_NER_LABELS = ("O",) + tuple(f"{p}-{t}" for t in RESUME_NER_TYPES for p in ("B", "I"))


def _read_columns(path: Path, sep: str | None, tag_column: int, labels: tuple[str, ...],
                  convert=None) -> list[TaggedSentence]:
    sentences, words, tags, first = [], [], [], 0

    def flush() -> None:
        if words:
            try:
                new = convert(tags) if convert else list(tags)
            except ValueError as err:
                raise ValueError(f"{path}, sentence at line {first}: {err}") from None
            sentences.append(TaggedSentence(tuple(words), tuple(new), f"{path}, line {first}"))
            words.clear()
            tags.clear()

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                flush()
                continue
            fields = line.split(sep)
            if len(fields) <= tag_column:
                raise ValueError(f"{path}, line {lineno}: expected at least {tag_column + 1} columns: {line!r}")
            if fields[tag_column] not in labels and (convert is None or fields[tag_column][2:] not in
                                                     {t[2:] for t in labels}):
                raise ValueError(f"{path}, line {lineno}: tag {fields[tag_column]!r} is not in the tag set "
                                 f"{list(labels)}")
            if not words:
                first = lineno
            words.append(fields[0])
            tags.append(fields[tag_column])
    flush()
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def read_conll2003(split: str = "train", path: str | Path | None = None) -> list[TaggedSentence]:
    """CoNLL-2003 English NER ('train' 14041, 'valid' 3250, 'test' 3453 sentences), ``-DOCSTART-`` skipped;
    the files' IOB1 tags are converted to IOB2 (every entity starts with B-)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"CoNLL-2003 split {split!r} does not exist; choose 'train', 'valid' or 'test'")
    path = Path(path) if path is not None else data_path("conll2003", f"{split}.txt")
    return _read_columns(path, " ", 3, CONLL2003_LABELS, iob1_to_iob2)


def bmes_to_iob2(tags: list[str]) -> list[str]:
    """BMES (Begin, Middle, End, Single) to IOB2: S- and B- begin, M- and E- continue."""
    out = []
    for i, tag in enumerate(tags):
        if tag != "O" and (len(tag) < 3 or tag[1] != "-" or tag[0] not in "BMESI"):
            raise ValueError(f"token {i}: tag {tag!r} is not 'O' or B-/M-/E-/S- plus a type")
        out.append(tag if tag == "O" else ("B-" if tag[0] in "BS" else "I-") + tag[2:])
    return out


def read_resume_ner(split: str = "train", path: str | Path | None = None) -> list[TaggedSentence]:
    """Resume NER (Zhang & Yang 2018), one character per line; the original BMES tags (``.char.bmes``) are
    converted to IOB2 (a ``.char.bio`` file is read as it is)."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"Resume NER split {split!r} does not exist; choose 'train', 'dev' or 'test'")
    path = Path(path) if path is not None else data_path("resume_ner", f"{split}.char.bmes")
    if path.suffix == ".bio":
        return _read_columns(path, " ", 1, RESUME_NER_LABELS)
    bmes = RESUME_NER_LABELS + tuple(f"{p}-{t}" for t in RESUME_NER_TYPES for p in ("M", "E", "S"))
    return _read_columns(path, " ", 1, bmes, bmes_to_iob2)


def encode_tagged(sentences: list[TaggedSentence], tokenizer, labels: tuple[str, ...],
                  max_seq_length: int = 128) -> list[dict]:
    """``[CLS] pieces [SEP]`` with the word's label on its first WordPiece and -100 on the others and on the
    special tokens (the BERT paper's sec. 4.3 choice), for :func:`minibert.data.collate`. The positions whose
    label is not -100 are the words, in order; words cut by ``max_seq_length`` have none (predict them 'O')."""
    index = {t: i for i, t in enumerate(labels)}
    features = []
    for n, s in enumerate(sentences):
        ids, label_ids = [tokenizer.cls_token_id], [-100]
        for w, (word, tag) in enumerate(zip(s.words, s.tags)):
            if tag not in index:
                raise ValueError(f"{s.source or f'sentence {n}'}: tag {tag!r} is not one of {list(labels)}")
            pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)) or [tokenizer.unk_token_id]
            if len(ids) + len(pieces) > max_seq_length - 1:
                break
            ids += pieces
            label_ids += [index[tag]] + [-100] * (len(pieces) - 1)
        ids.append(tokenizer.sep_token_id)
        label_ids.append(-100)
        features.append({"guid": s.source or f"sentence {n}", "input_ids": ids, "token_type_ids": [0] * len(ids),
                         "labels": label_ids})
    return features


def decode_tagged(token_logits: list, label_ids: list, sentences: list[TaggedSentence],
                  labels: tuple[str, ...]) -> list[list[str]]:
    """Per-word tags back from per-token logits, the inverse of :func:`encode_tagged`: the argmax on each word's
    first WordPiece (the positions whose label is not -100), and 'O' for the words cut by ``max_seq_length``.
    ``token_logits``/``label_ids``: one (seq, num_labels) / (seq,) array per sentence, as ``evaluate`` returns."""
    tags = []
    for logits, ids, sentence in zip(token_logits, label_ids, sentences):
        first = [i for i, y in enumerate(ids) if y != -100]
        words = [labels[int(row.argmax())] for row in (logits[i] for i in first)]
        tags.append(words + ["O"] * (len(sentence.words) - len(words)))
    return tags


def _choice_feature(ex: SwagExample, texts: list[str | tuple[str, str]], tokenizer, max_seq_length: int) -> dict:
    """One multiple-choice feature: `texts` (the example's sequences, each a text or a pair) encoded, and the label."""
    if not ex.endings:
        raise ValueError(f"{ex.source or ex.guid}: example {ex.guid!r} has no choices")
    encs = [tokenizer.encode(*(t if isinstance(t, tuple) else (t,)), max_length=max_seq_length) for t in texts]
    feat = {"guid": ex.guid, "input_ids": [e["input_ids"] for e in encs],
            "token_type_ids": [e["token_type_ids"] for e in encs]}
    if ex.label is not None:
        feat["label"] = ex.label
    return feat


def _endings(ex: SwagExample) -> list[str]:
    return [f"{ex.start_ending} {e}".strip() for e in ex.endings]


def encode_multiple_choice(examples: list[SwagExample], tokenizer, max_seq_length: int = 64) -> list[dict]:
    """run_swag's inputs: for every ending ``[CLS] context [SEP] start_ending ending [SEP]``; the pair is
    truncated longest-first. ``input_ids`` is a list of one sequence per choice; ``label`` the true choice."""
    return [_choice_feature(ex, [(ex.context_sentence, e) for e in _endings(ex)], tokenizer, max_seq_length)
            for ex in examples]


def encode_sentence_choices(examples: list[SwagExample], tokenizer, max_seq_length: int = 64) -> list[dict]:
    """A bi-encoder's inputs (:class:`minibert.bi_encoder.BiEncoderForMultipleChoice`): the context and each
    ``start_ending ending`` encoded alone, ``[CLS] text [SEP]`` truncated to `max_seq_length`; ``input_ids``
    is a list of 1 + num_choices sequences, the context first; ``label`` the true choice."""
    return [_choice_feature(ex, [ex.context_sentence, *_endings(ex)], tokenizer, max_seq_length) for ex in examples]


def next_sentence_choices(documents: list[list[str]], num_examples: int, num_choices: int = 4, seed: int = 0,
                          name: str = "book", min_words: int = 4, max_words: int = 40) -> list[SwagExample]:
    """A SWAG-like task built from running text, the way SWAG was built (Zellers et al. 2018) but with random
    rather than adversarially filtered distractors: a context sentence, its true next sentence and
    ``num_choices - 1`` other sentences of the same book, in random order."""
    rng = random.Random(seed)
    ok = lambda s: min_words <= len(s.split()) <= max_words  # noqa: E731
    pool = [s for doc in documents for s in doc if ok(s)]
    pairs = [(doc[i], doc[i + 1]) for doc in documents for i in range(len(doc) - 1) if ok(doc[i]) and ok(doc[i + 1])]
    if len(pool) < num_choices or not pairs:
        raise ValueError(f"{name}: too few sentences of {min_words}-{max_words} words to build choices")
    examples = []
    for k, (context, true_next) in enumerate(rng.sample(pairs, min(num_examples, len(pairs)))):
        endings = [true_next]
        while len(endings) < num_choices:
            s = rng.choice(pool)
            if s not in endings and s != context:
                endings.append(s)
        order = rng.sample(range(num_choices), num_choices)
        examples.append(SwagExample(f"{name}-{k}", context, "", tuple(endings[i] for i in order), order.index(0),
                                    name))
    return examples


# ----------------------------------------------------------------------------------------------------------
# Unlabelled Chinese text for pre-training: ChnSentiCorp's hotel reviews, cleared of dev/test overlap


def read_chnsenticorp_htl(path: str | Path | None = None) -> list[InputExample]:
    """The 7,766 ChnSentiCorp hotel reviews (``ChnSentiCorp_htl_all.csv``: a quoted CSV with header
    ``label,review``, label 1 = positive). Empty reviews are skipped; a row without two fields or with another
    label is an error naming the file and line."""
    path = Path(path) if path is not None else data_path("chnsenticorp_htl_all", "ChnSentiCorp_htl_all.csv")
    examples = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["label", "review"]:
            raise ValueError(f"{path}, line 1: expected the header 'label,review', found {header!r}")
        for row in reader:
            lineno = reader.line_num
            if len(row) != 2:
                raise ValueError(f"{path}, line {lineno}: expected 2 comma-separated fields (label,review), "
                                 f"found {len(row)}: {','.join(row)[:80]!r}")
            if row[1].strip():
                examples.append(InputExample(f"htl-{lineno}", row[1],
                                             label=label_index(row[0], CHNSENTICORP_LABELS, path, lineno),
                                             source=f"{path}, line {lineno}"))
    if not examples:
        raise ValueError(f"{path}: no reviews")
    return examples


def drop_overlapping(texts: list[str], reference: list[str], window: int = 20) -> list[str]:
    """The texts that share no run of ``window`` characters (whitespace removed) with any reference text, in
    order, each once (spaces aside): pre-training text cleared of the evaluation sets. Of the 7,765 hotel
    reviews, 443 are exact copies of ChnSentiCorp dev/test reviews and 371 more share 20 characters with one: a
    copy that differs by a space, a traditional character or a cut end, or a hotel's stock reply. A text shorter
    than ``window`` is dropped when it equals a whole reference text."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    squeeze = lambda s: "".join(s.split())  # noqa: E731
    seen = {r[i:i + window] for r in map(squeeze, reference) for i in range(max(len(r) - window + 1, 1))}
    kept, unique = [], set()
    for text in texts:
        s = squeeze(text)
        if s in unique or any(s[i:i + window] in seen for i in range(max(len(s) - window + 1, 1))):
            continue
        unique.add(s)
        kept.append(text)
    return kept


_SENTENCE_END = "。！？!?；;\n"


def review_sentences(text: str) -> list[str]:
    """A Chinese review cut after each sentence-final mark (。！？!?；; and line breaks; a run of them stays
    together), spaces squeezed: the sentences of one pre-training document, so next-sentence pairs can be built."""
    sentences, current = [], ""
    for i, ch in enumerate(text):
        current += ch
        if ch in _SENTENCE_END and (i + 1 == len(text) or text[i + 1] not in _SENTENCE_END):
            sentences.append(current)
            current = ""
    sentences.append(current)
    return [" ".join(s.split()) for s in sentences if s.strip()]
