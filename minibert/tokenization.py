"""BERT's WordPiece tokenizer, written from scratch (Devlin et al. 2019, section 3; Wu et al. 2016, section 4.1).

Text goes through two stages, as in Google's `tokenization.py` and pytorch-pretrained-bert 0.6.2:

1. `BasicTokenizer`: drop NUL, U+FFFD and control characters, turn whitespace into spaces, put spaces around
   CJK ideographs, NFC-normalise, split on whitespace, lower-case and strip accents (NFD, drop Mn) when asked,
   and split off every punctuation character.
2. `WordpieceTokenizer`: greedy longest-match-first over the vocabulary, `##` marking a piece that continues a
   word; a word that cannot be covered, or is longer than `max_input_chars_per_word`, becomes one `[UNK]`.

`BertTokenizer` joins the two, keeps the special tokens ([CLS], [SEP], ...) whole wherever they appear, and maps
tokens to ids. Its output is token-for-token identical to the pure-Python reference
(`transformers.models.bert.tokenization_bert_legacy.BertTokenizerLegacy`) and several times faster, thanks to
a per-word cache, lazily precomputed character classes and a length bound in the WordPiece search.

Encoding API used by the rest of minibert (fine-tuning, pretraining, viz)::

    tok = BertTokenizer.from_pretrained("bert-base-uncased")   # or a vocab file, a folder, None (offline MiniLM)
    tok.tokenize("Who was Jim Henson?")            # ['who', 'was', 'jim', 'henson', '?']
    tok.encode(text_a, text_b=None, max_length=None, padding=False)
        # -> {"input_ids": [...], "token_type_ids": [...], "attention_mask": [...]}  (lists of int)
        # [CLS] a [SEP] (b [SEP]); pairs are truncated longest-first (`truncate_seq_pair`); padding=True pads
        # to max_length with [PAD] (id 0, mask 0, type 0).
    tok.batch_encode(texts_a, texts_b=None, max_length=128, padding="longest", return_tensors=True)
        # -> {"input_ids", "token_type_ids", "attention_mask"}: LongTensors (batch, seq); padding="longest"
        # pads to the longest sequence of the batch, "max_length" to max_length; return_tensors=False gives lists.
    tok(texts)                                      # str -> encode(...), list -> batch_encode(...)
    tok.decode(ids, skip_special_tokens=False)      # "who was jim henson ?": ## pieces merged

A pair that cannot fit (`max_length < 3`) raises ValueError, as does an id outside the vocabulary; a text
that is not a str raises TypeError.

Where this differs from pytorch-pretrained-bert 0.6.2 it follows the reference instead (the tests check
parity, and found no difference on MRPC, ChnSentiCorp and 10,000 generated strings):
- the text is NFC-normalised before it is split, so 'e' + U+0301 and 'é' give the same tokens;
- special tokens are kept whole even when glued to a word ('hello[SEP]world' -> hello [SEP] world);
- a token outside the vocab maps to [UNK]'s id in `convert_tokens_to_ids` (0.6.2 raised KeyError).
"""
from __future__ import annotations

import collections
import heapq
import json
import logging
import math
import operator
import os
import re
import unicodedata
from pathlib import Path
from typing import Callable, Iterable, Sequence

from minibert import assets

logger = logging.getLogger(__name__)

VOCAB_NAME = "vocab.txt"
# pytorch-pretrained-bert 0.6.2's released vocabularies, where they are now (its S3 links are gone)
PRETRAINED_VOCAB_ARCHIVE_MAP = {name: f"{assets.HUB_URL}/{name}/resolve/main/vocab.txt"
                                for name in assets.PRETRAINED_NAMES}
SPECIAL_TOKENS = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
_MAX_LEN_KNOWN = 512  # max_position_embeddings of every released BERT
_CACHE_LIMIT = 200_000  # words kept in a tokenizer's cache before it is cleared


# ----------------------------------------------------------------------------------------------------------
# Vocabulary


