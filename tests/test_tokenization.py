"""WordPiece tokenizer: exact parity with the pure-Python reference, Google's and the 2019 README's cases, errors.

The reference is `transformers.models.bert.tokenization_bert_legacy.BertTokenizerLegacy` built from the same
vocab file with the same flags (its `strip_accents=None` follows `do_lower_case`, as the 2019 library did).
"""
from __future__ import annotations

import logging
import sys
import unicodedata

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibert import BasicTokenizer, BertTokenizer, WordpieceTokenizer
from minibert import tokenization as T
from minibert.assets import checkpoint_path, vocab_path
from minibert.course import checks, demos
from minibert.datasets import read_chnsenticorp, read_mrpc


def _legacy():
    """transformers' pure-Python tokenizer module; only the parity tests need it (they skip without it)."""
    return pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")


UNCASED = vocab_path("bert-base-uncased")
CHINESE = vocab_path("bert-base-chinese")
CONFIGS = [(UNCASED, True), (UNCASED, False), (CHINESE, True), (CHINESE, False)]
CONFIG_IDS = ["uncased-lower", "uncased-keepcase", "chinese-lower", "chinese-keepcase"]


@pytest.fixture(scope="module")
def pairs():
    """(ours, reference) for each vocab x do_lower_case, built once: both keep per-instance caches."""
    legacy = _legacy()
    return {(v, lc): (BertTokenizer(v, do_lower_case=lc), legacy.BertTokenizerLegacy(str(v), do_lower_case=lc))
            for v, lc in CONFIGS}


def _all_sentences() -> list[str]:
    texts = []
    for split in ("train", "dev", "test"):
        for ex in read_mrpc(split):
            texts += [ex.text_a, ex.text_b]
        texts += [ex.text_a for ex in read_chnsenticorp(split)]
    return list(dict.fromkeys(texts))  # MRPC repeats some sentences across pairs


# ---------------------------------------------------------------------------------------------------------
# Parity on real text: every sentence of MRPC and ChnSentiCorp, both vocabs, both casings


def test_corpus_sizes():
    assert [len(read_mrpc(s)) for s in ("train", "dev", "test")] == [3668, 408, 1725]
    assert [len(read_chnsenticorp(s)) for s in ("train", "dev", "test")] == [9600, 1200, 1200]


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_parity_every_corpus_sentence(pairs, config):
    ours, ref = pairs[config]
    texts = _all_sentences()
    assert len(texts) > 20_000
    mismatches = []
    for text in texts:
        tokens = ours.tokenize(text)
        ref_tokens = ref.tokenize(text)
        if tokens != ref_tokens or ours.convert_tokens_to_ids(tokens) != ref.convert_tokens_to_ids(ref_tokens):
            mismatches.append(text)
    assert not mismatches, f"{len(mismatches)} sentences differ, first: {mismatches[0]!r}"


# ---------------------------------------------------------------------------------------------------------
# Parity on generated text (hypothesis): the characters that break tokenizers


