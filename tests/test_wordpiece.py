"""`train_wordpiece`: the likelihood-scored WordPiece training, checked by hand on a toy corpus and by loading its
vocabulary in minibert's `BertTokenizer` and in the pure-Python reference (`BertTokenizerLegacy`)."""
from __future__ import annotations

import pytest
from transformers.models.bert import tokenization_bert_legacy as legacy

from minibert.assets import data_path
from minibert.datasets import read_mrpc
from minibert.tokenization import BertTokenizer, train_wordpiece

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The Hugging Face course's toy corpus: hug x10, pug x5, pun x12, bun x4, hugs x5.
TOY = ["hug " * 10, "pug " * 5, "pun " * 12, "bun " * 4, "Hugs " * 5]
ALPHABET = ["b", "g", "h", "n", "p", "s", "u", "##b", "##g", "##h", "##n", "##p", "##s", "##u"]


def test_toy_corpus_by_hand():
    """The first merges, worked by hand with score = count(ab) / (count(a) count(b)).

    Start: h ##u ##g (10), p ##u ##g (5), p ##u ##n (12), b ##u ##n (4), h ##u ##g ##s (5).
    1. (##g, ##s): 5 / (20 * 5) = 1/20 beats every other pair (e.g. (##u, ##g): 20 / (36 * 20) = 1/36) -> ##gs.
    2. All six pairs now score 1/36 (e.g. (p, ##u): 17 / (17 * 36)); the most frequent, (p, ##u) with 17, wins -> pu.
    3. ##u is left with 19: (h, ##u) 15/(15*19), (b, ##u) 4/(4*19), (##u, ##gs) 5/(19*5) tie at 1/19; h ##u is
       the most frequent -> hu.
    4. ##u is left with 4, all in b ##u ##n: (b, ##u) scores 4 / (4 * 4) = 1/4 -> bu.
    """
    vocab = train_wordpiece(TOY, vocab_size=len(SPECIALS) + len(ALPHABET) + 4)
    assert vocab == SPECIALS + ALPHABET + ["##gs", "pu", "hu", "bu"]


def test_toy_corpus_by_hand_likelihood():
    """score="likelihood": gain = count(ab) * log(count(ab) * N / (count(a) count(b))), N = 113 pieces at the start.

    1. (##u, ##g): 20 * log(20*113 / (36*20)) = 22.9 beats (p, ##u) 17 * log(113/36) = 19.5 and (##u, ##n) 18.3.
    2. ##u is left with 16, all before ##n: (##u, ##n) 16 * log(113/16) = 31.3 beats (h, ##ug) 15 * log(113/20) = 26.0.
    3. (h, ##ug) 26.0 beats (p, ##un) 12 * log(12*113 / (17*16)) = 19.3 -> hug.
    """
    vocab = train_wordpiece(TOY, vocab_size=len(SPECIALS) + len(ALPHABET) + 3, score="likelihood")
    assert vocab == SPECIALS + ALPHABET + ["##ug", "##un", "hug"]


def test_toy_corpus_runs_out_of_pairs():
    """Asking for more tokens than merges exist stops when every word is one token (each word is in the vocab)."""
    vocab = train_wordpiece(TOY, vocab_size=1000)
    assert len(vocab) == len(set(vocab)) < 1000
    assert {"hug", "pug", "pun", "bun", "hugs"} <= set(vocab)


def test_same_string_from_two_pairs_is_one_token():
    """'abc' can come from (a, ##bc) in one word and (ab, ##c) in another: it must get one id, not two."""
    vocab = train_wordpiece(["abc xbc xbc xbc abd abd abd abd"], vocab_size=100)
    assert len(vocab) == len(set(vocab))
    assert "abc" in vocab


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="vocab_size=10 is smaller"):
        train_wordpiece(TOY, vocab_size=10)
    with pytest.raises(TypeError, match="iterable of texts"):
        train_wordpiece("hug pug", vocab_size=100)
    with pytest.raises(ValueError, match="score must be 'ratio'"):
        train_wordpiece(TOY, vocab_size=100, score="bpe")


@pytest.fixture(scope="module")
def learned_vocab_file(tmp_path_factory):
    """A 3,000-token vocabulary learned from the Gutenberg sentences the course pretrains on."""
    lines = data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt").read_text(encoding="utf-8").splitlines()
    vocab = train_wordpiece(lines, vocab_size=3000)
    path = tmp_path_factory.mktemp("learned") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab, lines, path


def test_learned_vocab_shape(learned_vocab_file):
    """Specials, then each character as 'x' and '##x', then merges, each the join of two earlier tokens."""
    vocab, _, _ = learned_vocab_file
    assert len(vocab) == 3000 and len(set(vocab)) == 3000
    assert vocab[:5] == SPECIALS
    n_chars = sum(1 for t in vocab if len(t) == 1)
    chars = vocab[5:5 + n_chars]
    assert vocab[5 + n_chars:5 + 2 * n_chars] == [f"##{c}" for c in chars]
    assert not any(t.isupper() for t in chars)  # lower-cased, as BasicTokenizer does by default
    earlier = set(vocab[:5 + 2 * n_chars])
    for token in vocab[5 + 2 * n_chars:]:
        body = token.removeprefix("##")
        head = token[:len(token) - len(body)]
        assert any(head + body[:k] in earlier and "##" + body[k:] in earlier for k in range(1, len(body))), token
        earlier.add(token)


def test_learned_vocab_covers_its_corpus(learned_vocab_file):
    """Every word of the training text tokenizes without [UNK]: all its characters are in the vocabulary."""
    _, lines, path = learned_vocab_file
    tok = BertTokenizer(path)
    for line in lines[:3000]:
        assert "[UNK]" not in tok.tokenize(line), line


def test_learned_vocab_loads_like_the_reference(learned_vocab_file):
    """The file loads in both tokenizers, which split every MRPC dev sentence identically; ids start at [PAD]=0."""
    _, _, path = learned_vocab_file
    ours, ref = BertTokenizer(path), legacy.BertTokenizerLegacy(str(path))
    assert ours.pad_token_id == 0 and ours.vocab_size == len(ref.vocab) == 3000
    texts = [t for ex in read_mrpc("dev") for t in (ex.text_a, ex.text_b)]
    for text in texts:
        tokens = ours.tokenize(text)
        assert tokens == ref.tokenize(text), text
        assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