def load_vocab(vocab_file: str | os.PathLike) -> "collections.OrderedDict[str, int]":
    """Read a vocab file, one token a line, id = line number.

    Only the newline is stripped: the Chinese vocab holds `\\u2028` tokens that `splitlines()` and `strip()`
    would break (shifting every later id).
    """
    path = Path(vocab_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"vocab file not found: {str(path)!r}; expected a text file with one WordPiece token per line "
            f"(e.g. bert-base-uncased's vocab.txt); get one with BertTokenizer.from_pretrained('bert-base-uncased')"
        )
    vocab: collections.OrderedDict[str, int] = collections.OrderedDict()
    try:
        with open(path, "r", encoding="utf-8") as reader:
            for index, line in enumerate(reader):
                token = line.rstrip("\n")
                if index == 0:
                    token = token.removeprefix("\ufeff")  # a UTF-8 BOM (some editors add one) is not part of [PAD]
                if token in vocab:
                    logger.warning("vocab %s: token %r appears twice (lines %d and %d); the later id wins",
                                   path, token, vocab[token] + 1, index + 1)
                vocab[token] = index
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not vocab:
        raise ValueError(f"vocab file {str(path)!r} is empty; expected one WordPiece token per line")
    return vocab


def _not_utf8(path: Path) -> ValueError:
    """The error for a vocab file that is not UTF-8, naming the first line that is not."""
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return ValueError(f"{path}, line {lineno}: byte {raw[err.start:err.start + 1]!r} is not UTF-8 "
                              f"({err.reason}); a vocab.txt is UTF-8, one token a line: convert it (e.g. `iconv -f "
                              "latin1 -t utf-8`) or use the vocab.txt that came with the checkpoint")
    return ValueError(f"{path} is not UTF-8; a vocab.txt is UTF-8, one token a line")


# ----------------------------------------------------------------------------------------------------------
# Character classes (Google's definitions; each a small pure function that can be tested alone)


