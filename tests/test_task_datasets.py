"""Readers for SQuAD, SWAG, CoNLL-2003 and Resume NER, and the encoders that feed their heads."""
import json

import numpy as np
import pytest

from minibert.assets import data_dir, data_path
from minibert.data import collate
from minibert.datasets import (CONLL2003_LABELS, RESUME_NER_LABELS, SwagExample, TaggedSentence, decode_tagged,
                               encode_multiple_choice, encode_tagged, read_conll2003, read_resume_ner, read_squad,
                               read_swag)
from minibert.metrics import get_entities
from minibert.tokenization import BertTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer.from_pretrained(None)


def test_squad_counts_and_v2():
    v1 = read_squad()
    assert len(v1) == 10570 and v1[0].title == "Super_Bowl_50"
    assert len({e.qas_id for e in v1}) == 10570
    v2 = read_squad(split="dev-v2.0-first5articles")
    assert len(v2) == 1407 and sum(e.is_impossible for e in v2) == 702
    assert all(e.answers == () for e in v2 if e.is_impossible)


def test_squad_bad_span_names_the_question(tmp_path):
    bad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q7", "question": "?", "answers": [{"text": "Paris", "answer_start": 3}]}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json, question 'q7': answer 'Paris' at character 3"):
        read_squad(path)


def test_swag_sample_json_rows():
    rows = read_swag(data_path("swag", "sample.json"))
    assert len(rows) == 10 and all(len(r.endings) == 4 for r in rows)
    assert rows[0].start_ending == "A drum line" and rows[0].label == 0