def _fragments() -> list[str]:
    """One flat list of the pieces generated strings are made of (one integer draw each keeps hypothesis fast)."""
    by_cat: dict[str, list[str]] = {}
    for cp in range(sys.maxunicode + 1):
        by_cat.setdefault(unicodedata.category(chr(cp)), []).append(chr(cp))
    punct = [c for cat in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po") for c in by_cat[cat]]  # all of them
    punct += [c for c in map(chr, range(128)) if T.is_punctuation(c) and c not in punct]  # $ ^ ` + < ...
    whitespace = by_cat["Zs"] + by_cat["Zl"] + by_cat["Zp"] + [c for c in map(chr, range(0x10000)) if c.isspace()]
    control = (by_cat["Cc"] + by_cat["Cf"] + ["\ud800", "\udfff", "\ue000", "\U000f0000", "\u0378", "\U0010ffff",
                                            "\ufffd"])
    combining = (by_cat["Mn"][:800] + by_cat["Mc"][:100] + by_cat["Me"]
                 + ["é", "É", "Å", "\u212b", "\u2126", "ñ", "ệ", "ḱ", "ǅ", "ß", "ẞ", "İ", "ı", "Σ", "ς", "ﬁ", "ﬀ",
                    "Ⅻ", "²", "½", "𝐀", "ŉ", "ǰ", "ΐ", "\u1100", "\u1161", "\u11a8", "한", "e\u0301", "a\u030a"])
    cjk_edges = [0x4E00, 0x9FFF, 0x3400, 0x4DBF, 0x20000, 0x2A6DF, 0x2A700, 0x2B73F, 0x2B740, 0x2B81F, 0x2B820,
                 0x2CEAF, 0xF900, 0xFAFF, 0x2F800, 0x2FA1F, 0x2CEB0, 0x30000, 0x31350, 0x2E80, 0x2F00, 0x3005]
    cjk = ([chr(c) for c in cjk_edges] + [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
           + [chr(c) for c in range(0xF900, 0xF900 + 60)] + [chr(c) for c in range(0x3040, 0x30FF)]
           + [chr(c) for c in range(0xFF01, 0xFF5F)] + list("中文的你好，。！？、：；“”‘’（）《》【】…—"))
    scripts = list("abcxyzABCXYZ0123456789αβγδΩπσΣАБВабвЖжЯяשלוםمرحباनमस्तेสวัสดีგამარჯობაԱբգ")
    any_char = [chr(cp) for cp in range(0, sys.maxunicode + 1, 401)]  # every script, unassigned, private use
    emoji = ["🤗", "👍", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️", "\U0001F4A9", "🏳️\u200d🌈", "#️⃣", "©", "™"]
    words = [t for i, t in enumerate(T.load_vocab(UNCASED)) if i % 53 == 0] + list(T.load_vocab(CHINESE))[::101]
    specials = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[cls]", "[SEP", "SEP]", "[", "]", "##", "#", ""]
    long_words = ["".join("abcdefghé"[(i * 7 + k) % 9] for i in range(n)) for k, n in enumerate(range(95, 131))]
    long_words += ["a" * 100, "a" * 101, "x" * 99 + "\u0301", "ab-" * 40]
    return (punct + whitespace + control + combining + cjk * 2 + scripts * 5 + any_char + emoji * 20
            + words * 2 + specials * 40 + long_words * 5)


FRAGMENTS = _fragments()
# A generated text: up to 14 fragments; shrinks towards short texts of early fragments.
TEXTS = st.lists(st.integers(0, len(FRAGMENTS) - 1), max_size=14).map(lambda ix: "".join(FRAGMENTS[i] for i in ix))


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(text=TEXTS)
def test_parity_generated_text(pairs, text):
    for config in CONFIGS:
        ours, ref = pairs[config]
        tokens = ours.tokenize(text)
        assert tokens == ref.tokenize(text), (config, text)
        assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens), (config, text)


@settings(max_examples=1_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(text=TEXTS)
def test_parity_other_flags(text):
    """strip_accents without lower-casing, no CJK splitting, no basic tokenization: the rarer switches."""
    for kwargs in (dict(do_lower_case=False, strip_accents=True), dict(tokenize_chinese_chars=False),
                   dict(do_lower_case=True, strip_accents=False), dict(do_basic_tokenize=False)):
        ours, ref = _flag_pair(**kwargs)
        assert ours.tokenize(text) == ref.tokenize(text), (kwargs, text)


_FLAG_CACHE: dict = {}


def _flag_pair(**kwargs):
    key = tuple(sorted(kwargs.items()))
    if key not in _FLAG_CACHE:
        _FLAG_CACHE[key] = (BertTokenizer(UNCASED, **kwargs), _legacy().BertTokenizerLegacy(str(UNCASED), **kwargs))
    return _FLAG_CACHE[key]


def test_basic_tokenizer_matches_reference_basic_tokenizer():
    texts = ["hello[SEP]world", " [CLS] a\u00a0b ", "ÀÉÎõü", "\u0301\u0301", "x\u2028y\u0085z"] + FRAGMENTS[::50]
    for lc in (True, False):
        ours = BasicTokenizer(do_lower_case=lc, never_split=())
        ref = _legacy().BasicTokenizer(do_lower_case=lc)
        for text in texts:
            assert ours.tokenize(text) == ref.tokenize(text), text


def _google_words(text: str) -> list[str]:
    """Google's whole-text steps as the small functions spell them: clean, space CJK, (NFC,) split."""
    return unicodedata.normalize("NFC", T.tokenize_chinese_chars(T.clean_text(text))).split()


def _google_pieces(word: str, do_lower_case: bool) -> list[str]:
    """Google's per-word steps: lower-case and strip accents, then split off punctuation."""
    if do_lower_case:
        word = T.run_strip_accents(word.lower())
    return [p for piece in T.run_split_on_punc(word) for p in piece.split()]


def test_fast_basic_tokenizer_equals_googles_small_functions_on_every_corpus_sentence():
    """BasicTokenizer runs a translate table and per-word caches; the small functions are the definition."""
    for lc in (True, False):
        ours = BasicTokenizer(do_lower_case=lc)
        for text in _all_sentences()[::7] + FRAGMENTS[::20]:
            words = ours.words(text)
            assert words == _google_words(text), text
            for word in words:
                assert ours.split_word(word) == _google_pieces(word, lc), (lc, word)


@settings(max_examples=3_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(text=TEXTS)
def test_fast_basic_tokenizer_equals_googles_small_functions_on_generated_text(text):
    for lc in (True, False):
        ours = _BASIC[lc]
        words = ours.words(text)
        assert words == _google_words(text), text
        assert [p for w in words for p in ours.split_word(w)] == [p for w in words for p in _google_pieces(w, lc)]


_BASIC = {lc: BasicTokenizer(do_lower_case=lc) for lc in (True, False)}


def test_special_token_ids_come_from_the_tokenizer(tmp_path):
    tok = BertTokenizer(UNCASED)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == \
        (0, 100, 101, 102, 103)
    # a vocab in another order (as train_wordpiece writes one) moves every id
    own = BertTokenizer(_write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello"]))
    assert (own.pad_token_id, own.unk_token_id, own.cls_token_id, own.sep_token_id, own.mask_token_id) == \
        (0, 1, 2, 3, 4)
    enc = own.encode("hello", "hello", max_length=8, padding=True)
    assert enc == {"input_ids": [2, 5, 3, 5, 3, 0, 0, 0], "token_type_ids": [0, 0, 0, 1, 1, 0, 0, 0],
                   "attention_mask": [1, 1, 1, 1, 1, 0, 0, 0]}
    no_mask = BertTokenizer(_write_vocab(tmp_path, ["[UNK]", "[CLS]", "[SEP]"], "small.txt"))
    with pytest.raises(ValueError, match=r"the vocab has no mask token '\[MASK\]'"):
        no_mask.mask_token_id


# ---------------------------------------------------------------------------------------------------------
# Google's tokenization_test.py and the 2019 README


def _write_vocab(tmp_path, tokens, name="vocab.txt"):
    path = tmp_path / name
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


GOOGLE_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","]


def test_google_full_tokenizer(tmp_path):
    tok = BertTokenizer(_write_vocab(tmp_path, GOOGLE_VOCAB))
    tokens = tok.tokenize("UNwant\u00E9d,running")
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tok.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]


def test_google_basic_tokenizer():
    assert BasicTokenizer().tokenize("ah\u535A\u63A8zz") == ["ah", "\u535A", "\u63A8", "zz"]
    assert BasicTokenizer(do_lower_case=True).tokenize(" \tHeLLo!how  \n Are yoU?  ") == [
        "hello", "!", "how", "are", "you", "?"]
    assert BasicTokenizer(do_lower_case=True).tokenize("H\u00E9llo") == ["hello"]
    assert BasicTokenizer(do_lower_case=False).tokenize(" \tHeLLo!how  \n Are yoU?  ") == [
        "HeLLo", "!", "how", "Are", "yoU", "?"]


def test_google_wordpiece_tokenizer():
    vocab = {t: i for i, t in enumerate(GOOGLE_VOCAB[:-1])}
    tok = WordpieceTokenizer(vocab=vocab)
    assert tok.tokenize("") == []
    assert tok.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert tok.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
    assert WordpieceTokenizer(vocab=vocab, max_input_chars_per_word=5).tokenize("unwanted runn") == ["[UNK]", "runn"]


def test_google_character_classes():
    assert all(T.is_whitespace(c) for c in " \t\r\n\u00A0")
    assert not any(T.is_whitespace(c) for c in "A-")
    assert T.is_control("\u0005") and not any(T.is_control(c) for c in "A \t\r\U0001F4A9")
    assert all(T.is_punctuation(c) for c in "-$`.") and not any(T.is_punctuation(c) for c in "A ")


def test_readme_2019_jim_henson():
    tok = BertTokenizer.from_pretrained("bert-base-uncased")
    tokens = tok.tokenize("[CLS] Who was Jim Henson ? [SEP] Jim Henson was a puppeteer [SEP]")
    assert tokens == ["[CLS]", "who", "was", "jim", "henson", "?", "[SEP]", "jim", "henson", "was", "a",
                      "puppet", "##eer", "[SEP]"]
    assert tok.convert_tokens_to_ids(tokens) == [101, 2040, 2001, 3958, 27227, 1029, 102, 3958, 27227, 2001,
                                                 1037, 13997, 11510, 102]


def test_encode_pair_matches_reference_json(jim_henson_reference):
    ref = jim_henson_reference  # transformers' pure-Python tokenizer, in conftest.py
    tok = BertTokenizer.from_pretrained()  # the packaged MiniLM checkpoint
    enc = tok.encode("Who was Jim Henson ?", "Jim Henson was a puppeteer")
    assert enc == {k: ref[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ref["tokens"]
    assert tok.decode(enc["input_ids"]) == "[CLS] who was jim henson ? [SEP] jim henson was a puppeteer [SEP]"
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "who was jim henson ? jim henson was a puppeteer"


# ---------------------------------------------------------------------------------------------------------
# Vocab files


def test_chinese_vocab_keeps_line_separator_tokens():
    tok = BertTokenizer(CHINESE, do_lower_case=True)
    assert len(tok.vocab) == 21128
    assert tok.ids_to_tokens[343] == "\u2028" and tok.ids_to_tokens[13502] == "##\u2028"
    assert [tok.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]


@pytest.mark.parametrize("vocab", [UNCASED, CHINESE], ids=["uncased", "chinese"])
def test_save_vocabulary_round_trip_is_byte_identical(tmp_path, vocab):
    tok = BertTokenizer(vocab)
    saved = tok.save_vocabulary(tmp_path)
    assert saved == str(tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_bytes() == vocab.read_bytes()
    assert tok.save_vocabulary(tmp_path / "other.txt") == str(tmp_path / "other.txt")
    assert BertTokenizer(saved).vocab == tok.vocab


# ---------------------------------------------------------------------------------------------------------
# from_pretrained


def test_from_pretrained_names_paths_and_casing(tmp_path):
    cased = BertTokenizer.from_pretrained("bert-base-cased")
    assert not cased.do_lower_case and len(cased.vocab) == 28996 and cased.max_len == 512
    assert cased.tokenize("Jim Henson") == ["Jim", "He", "##nson"]
    assert BertTokenizer.from_pretrained("bert-base-uncased").do_lower_case
    chinese = BertTokenizer.from_pretrained("bert-base-chinese")
    assert chinese.tokenize("我爱Jim") == ["我", "爱", "jim"] and len(chinese.vocab) == 21128
    offline = BertTokenizer.from_pretrained(None)
    assert offline.do_lower_case and offline.vocab == BertTokenizer.from_pretrained("all-MiniLM-L6-v2").vocab
    folder = checkpoint_path(None)
    assert BertTokenizer.from_pretrained(folder).vocab == offline.vocab
    assert BertTokenizer.from_pretrained(str(folder / "vocab.txt")).vocab == offline.vocab
    assert not BertTokenizer.from_pretrained("bert-base-cased", do_lower_case=True).do_lower_case  # as 0.6.2 did


def test_from_pretrained_folder_without_vocab(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Encoding for the model


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer(UNCASED)


def test_encode_pair_matches_reference_on_mrpc(pairs):
    ours, ref = pairs[(UNCASED, True)]
    for ex in read_mrpc("dev")[:200]:
        enc = ours.encode(ex.text_a, ex.text_b)
        r = ref(ex.text_a, ex.text_b, return_token_type_ids=True, return_attention_mask=True)
        assert enc == {k: r[k] for k in enc}, ex.guid


def test_truncation_is_longest_first_like_google(tok):
    a, b = "a b c d e f g", "x y z"
    enc = tok.encode(a, b, max_length=9)  # 10 word tokens -> 6: a loses 4 first, then a tie drops from b
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "a", "b", "c", "[SEP]", "x", "y", "z", "[SEP]"]
    enc = tok.encode(a, b, max_length=8)  # 5 left: (3,3) is a tie, so b pops -> (3,2)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "a", "b", "c", "[SEP]", "x", "y", "[SEP]"]
    assert enc["token_type_ids"] == [0] * 5 + [1] * 3
    tokens_a, tokens_b = list("abcdefg"), list("xyz")
    T.truncate_seq_pair(tokens_a, tokens_b, 4)
    assert (tokens_a, tokens_b) == (list("ab"), list("xy"))
    assert tok.encode(a, max_length=4)["input_ids"] == [101, 1037, 1038, 102]
    assert tok.encode(a, b, max_length=3)["input_ids"] == [101, 102, 102]


def test_encode_padding(tok):
    enc = tok.encode("hello world", max_length=6, padding=True)
    assert enc == {"input_ids": [101, 7592, 2088, 102, 0, 0], "token_type_ids": [0] * 6,
                   "attention_mask": [1, 1, 1, 1, 0, 0]}


def test_batch_encode_tensors_and_padding(tok):
    batch = tok.batch_encode(["hello world", "a much longer sentence here"], ["yes", "no"])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    assert all(v.dtype == torch.long and v.shape == (2, 9) for v in batch.values())  # 5 + 1 + 3 specials
    assert batch["attention_mask"].sum(1).tolist() == [6, 9]
    assert batch["input_ids"][0, 6:].tolist() == [0] * 3
    assert batch["token_type_ids"][0].tolist() == [0] * 4 + [1] * 2 + [0] * 3
    padded = tok.batch_encode(["hello"], max_length=16, padding="max_length", return_tensors=False)
    assert padded["input_ids"] == [[101, 7592, 102] + [0] * 13]
    short = tok.batch_encode(["one two three four five"], max_length=4)
    assert short["input_ids"].tolist() == [[101, 2028, 2048, 102]]
    call = tok(["hello world", "a much longer sentence here"], ["yes", "no"])
    assert all(torch.equal(call[k], batch[k]) for k in batch)
    assert tok("hello world") == tok.encode("hello world")
    assert tok.batch_encode([], return_tensors=True)["input_ids"].shape == (0, 0)


def test_decode_merges_pieces(tok):
    ids = tok.encode("Tokenization of puppeteers")["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[1:-1] == ["token", "##ization", "of", "puppet", "##eers"]
    assert tok.decode(ids, skip_special_tokens=True) == "tokenization of puppeteers"
    assert tok.decode(torch.tensor(ids)) == "[CLS] tokenization of puppeteers [SEP]"


def test_max_len_warning(caplog):
    tok = BertTokenizer(UNCASED, max_len=5)
    with caplog.at_level(logging.WARNING, logger="minibert.tokenization"):
        tok.convert_tokens_to_ids(["a"] * 5)
        assert not caplog.records
        tok.convert_tokens_to_ids(["a"] * 6)
    assert "longer than the specified maximum sequence length for this BERT model (6 > 5)" in caplog.text


def test_never_split_tokens_inside_text(tok):
    assert tok.tokenize("hello[MASK]world [cls]") == ["hello", "[MASK]", "world", "[", "cl", "##s", "]"]
    assert BertTokenizer(UNCASED, never_split=()).tokenize("[MASK]") == ["[", "mask", "]"]
    # Other never_split entries are kept only as whole words, as in 0.6.2 (and unchanged: not lower-cased).
    custom = BertTokenizer(UNCASED, never_split=("[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]", "Hello!"))
    assert custom.tokenize("othello Hello! Hello!x") == ["ot", "##hell", "##o", "Hello!", "hello", "!", "x"]


# ---------------------------------------------------------------------------------------------------------
# Bad input: clear errors


def test_tokenize_is_the_public_steps_and_the_cache_computes_each_word_once():
    tok = BertTokenizer(UNCASED)
    text = "Héllo, WORLD[SEP]héllo world!!"
    parts = tok.split_specials(text)
    assert parts == ["Héllo, WORLD", "[SEP]", "héllo world!!"]
    steps = []
    for part in parts:  # what tokenize does, spelled out with the public steps
        words = [] if part in tok.special_tokens else tok.basic_tokenizer.words(part)
        steps += [part] if part in tok.special_tokens else [p for w in words for p in tok.word_pieces(w)]
    assert tok.tokenize(text) == steps == ["hello", ",", "world", "[SEP]", "hello", "world", "!", "!"]
    assert tok.basic_tokenizer.split_word("Héllo,") == ["hello", ","]
    assert set(tok.cache.known) == {"Héllo,", "WORLD", "héllo", "world!!"}  # whole words, before split_word
    calls = []
    small = T.WordCache(lambda w: calls.append(w) or [w.upper()], limit=2)
    assert small.pieces(["a", "b", "a"]) == ["A", "B", "A"] and calls == ["a", "b"] and len(small) == 2
    assert small.pieces(["c", "a"]) == ["C", "A"] and calls == ["a", "b", "c", "a"]  # full: started again empty


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab file not found: .*nope.txt"):
        BertTokenizer(tmp_path / "nope.txt")


def test_empty_vocab_file(tmp_path):
    with pytest.raises(ValueError, match="is empty; expected one WordPiece token per line"):
        BertTokenizer(_write_vocab(tmp_path, []))


def test_vocab_without_special_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[UNK\]', '\[CLS\]', '\[SEP\]'\]"):
        BertTokenizer(_write_vocab(tmp_path, ["hello", "world"]))
    no_pad = BertTokenizer(_write_vocab(tmp_path, GOOGLE_VOCAB, "google.txt"))
    with pytest.raises(ValueError, match="the vocab has no pad token '\\[PAD\\]'"):
        no_pad.batch_encode(["want", "want want"])


@pytest.mark.parametrize("bad", [None, 3, ["a list"], b"bytes"])
def test_non_string_input(tok, bad):
    with pytest.raises(TypeError, match="BertTokenizer.tokenize expects a str, got"):
        tok.tokenize(bad)
    with pytest.raises(TypeError, match="expects a str"):
        tok.basic_tokenizer.tokenize(bad)


def test_bytes_hint(tok):
    with pytest.raises(TypeError, match=r"decode bytes first"):
        tok.encode(b"hello")


@pytest.mark.parametrize("bad_id", [30522, -1, 10**9, 2.0, "5"])
def test_id_out_of_range(tok, bad_id):
    with pytest.raises(ValueError, match=r"is not in the vocabulary \(valid ids are ints 0\.\.30521\)"):
        tok.convert_ids_to_tokens([101, bad_id])


def test_pair_too_long_to_truncate(tok):
    with pytest.raises(ValueError, match=r"max_length=2 cannot hold the special tokens: a pair needs 3"):
        tok.encode("a", "b", max_length=2)
    with pytest.raises(ValueError, match=r"max_length=1 cannot hold the special tokens: a sentence needs 2"):
        tok.batch_encode(["a"], max_length=1)


def test_batch_encode_argument_errors(tok):
    with pytest.raises(TypeError, match="expects a list of str"):
        tok.batch_encode("one sentence")
    with pytest.raises(ValueError, match="padding must be 'longest' or 'max_length'"):
        tok.batch_encode(["a"], padding="max")
    with pytest.raises(ValueError, match="texts_a has 2 texts but texts_b has 1"):
        tok.batch_encode(["a", "b"], ["c"])


# ---------------------------------------------------------------------------------------------------------
# Notebook helpers


def test_check_wordpiece_accepts_a_correct_function_and_names_the_first_difference():
    vocab = T.load_vocab(UNCASED)
    assert checks.check_wordpiece(lambda w, v: WordpieceTokenizer(v).tokenize_word(w), vocab) >= 20

    from test_exercises import _wordpiece_shortest_first as shortest_first  # a classic bug: shortest match first

    expected = r"differs on input 'unaffable': got \['u', '##n', '##a'.*expected \['una', '##ffa', '##ble'\]"
    with pytest.raises(AssertionError, match=expected):
        checks.check_wordpiece(shortest_first, vocab)


def test_check_basic_tokenizer():
    assert checks.check_basic_tokenizer(BasicTokenizer().tokenize) >= 10
    with pytest.raises(AssertionError, match=r"differs on input ' \\tHeLLo!how"):
        checks.check_basic_tokenizer(str.split)


def test_wordpiece_stats(tok):
    stats = demos.wordpiece_stats(tok, ["Jim Henson was a puppeteer", "xqzxqzxqz"])
    assert stats["words"] == 6 and stats["pieces"] == sum(k * v for k, v in stats["pieces_per_word"].items())
    assert stats["most_split"]["puppet ##eer"] == 1