def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or any Unicode space separator (Zs)."""
    if char in " \t\n\r":
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """Any C* category (control, format, surrogate, private use, unassigned) except tab/newline/return."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """Every non-letter/number ASCII symbol (so `$`, `^`, `` ` `` split too) plus every Unicode P* category."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(cp: int) -> bool:
    """CJK Unified Ideographs (and extensions, compatibility ideographs): Google's ranges, not kana or hangul."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def clean_text(text: str) -> str:
    """Drop NUL, U+FFFD and control characters; map every whitespace character to a space."""
    output = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or is_control(char):
            continue
        output.append(" " if is_whitespace(char) else char)
    return "".join(output)


def tokenize_chinese_chars(text: str) -> str:
    """Put spaces around every CJK ideograph, so each one becomes a word of its own."""
    return "".join(f" {c} " if is_chinese_char(ord(c)) else c for c in text)


def run_strip_accents(text: str) -> str:
    """Decompose (NFD) and drop the non-spacing marks (Mn): 'é' -> 'e'."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def run_split_on_punc(text: str) -> list[str]:
    """Make every punctuation character a token of its own: 'hi,there!' -> ['hi', ',', 'there', '!']."""
    output: list[str] = []
    start_new_word = True
    for char in text:
        if is_punctuation(char):
            output.append(char)
            start_new_word = True
        else:
            if start_new_word:
                output.append("")
            start_new_word = False
            output[-1] += char
    return output


def whitespace_tokenize(text: str) -> list[str]:
    """Strip and split on whitespace (Google's and pytorch-pretrained-bert's ``whitespace_tokenize``, which
    0.6.2's run_squad.py imports): '  Jim  Henson ' -> ['Jim', 'Henson']."""
    return text.split()


def _check_text(text: object, where: str) -> None:
    if not isinstance(text, str):
        hint = " (decode bytes first: text.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{where} expects a str, got {type(text).__name__}: {text!r:.60}{hint}")


# ----------------------------------------------------------------------------------------------------------
# BasicTokenizer


class BasicTokenizer:
    """Cleaning, CJK splitting, lower-casing, accent stripping and punctuation splitting (no vocabulary)."""

    def __init__(self, do_lower_case: bool = True, never_split: Iterable[str] = SPECIAL_TOKENS,
                 tokenize_chinese_chars: bool = True, strip_accents: bool | None = None) -> None:
        self.do_lower_case = do_lower_case
        self.never_split = set(never_split or ())
        self.tokenize_chinese_chars = tokenize_chinese_chars
        # None follows do_lower_case, as in the original BERT (the 2019 library had no such argument).
        self.strip_accents = strip_accents
        # Character classes, filled lazily: each distinct character is classified once per tokenizer.
        self._seen: set[str] = set()
        self._changed: set[str] = set()  # characters that cleaning / CJK spacing rewrite
        self._table: dict[int, str | None] = {}  # str.translate table for those characters
        self._punct: set[str] = set()

    # -- whole-text steps -------------------------------------------------------------------------------
    def _learn_chars(self, chars: set[str]) -> None:
        for char in chars - self._seen:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or is_control(char):
                self._table[cp] = None
            elif is_whitespace(char):
                if char != " ":
                    self._table[cp] = " "
            elif self.tokenize_chinese_chars and is_chinese_char(cp):
                self._table[cp] = f" {char} "
            if cp in self._table:
                self._changed.add(char)
            if is_punctuation(char):
                self._punct.add(char)
            self._seen.add(char)

    def words(self, text: str) -> list[str]:
        """The whole-text steps: clean, space CJK, NFC-normalise, split on whitespace (Google's `clean_text`,
        `tokenize_chinese_chars` and `whitespace_tokenize`), each one C-speed pass over the text."""
        chars = set(text)
        if not chars <= self._seen:
            self._learn_chars(chars)
        if not self._changed.isdisjoint(chars):
            text = text.translate(self._table)
        # The reference NFC-normalises here so that 'e' + U+0301 and 'é' give the same tokens.
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text.split()

    # -- per-word steps -----------------------------------------------------------------------------------
    def split_word(self, word: str) -> list[str]:
        """The per-word steps: lower-case, strip accents, split off punctuation ('Don't' -> ['don', "'", 't'])."""
        if self.do_lower_case:
            word = word.lower()
            if self.strip_accents is not False:
                word = run_strip_accents(word) if not word.isascii() else word
        elif self.strip_accents:
            word = run_strip_accents(word) if not word.isascii() else word
        chars = set(word)
        if not chars <= self._seen:
            self._learn_chars(chars)
        if self._punct.isdisjoint(chars):
            return word.split()  # accent stripping can leave nothing behind
        return [piece for part in run_split_on_punc(word) for piece in part.split()]

    def tokenize(self, text: str, never_split: Iterable[str] | None = None) -> list[str]:
        """Split text into words and punctuation; tokens in `never_split` pass through unchanged."""
        _check_text(text, "BasicTokenizer.tokenize")
        keep = self.never_split.union(never_split) if never_split else self.never_split
        out: list[str] = []
        for word in self.words(text):
            if word in keep:
                out.append(word)
            else:
                out.extend(self.split_word(word))
        return out


# ----------------------------------------------------------------------------------------------------------
# WordpieceTokenizer


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece (Wu et al. 2016): 'unaffable' -> ['un', '##aff', '##able']."""

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", max_input_chars_per_word: int = 100) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self._vocab_len = -1

    def _bounds(self) -> tuple[int, int]:
        """Longest token and longest `##` continuation: no longer substring can be in the vocab."""
        if len(self.vocab) != self._vocab_len:
            self._max_first = max((len(t) for t in self.vocab), default=0)
            self._max_cont = max((len(t) - 2 for t in self.vocab if t.startswith("##")), default=0)
            self._vocab_len = len(self.vocab)
        return self._max_first, self._max_cont

    def tokenize_word(self, word: str) -> list[str]:
        """Pieces of one whitespace-free word (already through the basic tokenizer)."""
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [self.unk_token]
        max_first, max_cont = self._bounds()
        vocab = self.vocab
        pieces = []
        start = 0
        while start < n:
            # Try the longest candidate first; substrings longer than any vocab token are skipped.
            end = min(n, start + (max_cont if start else max_first))
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return [self.unk_token]  # some position cannot be covered: the whole word is unknown
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """WordPiece every whitespace-separated word of already basic-tokenized text."""
        _check_text(text, "WordpieceTokenizer.tokenize")
        return [piece for word in text.split() for piece in self.tokenize_word(word)]


# ----------------------------------------------------------------------------------------------------------
# BertTokenizer


class WordCache:
    """Each word's WordPiece tokens, computed by ``word_pieces`` once: real text repeats its words, so most words
    cost one dict lookup instead of the per-word steps. Holds at most ``limit`` words, then starts again empty."""

    def __init__(self, word_pieces: Callable[[str], list[str]], limit: int = _CACHE_LIMIT) -> None:
        self.word_pieces = word_pieces
        self.limit = limit
        self.known: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.known)

    def pieces(self, words: Iterable[str]) -> list[str]:
        """The tokens of ``words``, in order (the loop is here, on a plain dict, because it runs for every word)."""
        known, tokens = self.known, []
        for word in words:
            found = known.get(word)
            if found is None:
                if len(known) >= self.limit:
                    known.clear()
                found = known[word] = self.word_pieces(word)
            tokens += found
        return tokens


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Truncate a pair in place, one token at a time from the longer one (BERT's `_truncate_seq_pair`).

    Longest-first keeps more of a short sentence than cutting each side in proportion would.
    """
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


class BertTokenizer:
    """End-to-end tokenizer: basic tokenization, then WordPiece, then ids (pytorch-pretrained-bert 0.6.2 API)."""

    def __init__(self, vocab_file: str | os.PathLike, do_lower_case: bool = True, max_len: int | None = None,
                 do_basic_tokenize: bool = True, never_split: Iterable[str] = SPECIAL_TOKENS, *,
                 tokenize_chinese_chars: bool = True, strip_accents: bool | None = None,
                 unk_token: str = "[UNK]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 cls_token: str = "[CLS]", mask_token: str = "[MASK]") -> None:
        self.vocab = load_vocab(vocab_file)
        missing = [t for t in (unk_token, cls_token, sep_token) if t not in self.vocab]
        if missing:
            raise ValueError(
                f"vocab file {str(vocab_file)!r} lacks the special token(s) {missing}; a BERT vocab needs "
                f"{unk_token}, {cls_token} and {sep_token} (and {pad_token}, {mask_token}); use the vocab.txt "
                f"that came with the checkpoint, or pass unk_token=/cls_token=/sep_token= to match your file"
            )
        self.ids_to_tokens = collections.OrderedDict((i, t) for t, i in self.vocab.items())
        self.do_basic_tokenize = do_basic_tokenize
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=never_split,
                                              tokenize_chinese_chars=tokenize_chinese_chars,
                                              strip_accents=strip_accents)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab, unk_token=unk_token)
        self.max_len = max_len if max_len is not None else int(1e12)
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        # Special tokens are kept whole even inside words ("hello[SEP]world"), as the reference does; other
        # never_split tokens only when they stand alone between spaces (0.6.2's rule).
        specials = {unk_token, sep_token, pad_token, cls_token, mask_token}
        self.special_tokens = specials & self.basic_tokenizer.never_split
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile(f"({'|'.join(map(re.escape, longest_first))})") if longest_first else None
        self.cache = WordCache(self.word_pieces)

    # -- properties -------------------------------------------------------------------------------------
    @property
    def do_lower_case(self) -> bool:
        return self.basic_tokenizer.do_lower_case

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def _special_id(self, token: str, role: str) -> int:
        if token not in self.vocab:
            raise ValueError(f"the vocab has no {role} token {token!r}; add it to vocab.txt or pass "
                             f"{role}_token= with the token your vocab uses")
        return self.vocab[token]

    @property
    def pad_token_id(self) -> int:
        return self._special_id(self.pad_token, "pad")

    @property
    def cls_token_id(self) -> int:
        return self._special_id(self.cls_token, "cls")

    @property
    def sep_token_id(self) -> int:
        return self._special_id(self.sep_token, "sep")

    @property
    def mask_token_id(self) -> int:
        return self._special_id(self.mask_token, "mask")

    @property
    def unk_token_id(self) -> int:
        return self._special_id(self.unk_token, "unk")

    # -- tokens -----------------------------------------------------------------------------------------
    def split_specials(self, text: str) -> list[str]:
        """Cut the text around the special tokens, which stay whole: 'a[SEP]b' -> ['a', '[SEP]', 'b']."""
        if self._special_re is None or not self._special_re.search(text):  # most text: one C-speed scan
            return [text]
        return [part for part in self._special_re.split(text) if part]

    def word_pieces(self, word: str) -> list[str]:
        """The WordPiece tokens of one whitespace-separated word: the basic tokenizer's per-word steps, then
        WordPiece on each piece (what the cache holds)."""
        if word in self.basic_tokenizer.never_split:
            return [word]
        pieces = self.basic_tokenizer.split_word(word) if self.do_basic_tokenize else [word]
        return [token for piece in pieces for token in self.wordpiece_tokenizer.tokenize_word(piece)]

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens, e.g. 'UNwant\\u00e9d,running' -> ['un', '##want', '##ed', ',', 'runn', '##ing']."""
        _check_text(text, "BertTokenizer.tokenize")
        words = self.basic_tokenizer.words if self.do_basic_tokenize else str.split
        tokens: list[str] = []
        for part in self.split_specials(text):
            if part in self.special_tokens:
                tokens.append(part)  # kept whole
            else:
                tokens += self.cache.pieces(words(part))  # word_pieces of each word, computed once per word
        return tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Tokens -> ids; a token outside the vocab maps to [UNK]'s id. Warns past max_len, as 0.6.2 did."""
        vocab = self.vocab
        unk = vocab[self.unk_token]
        ids = [vocab.get(t, unk) for t in tokens]
        if len(ids) > self.max_len:
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length for this "
                "BERT model (%d > %d). Running this sequence through BERT will result in indexing errors",
                len(ids), self.max_len)
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens; an id outside [0, vocab_size) is an error (it would be an index error in the model)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        tokens = []
        for i in ids:
            try:  # ints, numpy ints and 0-d tensors; not floats, strings or bools
                token = None if isinstance(i, bool) else self.ids_to_tokens.get(operator.index(i))
            except TypeError:
                token = None
            if token is None:
                raise ValueError(f"id {i!r} is not in the vocabulary (valid ids are ints 0..{len(self.vocab) - 1}); "
                                 f"were these ids made with another vocab?")
            tokens.append(token)
        return tokens

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join tokens with spaces and glue `##` continuations back onto their word."""
        return " ".join(tokens).replace(" ##", "").strip()

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids -> readable text ('puppet ##eer' -> 'puppeteer'); optionally drop [CLS], [SEP] and [PAD]."""
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            drop = {self.cls_token, self.sep_token, self.pad_token}
            tokens = [t for t in tokens if t not in drop]
        return self.convert_tokens_to_string(tokens)

    # -- model inputs -----------------------------------------------------------------------------------
    def encode(self, text_a: str, text_b: str | None = None, max_length: int | None = None,
               padding: bool = False) -> dict[str, list[int]]:
        """One sentence or a pair -> input_ids, token_type_ids, attention_mask (BERT paper, figure 2)."""
        tokens_a = self.tokenize(text_a)
        tokens_b = self.tokenize(text_b) if text_b is not None else None
        if max_length is not None:
            need = 3 if tokens_b is not None else 2
            if max_length < need:
                what = "a pair needs 3 ([CLS] a [SEP] b [SEP])" if need == 3 else "a sentence needs 2 ([CLS] a [SEP])"
                raise ValueError(f"max_length={max_length} cannot hold the special tokens: {what}; "
                                 f"use max_length >= {need}")
            if tokens_b is not None:
                truncate_seq_pair(tokens_a, tokens_b, max_length - 3)
            else:
                del tokens_a[max_length - 2:]
        elif padding:
            raise ValueError("padding=True needs max_length (the length to pad to)")
        tokens = [self.cls_token, *tokens_a, self.sep_token]
        token_type_ids = [0] * len(tokens)
        if tokens_b is not None:
            tokens += [*tokens_b, self.sep_token]
            token_type_ids += [1] * (len(tokens_b) + 1)
        enc = {"input_ids": self.convert_tokens_to_ids(tokens), "token_type_ids": token_type_ids,
               "attention_mask": [1] * len(tokens)}
        if padding:
            self._pad(enc, max_length)
        return enc

    def _pad(self, enc: dict[str, list[int]], length: int) -> None:
        n = len(enc["input_ids"])
        if n < length:
            pad = length - n
            enc["input_ids"] = enc["input_ids"] + [self.pad_token_id] * pad
            enc["token_type_ids"] = enc["token_type_ids"] + [0] * pad
            enc["attention_mask"] = enc["attention_mask"] + [0] * pad

    def batch_encode(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
                     max_length: int | None = 128, padding: str = "longest", return_tensors: bool = True):
        """Encode a batch and pad it: to the longest sequence ("longest") or to max_length ("max_length").

        Returns a dict of LongTensors (batch, seq) when return_tensors, else a dict of lists of lists.
        """
        if isinstance(texts_a, str):
            raise TypeError("batch_encode expects a list of str; for one sentence use encode(text) or pass [text]")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', not {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise ValueError(f"texts_a has {len(texts_a)} texts but texts_b has {len(texts_b)}; pairs need one b per a")
        encs = [self.encode(a, None if texts_b is None else texts_b[i], max_length=max_length)
                for i, a in enumerate(texts_a)]
        length = max_length if padding == "max_length" else max((len(e["input_ids"]) for e in encs), default=0)
        for e in encs:
            self._pad(e, length)
        batch = {k: [e[k] for e in encs] for k in ("input_ids", "token_type_ids", "attention_mask")}
        if return_tensors:
            import torch

            batch = {k: torch.tensor(v, dtype=torch.long).reshape(len(encs), length) for k, v in batch.items()}
        return batch

    def __call__(self, text, text_pair=None, max_length: int | None = None, padding=None,
                 return_tensors: bool | None = None):
        """`tok("a")` -> encode; `tok(["a", "b"])` -> batch_encode (tensors, padded to the longest)."""
        if isinstance(text, str):
            return self.encode(text, text_pair, max_length=max_length, padding=bool(padding))
        return self.batch_encode(text, text_pair, max_length=max_length, padding=padding or "longest",
                                 return_tensors=True if return_tensors is None else return_tensors)

    # -- files ------------------------------------------------------------------------------------------
    def save_vocabulary(self, vocab_path: str | os.PathLike) -> str:
        """Write the vocab, one token a line in id order, to a folder (as vocab.txt) or a file path."""
        vocab_file = Path(vocab_path)
        if vocab_file.is_dir():
            vocab_file = vocab_file / VOCAB_NAME
        with open(vocab_file, "w", encoding="utf-8", newline="\n") as writer:
            for index, (token, token_index) in enumerate(sorted(self.vocab.items(), key=lambda kv: kv[1])):
                if index != token_index:
                    logger.warning("Saving vocabulary to %s: vocabulary indices are not consecutive. "
                                   "Please check that the vocabulary is not corrupted!", vocab_file)
                writer.write(token + "\n")
        return str(vocab_file)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, **kwargs) -> "BertTokenizer":
        """Load from a vocab file, a folder with vocab.txt, None / 'all-MiniLM-L6-v2' (the packaged offline
        checkpoint) or a hub name ('bert-base-uncased', 'bert-base-cased', 'bert-base-chinese').

        As pytorch-pretrained-bert 0.6.2: a released name sets do_lower_case itself (False for '-cased' names, True
        for the others), with 0.6.2's warning when the argument says otherwise; with ``cache_dir`` its vocabulary
        is downloaded into that folder. Other cased names default to do_lower_case=False; a folder's
        tokenizer_config.json sets do_lower_case; named models get max_len=512.
        """
        name = pretrained_model_name_or_path
        config: dict = {}
        if name is not None and str(name) in PRETRAINED_VOCAB_ARCHIVE_MAP:
            # 0.6.2's rule for its released names: a -cased vocab keeps capitals, an uncased one has none
            cased = "-cased" in str(name)
            if kwargs.get("do_lower_case", not cased) == cased:
                logger.warning(
                    f"The pre-trained model you are loading is {'a cased' if cased else 'an uncased'} model but you "
                    f"have {'not set' if cased else 'set'} `do_lower_case` to False. We are setting "
                    f"`do_lower_case={not cased}` for you but you may want to check this behavior.")
            kwargs["do_lower_case"] = not cased
        if name is not None and Path(name).is_file():
            vocab_file = Path(name)
        elif name is not None and Path(name).is_dir():
            vocab_file = Path(name) / VOCAB_NAME
            if not vocab_file.is_file():
                raise FileNotFoundError(f"folder {str(name)!r} has no {VOCAB_NAME}; pass the vocab file itself or "
                                        f"a folder that holds {VOCAB_NAME}")
            config = _read_tokenizer_config(Path(name))
        else:
            if name is not None and cache_dir is not None and str(name) in PRETRAINED_VOCAB_ARCHIVE_MAP:
                # as 0.6.2: the released vocabulary is downloaded into cache_dir (named by its URL's sha256)
                remote = assets.VOCAB_REMOTES.get(str(name))
                vocab_file = Path(assets.cached_path(PRETRAINED_VOCAB_ARCHIVE_MAP[str(name)], cache_dir,
                                                     remote.sha256 if remote else None))
            elif name is not None and str(name) in assets.VOCABS:
                try:  # the course data folder
                    vocab_file = Path(assets.vocab_path(str(name)))
                except FileNotFoundError:  # not there yet: fetch the released vocab files (real download)
                    logger.info("vocab of %s not in %s: downloading it", name, assets.data_dir())
                    assets.download("vocab")
                    vocab_file = Path(assets.vocab_path(str(name)))
            else:  # None / the offline checkpoint, or a hub name (real, cached download)
                folder = Path(assets.checkpoint_path(name, cache_dir))
                vocab_file = folder / VOCAB_NAME
                config = _read_tokenizer_config(folder)
            kwargs.setdefault("max_len", _MAX_LEN_KNOWN)
        if "do_lower_case" not in kwargs:
            if "do_lower_case" in config:
                kwargs["do_lower_case"] = bool(config["do_lower_case"])
            elif name is not None and _is_cased_name(str(name)):
                kwargs["do_lower_case"] = False
        if "max_len" not in kwargs and isinstance(config.get("model_max_length"), int):
            kwargs["max_len"] = config["model_max_length"]
        return cls(vocab_file, **kwargs)