def test_swag_original_csv_columns(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text(",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"
                    "0,lsmdc1,5,She opens it. He,She opens it.,He,gold,smiles.,flies.,sinks.,melts.,0\n"
                    "1,lsmdc1,6,x,x,y,gold,,,,,1\n")
    with pytest.raises(ValueError, match=r"val.csv, line 3: example 'val-6' has no choices"):
        read_swag(path)
    path.write_text(path.read_text().splitlines()[0] + "\n0,lsmdc1,5,s,She opens it.,He,gold,a,b,c,d,4\n")
    with pytest.raises(ValueError, match="label 4 but only 4 choices"):
        read_swag(path)


def test_conll_iob1_to_iob2_and_counts():
    train = read_conll2003("train")
    assert len(train) == 14041
    assert train[0].words[:3] == ("EU", "rejects", "German") and train[0].tags[:3] == ("B-ORG", "O", "B-MISC")
    assert sum(len(get_entities(s.tags)) for s in train) == 23499  # the paper's (and MANIFEST's) entity count
    assert sum(t.startswith("B-") for s in read_conll2003("valid") for t in s.tags) == 5942
    assert {t for s in train for t in s.tags} == set(CONLL2003_LABELS)


def test_conll_unknown_tag_names_the_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP I-FOO\n")
    with pytest.raises(ValueError, match=r"x.txt, line 4: tag 'I-FOO' is not in the tag set"):
        read_conll2003(path=path)


def test_resume_ner():
    train = read_resume_ner("train")
    assert len(train) == 3821 and train[0].words[:2] == ("高", "勇") and train[0].tags[:2] == ("B-NAME", "I-NAME")
    assert sum(len(get_entities(s.tags)) for s in train) == 13438  # the 2 sentences that start
    # inside an ORG (MANIFEST gotcha 14) begin with I-ORG, which starts no entity in strict mode
    assert {t for s in train for t in s.tags} <= set(RESUME_NER_LABELS)


def test_resume_ner_bmes_to_iob2_matches_an_independent_conversion():
    """Our BMES -> IOB2 against a .char.bio copy converted elsewhere; the public download has only the BMES
    files, so this cross-check runs where such a copy sits beside them."""
    bio_path = data_dir() / "resume_ner" / "train.char.bio"
    if not bio_path.is_file():
        pytest.skip(f"no independently converted copy at {bio_path}")
    bio = read_resume_ner(path=bio_path)
    assert [s.tags for s in bio] == [s.tags for s in read_resume_ner("train")]


def test_encode_tagged_labels_first_piece_only(tokenizer):
    s = TaggedSentence(("Johanson", "visited", "Paris"), ("B-PER", "O", "B-LOC"))
    [f] = encode_tagged([s], tokenizer, CONLL2003_LABELS)
    pieces = tokenizer.tokenize("Johanson")
    assert len(pieces) > 1
    assert f["labels"] == [-100, 1] + [-100] * (len(pieces) - 1) + [0, 5, -100]
    [cut] = encode_tagged([s], tokenizer, CONLL2003_LABELS, max_seq_length=len(pieces) + 3)
    assert [y for y in cut["labels"] if y != -100] == [1, 0]  # "Paris" cut by truncation
    batch = collate([f, cut], tokenizer.pad_token_id)
    assert batch["labels"].shape == batch["input_ids"].shape and batch["labels"][1, -1] == -100
    with pytest.raises(ValueError, match="tag 'B-XX' is not one of"):
        encode_tagged([TaggedSentence(("a",), ("B-XX",), "f.txt, line 9")], tokenizer, CONLL2003_LABELS)



def test_decode_tagged_inverts_encode_tagged(tokenizer):
    """One-hot logits built from encode_tagged's labels decode to the words' tags; a word cut by truncation
    gets 'O', and the scores on non-first pieces are never read."""
    s = TaggedSentence(("Johanson", "visited", "Paris"), ("B-PER", "O", "B-LOC"))
    n = len(tokenizer.tokenize("Johanson"))
    for max_len, expected in ((32, ["B-PER", "O", "B-LOC"]), (n + 3, ["B-PER", "O", "O"])):
        [f] = encode_tagged([s], tokenizer, CONLL2003_LABELS, max_seq_length=max_len)
        logits = np.zeros((len(f["labels"]), len(CONLL2003_LABELS)))
        logits[:, CONLL2003_LABELS.index("I-MISC")] = 1.0  # what a non-first piece scores must not matter
        for i, y in enumerate(f["labels"]):
            if y != -100:
                logits[i, y] = 2.0
        assert decode_tagged([logits], [np.array(f["labels"])], [s], CONLL2003_LABELS) == [expected]

def test_encode_multiple_choice_shapes(tokenizer):
    ex = read_swag(data_path("swag", "sample.json"))[:3]
    feats = encode_multiple_choice(ex, tokenizer, max_seq_length=32)
    batch = collate(feats, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[:2] == (3, 4) and batch["input_ids"].shape[2] <= 32
    assert batch["labels"].tolist() == [e.label for e in ex]
    first = tokenizer.decode(feats[0]["input_ids"][0])
    assert first.startswith("[CLS] members of the procession") and "[SEP] a drum line passes by" in first
    with pytest.raises(ValueError, match="example 'x' has no choices"):
        encode_multiple_choice([SwagExample("x", "a", "b", ())], tokenizer)


def test_next_sentence_choices_puts_the_true_next_sentence_at_label():
    from minibert.datasets import next_sentence_choices

    docs = [[f"sentence number {i} of chapter {c} goes here" for i in range(12)] for c in range(3)]
    examples = next_sentence_choices(docs, 20, seed=1, name="toy")
    assert len(examples) == 20 and examples == next_sentence_choices(docs, 20, seed=1, name="toy")
    for ex in examples:
        i, c = int(ex.context_sentence.split()[2]), ex.context_sentence.split()[5]
        assert ex.endings[ex.label] == f"sentence number {i + 1} of chapter {c} goes here"
        assert len(set(ex.endings)) == 4 and ex.context_sentence not in ex.endings
    assert {ex.label for ex in examples} == {0, 1, 2, 3}  # the true ending is not always in one place
    with pytest.raises(ValueError, match="toy: too few sentences"):
        next_sentence_choices([["one two three four five"]], 1, name="toy")
