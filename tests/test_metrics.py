"""SQuAD and NER metrics on hand-computed cases (the official evaluate-v1.1/v2.0 rules, seqeval's strict mode)."""
import json

import pytest

from minibert.assets import data_path
from minibert.metrics import get_entities, iob1_to_iob2, ner_scores, normalize_answer, squad_scores


def _squad(qas, version="1.1"):
    return {"version": version, "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]}


def _qa(qid, *golds, impossible=None):
    qa = {"id": qid, "question": "?", "answers": [{"text": g, "answer_start": 0} for g in golds]}
    if impossible is not None:
        qa["is_impossible"] = impossible
    return qa


def test_normalize_answer_official_order():
    assert normalize_answer("  The Quick, brown fox!  ") == "quick brown fox"
    assert normalize_answer("Anthem of the Seas") == "anthem of seas"  # articles only as whole words
    assert normalize_answer("theory") == "theory"
    assert normalize_answer("A.D. 1066") == "ad 1066"  # punctuation is deleted, not replaced by a space


def test_squad_several_golds_take_the_max():
    data = _squad([_qa("q1", "Denver Broncos", "the Broncos", "Broncos")])
    assert squad_scores(data, {"q1": "Broncos"}) == {"exact_match": 100.0, "f1": 100.0, "total": 1}
    # "denver" vs "denver broncos": P=1, R=1/2 -> F1=2/3; vs "broncos": 0. Max = 2/3.
    s = squad_scores(data, {"q1": "Denver"})
    assert s["exact_match"] == 0.0
    assert s["f1"] == pytest.approx(100 * 2 / 3)


def test_squad_f1_counts_repeated_tokens():
    # pred "paris paris france" vs gold "paris france": common = {paris:1, france:1} -> P=2/3, R=1, F1=0.8
    s = squad_scores(_squad([_qa("q", "Paris, France")]), {"q": "Paris Paris France"})
    assert s["f1"] == pytest.approx(80.0)


def test_squad_unicode_punctuation_is_not_removed():
    # string.punctuation is ASCII only: curly quotes and the en dash stay part of the token, as officially.
    s = squad_scores(_squad([_qa("q", "Denver Broncos"), _qa("r", "1990–1991")]),
                     {"q": "\u201cDenver Broncos\u201d", "r": "1990–1991"})
    assert s["exact_match"] == 50.0  # q: 0 (quotes kept), r: 1
    assert s["f1"] == 50.0  # q: tokens '“denver' and 'broncos”' match neither gold token


def test_squad_empty_and_missing_predictions_score_zero_over_all_questions():
    data = _squad([_qa("q1", "a cat"), _qa("q2", "dog"), _qa("q3", "blue bird"), _qa("q4", "x")])
    s = squad_scores(data, {"q1": "the cat", "q2": "", "q3": "bird"})  # q4 missing
    assert s["exact_match"] == 25.0  # only q1 (articles dropped)
    # q1 1, q2 0, q3 P=1 R=1/2 -> 2/3, q4 0
    assert s["f1"] == pytest.approx(100 * (1 + 2 / 3) / 4)


def test_squad_v2_has_ans_and_no_ans():
    data = _squad([_qa("h1", "Normandy"), _qa("h2", "10th century"),
                   _qa("n1", impossible=True), _qa("n2", impossible=True)], version="v2.0")
    s = squad_scores(data, {"h1": "Normandy", "h2": "", "n1": "", "n2": "France"})
    assert (s["exact_match"], s["f1"]) == (50.0, 50.0)
    assert (s["HasAns_exact"], s["HasAns_f1"], s["HasAns_total"]) == (50.0, 50.0, 2)
    assert (s["NoAns_exact"], s["NoAns_f1"], s["NoAns_total"]) == (50.0, 50.0, 2)


def test_squad_gold_answers_are_perfect_on_the_real_dev_set():
    with open(data_path("squad", "dev-v1.1.json"), encoding="utf-8") as f:
        dev = json.load(f)
    first = {qa["id"]: qa["answers"][0]["text"] for a in dev["data"] for p in a["paragraphs"] for qa in p["qas"]}
    s = squad_scores(dev, first)
    assert s["total"] == 10570 and s["exact_match"] == 100.0 and s["f1"] == 100.0
    assert squad_scores(dev, {})["f1"] == 0.0


def test_squad_rejects_the_data_list():
    with pytest.raises(ValueError, match="parsed SQuAD JSON"):
        squad_scores([], {})


def test_iob1_to_iob2_conll():
    # IOB1: entities start with I-; B- only between two adjacent entities of the same type.
    tags = ["I-ORG", "O", "I-MISC", "I-MISC", "O", "I-PER", "B-PER", "I-LOC", "I-PER"]
    assert iob1_to_iob2(tags) == ["B-ORG", "O", "B-MISC", "I-MISC", "O", "B-PER", "B-PER", "B-LOC", "B-PER"]


def test_entities_adjacent_same_type_and_strict_invalid_starts():
    assert get_entities(["B-PER", "I-PER", "B-PER", "O", "B-LOC"]) == [
        ("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]
    # strict IOB2: an I- that continues nothing is no entity; B-X I-Y ends X after one token
    assert get_entities(["O", "I-PER", "B-ORG", "I-LOC"]) == [("ORG", 2, 2)]


def test_ner_scores_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "O"]]
    # gold: PER(0,0-1) LOC(0,3) ORG(1,0) ORG(1,1); pred: PER(0,0-1) ORG(0,3) ORG(1,0-1); 1 true positive
    s = ner_scores(gold, pred)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 4)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert s["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert s["per_type"]["LOC"]["support"] == 1 and s["per_type"]["LOC"]["precision"] == 0.0


def test_ner_scores_iob1_input():
    gold = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]  # IOB1: PER(0-1), PER(2), LOC(4)
    pred = [["B-PER", "I-PER", "B-PER", "O", "O"]]
    s = ner_scores(gold, pred, scheme="IOB1")
    assert (s["precision"], s["recall"]) == (1.0, pytest.approx(2 / 3))
    # read as IOB2, the gold's leading I-PER starts nothing in strict mode: only PER(2) and nothing else
    assert ner_scores(gold, pred)["recall"] == 1.0


def test_ner_scores_entity_cut_by_truncation():
    # The model saw only 3 of 5 words; the cut words are predicted 'O'. The cut entity LOC(2-3) counts as
    # missed even though its first word was tagged right: a span must match start, end and type.
    gold = [["B-PER", "O", "B-LOC", "I-LOC", "O"]]
    pred = [["B-PER", "O", "B-LOC"] + ["O", "O"]]
    s = ner_scores(gold, pred)
    assert (s["precision"], s["recall"]) == (0.5, 0.5)


def test_ner_scores_errors_name_the_sentence():
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 1 predicted"):
        ner_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="sentence 0, token 1: tag 'PER'"):
        ner_scores([["O", "PER"]], [["O", "O"]])


def test_ner_scores_no_entities_is_zero_not_an_error():
    s = ner_scores([["O", "O"]], [["O", "O"]])
    assert (s["precision"], s["recall"], s["f1"], s["per_type"]) == (0.0, 0.0, 0.0, {})