class FullTokenizer(BertTokenizer):
    """Google's name for the end-to-end tokenizer: ``FullTokenizer(vocab_file, do_lower_case)`` with ``vocab``,
    ``inv_vocab``, ``tokenize`` and the two conversions."""

    def __init__(self, vocab_file: str | os.PathLike, do_lower_case: bool = True) -> None:
        super().__init__(vocab_file, do_lower_case=do_lower_case)

    @property
    def inv_vocab(self) -> dict[int, str]:
        return self.ids_to_tokens


def convert_by_vocab(vocab: dict, items: Iterable) -> list:
    """Google's ``convert_by_vocab``: look every item up in ``vocab`` (KeyError for one it lacks)."""
    return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab: dict[str, int], tokens: Iterable[str]) -> list[int]:
    """Google's module-level ``convert_tokens_to_ids(vocab, tokens)``."""
    return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab: dict[int, str], ids: Iterable[int]) -> list[str]:
    """Google's module-level ``convert_ids_to_tokens(inv_vocab, ids)``."""
    return convert_by_vocab(inv_vocab, ids)


def _is_cased_name(name: str) -> bool:
    base = Path(name).name.lower()
    return "cased" in base and "uncased" not in base


def _read_tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("ignoring unreadable %s", path)
        return {}


