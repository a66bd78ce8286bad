"""SQuAD and NER metrics on hand-computed cases and against faithful copies of the official scripts
(evaluate-v1.1.py on the whole SQuAD dev set; conlleval's chunk counting on random tag sequences)."""
import json
import re
import string
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibert.assets import data_path
from minibert.metrics import (conlleval_entities, get_entities, iob1_to_iob2, ner_scores, normalize_answer,
                              squad_scores)


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


# The official evaluate-v1.1.py (SQuAD's website, as run_squad users ran it), copied function by function.
def _official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction, ground_truth):
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _official_exact_match_score(prediction, ground_truth):
    return (_official_normalize_answer(prediction) == _official_normalize_answer(ground_truth))


def _official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def _official_evaluate_v11(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    continue
                ground_truths = list(map(lambda x: x['text'], qa['answers']))
                prediction = predictions[qa['id']]
                exact_match += _official_metric_max_over_ground_truths(_official_exact_match_score, prediction,
                                                                       ground_truths)
                f1 += _official_metric_max_over_ground_truths(_official_f1_score, prediction, ground_truths)
    return {'exact_match': 100.0 * exact_match / total, 'f1': 100.0 * f1 / total}


def _crafted_predictions(dev):
    """One answer per dev question, of a kind that rotates with the question: a gold (the last one), the empty
    string, ".", the gold with words around it, cut short, or shouted with punctuation, and spans of the context
    that are not answers; every 97th question gets none."""
    rng = np.random.default_rng(0)
    preds, n = {}, 0
    for a in dev["data"]:
        for p in a["paragraphs"]:
            words = p["context"].split()
            for qa in p["qas"]:
                golds = [x["text"] for x in qa["answers"]]
                i = int(rng.integers(len(words)))
                kinds = [golds[-1], "", ".", "the " + golds[0] + " of it", golds[0].split()[0],
                         golds[0].upper() + "!!", " ".join(words[i:i + int(rng.integers(1, 12))]),
                         p["context"][:len(golds[0]) + 5]]
                if n % 97:
                    preds[qa["id"]] = kinds[n % len(kinds)]
                n += 1
    return preds


def test_squad_v1_matches_the_official_script_on_all_dev_questions():
    with open(data_path("squad", "dev-v1.1.json"), encoding="utf-8") as f:
        dev = json.load(f)
    preds = _crafted_predictions(dev)
    ours, official = squad_scores(dev, preds), _official_evaluate_v11(dev["data"], preds)
    assert ours["total"] == 10570
    assert (ours["exact_match"], ours["f1"]) == pytest.approx((official["exact_match"], official["f1"]), abs=1e-9)
    assert 20 < ours["exact_match"] < 40 and 30 < ours["f1"] < 60  # the mix really has hits, misses and partials
    # and question by question (an aggregate could hide errors that cancel)
    for a in dev["data"]:
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                one = {"version": "1.1", "data": [{"title": a["title"], "paragraphs": [{"context": p["context"],
                                                                                        "qas": [qa]}]}]}
                ours, official = squad_scores(one, preds), _official_evaluate_v11(one["data"], preds)
                assert (ours["exact_match"], ours["f1"]) == pytest.approx(
                    (official["exact_match"], official["f1"]), abs=1e-9), qa["id"]


def test_squad_v1_gold_that_normalizes_to_empty():
    # Three dev-v1.1 questions have "." among their golds. v1.1 keeps it: an empty prediction is an exact match
    # (EM 1) with F1 0; v2.0's rule would drop that gold and score the empty answer 0 / 0.
    ids = {"5725bad5271a42140099d0c1", "5730b7ce069b5314008322c4", "57340d124776f419006617bf"}
    with open(data_path("squad", "dev-v1.1.json"), encoding="utf-8") as f:
        dev = json.load(f)
    found = {qa["id"] for a in dev["data"] for p in a["paragraphs"] for qa in p["qas"]
             if any(not normalize_answer(x["text"]) for x in qa["answers"])}
    assert found == ids
    s = squad_scores(dev, {q: "" for q in ids})
    assert s["exact_match"] == pytest.approx(100 * 3 / 10570) and s["f1"] == 0.0
    data = _squad([_qa("q", "interventionism", ".")])
    assert squad_scores(data, {"q": ""}) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    assert squad_scores(data, {"q": "interventionism"})["f1"] == 100.0
    # the same question in a v2.0 file: the "." gold is dropped, "" is no answer and scores 0
    v2 = squad_scores(_squad([_qa("q", "interventionism", ".", impossible=False)], version="v2.0"), {"q": ""})
    assert (v2["exact_match"], v2["f1"]) == (0.0, 0.0)


def test_squad_v1_question_without_gold_is_an_error():
    with pytest.raises(ValueError, match="'q' of a v1.1 file has no gold answer"):
        squad_scores(_squad([_qa("q")]), {"q": ""})


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


def test_conlleval_chunks_differ_from_strict_only_on_invalid_iob2():
    tags = ["O", "I-PER", "I-PER", "B-ORG", "I-LOC", "O", "I-MISC", "B-MISC", "I-MISC"]
    assert conlleval_entities(tags) == [("PER", 1, 2), ("ORG", 3, 3), ("LOC", 4, 4), ("MISC", 6, 6),
                                        ("MISC", 7, 8)]
    assert get_entities(tags) == [("ORG", 3, 3), ("MISC", 7, 8)]
    # IOB1 and its IOB2 conversion chunk alike; on valid IOB2 the two modes agree
    iob1 = ["I-ORG", "O", "I-MISC", "I-MISC", "O", "I-PER", "B-PER", "I-LOC", "I-PER"]
    assert conlleval_entities(iob1) == conlleval_entities(iob1_to_iob2(iob1)) == get_entities(iob1, "IOB1")


def test_ner_scores_conlleval_mode_hand_computed():
    # seqeval's README example (its default mode is conlleval's): gold MISC(3-5), PER(0-1); predicted MISC(2-5),
    # PER(0-1): P = R = 1/2. Strict mode agrees here (every sequence is valid IOB2).
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    for mode in ("strict", "conlleval"):
        s = ner_scores(gold, pred, mode=mode)
        assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    # a prediction that starts an entity with I-: conlleval counts it (and right), strict does not
    gold, pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert ner_scores(gold, pred, mode="conlleval")["f1"] == 1.0
    assert ner_scores(gold, pred)["f1"] == 0.0
    with pytest.raises(ValueError, match="mode must be 'strict' or 'conlleval'"):
        ner_scores(gold, pred, mode="lenient")


def _conlleval_counts(gold_sentences, guessed_sentences):
    """conlleval.pl's counting loop (correctChunk, foundGuessed, foundCorrect), ported line by line for
    B/I/O tags; sentences are separated by a boundary line, whose tags count as O."""
    def split(tag):
        m = re.match(r"^([^-]*)-(.*)$", tag)
        return (m.group(1), m.group(2)) if m else (tag, "")

    def end_of_chunk(prev_tag, tag, prev_type, type_):
        end = (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O")}
        if prev_tag != "O" and prev_tag != "." and prev_type != type_:
            end = True
        return end

    def start_of_chunk(prev_tag, tag, prev_type, type_):
        start = (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I")}
        if tag != "O" and tag != "." and prev_type != type_:
            start = True
        return start

    lines = []
    for g, p in zip(gold_sentences, guessed_sentences):
        lines += list(zip(g, p)) + [("O", "O")]  # the boundary
    correct_chunk = found_correct = found_guessed = 0
    in_correct = False
    last_correct, last_correct_type, last_guessed, last_guessed_type = "O", "", "O", ""
    for correct_tag, guessed_tag in lines:
        correct, correct_type = split(correct_tag)
        guessed, guessed_type = split(guessed_tag)
        if in_correct:
            ce = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            ge = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if ce and ge and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
            elif ce != ge or guessed_type != correct_type:
                in_correct = False
        cs = start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        gs = start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if cs and gs and guessed_type == correct_type:
            in_correct = True
        found_correct += cs
        found_guessed += gs
        last_correct, last_correct_type, last_guessed, last_guessed_type = correct, correct_type, guessed, \
            guessed_type
    if in_correct:
        correct_chunk += 1
    return correct_chunk, found_guessed, found_correct


_TAG = st.sampled_from(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 8).flatmap(lambda n: st.tuples(st.lists(_TAG, min_size=n, max_size=n),
                                                               st.lists(_TAG, min_size=n, max_size=n))),
                min_size=1, max_size=4))
def test_ner_scores_conlleval_mode_counts_as_conlleval(pairs):
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    correct, guessed, found = _conlleval_counts(gold, pred)
    assert sum(len(conlleval_entities(g)) for g in gold) == found
    assert sum(len(conlleval_entities(p)) for p in pred) == guessed
    s = ner_scores(gold, pred, mode="conlleval")
    assert s["precision"] == pytest.approx(correct / guessed if guessed else 0.0)
    assert s["recall"] == pytest.approx(correct / found if found else 0.0)