# ----------------------------------------------------------------------------------------------------------
# Learning a WordPiece vocabulary


def train_wordpiece(texts: Iterable[str], vocab_size: int,
                    special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
                    do_lower_case: bool = True, min_frequency: int = 1,
                    max_input_chars_per_word: int = 100, score: str = "ratio") -> list[str]:
    """Learn a WordPiece vocabulary from raw text; returns the tokens in id order (write one a line as vocab.txt).

    Google never published how BERT's vocabulary was built; this is the likelihood-based WordPiece training of
    Schuster & Nakajima (2012) as the Hugging Face course describes it. The texts go through `BasicTokenizer`
    (lower-casing, accent stripping, punctuation splitting); each word starts as its characters, the first one
    plain and the others as `##` continuation pieces ('hug' -> h ##u ##g). Then, until the vocabulary holds
    `vocab_size` tokens, the adjacent pair (a, b) with the best score count(ab) / (count(a) * count(b)) is
    merged everywhere into one new token (a + b without its '##'); counts are weighted by word frequency.
    Ties go to the more frequent pair, then to the alphabetically first (a, b), so the result is deterministic.

    `score="ratio"` is that score, as the course describes it: it is the gain in log-likelihood *per merged
    occurrence* under a unigram model of the pieces, so it favours rare pairs that never appear apart and, on a
    small corpus, spends thousands of merges on rare words before 'th' + '##e'. `score="likelihood"` ranks by
    the gain of the whole text instead, count(ab) * log(count(ab) * N / (count(a) * count(b))) with N the
    number of pieces at the start (Schuster & Nakajima 2012): frequent words become whole tokens first.

    The vocabulary is `special_tokens` (ids 0, 1, ...; [PAD] first so that padding is id 0), then every
    character seen in both forms ('x' and '##x', so any word made of known characters can be covered), then
    the merged tokens in the order they were learned. Words seen fewer than `min_frequency` times or longer
    than `max_input_chars_per_word` (the tokenizer maps those to [UNK] anyway) are left out.
    Pair counts are updated incrementally (only the words that contain the merged pair are re-split), and the
    best pair comes from a heap with stale entries skipped, so 8,000 tokens from a few MB of text take seconds.
    """
    if isinstance(texts, str):
        raise TypeError("train_wordpiece expects an iterable of texts (e.g. a list of lines), not one str")
    if score not in ("ratio", "likelihood"):
        raise ValueError(f"score must be 'ratio' (count(ab) / (count(a) count(b))) or 'likelihood', not {score!r}")
    basic = BasicTokenizer(do_lower_case=do_lower_case, never_split=special_tokens)
    word_freq: collections.Counter = collections.Counter()
    for text in texts:
        _check_text(text, "train_wordpiece")
        word_freq.update(w for w in basic.tokenize(text) if w not in special_tokens)
    words = [w for w, f in word_freq.items() if f >= min_frequency and len(w) <= max_input_chars_per_word]
    chars = sorted({c for w in words for c in w})
    vocab = list(dict.fromkeys(special_tokens))
    vocab += [c for c in chars if c not in vocab] + [f"##{c}" for c in chars if f"##{c}" not in vocab]
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(special_tokens)} special tokens plus "
                         f"the {2 * len(chars)} character pieces the texts need ({len(vocab)}); ask for more")

    token_id = {t: i for i, t in enumerate(vocab)}
    splits = [[token_id[w[0]]] + [token_id[f"##{c}"] for c in w[1:]] for w in words]
    freqs = [word_freq[w] for w in words]
    token_count = [0] * len(vocab)
    pair_count: dict[tuple[int, int], int] = collections.defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = collections.defaultdict(set)  # pair -> words holding it
    token_pairs: dict[int, set[tuple[int, int]]] = collections.defaultdict(set)  # token -> pairs it is in
    for w, (split, f) in enumerate(zip(splits, freqs)):
        for t in split:
            token_count[t] += f
        for pair in zip(split, split[1:]):
            pair_count[pair] += f
            pair_words[pair].add(w)
            token_pairs[pair[0]].add(pair)
            token_pairs[pair[1]].add(pair)

    n_pieces = sum(token_count)

    def key(pair: tuple[int, int]) -> tuple:
        count = pair_count[pair]
        ratio = count / (token_count[pair[0]] * token_count[pair[1]])
        best = ratio if score == "ratio" else count * math.log(ratio * n_pieces)
        return (-best, -count, vocab[pair[0]], vocab[pair[1]])

    heap = [(key(p), p) for p in pair_count]
    heapq.heapify(heap)
    while len(vocab) < vocab_size:
        if len(heap) > 4 * len(pair_count) + 10_000:  # drop the stale entries now and then
            heap = [(key(p), p) for p, n in pair_count.items() if n > 0]
            heapq.heapify(heap)
        # Pop until an entry is current: every change of a pair's score pushed a fresh entry for it.
        while heap and (pair_count[heap[0][1]] == 0 or heap[0][0] != key(heap[0][1])):
            heapq.heappop(heap)
        if not heap:
            logger.info("train_wordpiece: no pair left to merge; the vocabulary has %d tokens, not %d",
                        len(vocab), vocab_size)
            break
        (a, b) = heapq.heappop(heap)[1]
        merged = vocab[a] + vocab[b][2:]
        if merged not in token_id:  # another pair may already have made the same string
            token_id[merged] = len(vocab)
            vocab.append(merged)
            token_count.append(0)
        c = token_id[merged]
        changed = set(token_pairs[a]) | set(token_pairs[b]) | set(token_pairs[c])
        for w in list(pair_words[(a, b)]):
            old, f = splits[w], freqs[w]
            new, i = [], 0
            while i < len(old):
                if i + 1 < len(old) and old[i] == a and old[i + 1] == b:
                    new.append(c)
                    i += 2
                else:
                    new.append(old[i])
                    i += 1
            old_pairs, new_pairs = list(zip(old, old[1:])), list(zip(new, new[1:]))
            for pair in old_pairs:
                pair_count[pair] -= f
            for pair in new_pairs:
                pair_count[pair] += f
                token_pairs[pair[0]].add(pair)
                token_pairs[pair[1]].add(pair)
            for pair in set(old_pairs) - set(new_pairs):
                pair_words[pair].discard(w)
            for pair in new_pairs:
                pair_words[pair].add(w)
            merges = len(old) - len(new)  # occurrences of (a, b) in this word
            token_count[a] -= merges * f
            token_count[b] -= merges * f
            token_count[c] += merges * f
            changed.update(old_pairs)
            changed.update(new_pairs)
            splits[w] = new
        for pair in changed:
            if pair_count[pair] > 0:
                heapq.heappush(heap, (key(pair), pair))
    return vocab
