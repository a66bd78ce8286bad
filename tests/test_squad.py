"""SQuAD features and answers (2019 run_squad): windows, max context, offsets back to the original text."""
import json

import numpy as np
import pytest
import torch

from minibert.assets import data_path
from minibert.datasets import SquadExample, read_squad
from minibert.metrics import squad_scores
from minibert.squad import (SquadResult, best_null_threshold, context_pieces, convert_examples_to_features,
                            doc_spans, first_sentence_baseline, max_context, overlap_baseline, paragraph_halves,
                            postprocess_predictions, predict_logits, score_null_answers, squad_subset,
                            tokenize_context)
from minibert.tokenization import BertTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer.from_pretrained(None)  # the packaged uncased MiniLM vocab


def test_doc_spans_as_run_squad():
    # 10 tokens, windows of 4, stride 3: starts 0, 3, 6 and the last one stops at the end
    assert doc_spans(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert doc_spans(3, 4, 2) == [(0, 3)]
    with pytest.raises(ValueError, match="no room for the paragraph"):
        doc_spans(5, 0, 2)


def test_max_context_prefers_the_centred_window():
    spans = [(0, 4), (3, 4), (6, 4)]  # token 3: window 0 -> min(3, 0)=0, window 1 -> min(0, 3)=0: tie, first wins
    assert max_context(spans, 0, 3) and not max_context(spans, 1, 3)
    assert max_context(spans, 1, 4)  # window 1: min(1, 2) = 1 beats window 0's min(4, -1)
    assert max_context(spans, 2, 9)


def test_offsets_keep_accents_and_spaces(tokenizer):
    context = "Le  Café  de Flore, in Paris—since 1887."
    tokens, spans = tokenize_context(context, tokenizer)
    assert tokens == tokenizer.tokenize(context)
    # 'cafe' keeps the accent of 'Café'; '##ore' covers exactly its own characters
    assert [context[s:e] for s, e in spans] == ["Le", "Café", "de", "Fl", "ore", ",", "in", "Paris", "—", "since",
                                                "1887", "."]
    assert context_pieces("a-b  c") == [(0, 1), (1, 2), (2, 3), (5, 6)]


def test_pieces_tokenize_like_the_whole_context_on_real_dev(tokenizer):
    examples = read_squad()
    for context in list(dict.fromkeys(e.context_text for e in examples))[:300]:
        assert tokenize_context(context, tokenizer)[0] == tokenizer.tokenize(context)


def _oracle(features, windows):
    results = []
    for f, w in zip(features, windows):
        s, e = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
        s[f["start_positions"]] += 10
        e[f["end_positions"]] += 10
        results.append(SquadResult(s, e))
    return results


def test_gold_positions_map_back_to_the_gold_text(tokenizer):
    """Every window that holds the answer points, through its tokens' character spans, at the gold text,
    character for character (small max_seq_length forces several overlapping windows)."""
    examples = read_squad()[:300]
    features, windows = convert_examples_to_features(examples, tokenizer, max_seq_length=96, doc_stride=32,
                                                     max_query_length=24, is_training=True)
    assert len(features) > 2 * len(examples)  # the windows really overlap
    assert all(len(f["input_ids"]) <= 96 for f in features)
    seen, wrong = set(), set()
    for f, w in zip(features, windows):
        if f["start_positions"]:
            ex = examples[w.example_index]
            text = ex.context_text[w.token_spans[f["start_positions"]][0]:w.token_spans[f["end_positions"]][1]]
            seen.add(ex.qas_id)
            if text != ex.answers[0][0]:
                wrong.add(ex.qas_id)
                # the only misses: an answer edge inside one WordPiece ("gold" of "golden", "8" of "18"),
                # which run_squad cannot represent either; the span still covers the gold text
                assert ex.answers[0][0] in text and len(text) - len(ex.answers[0][0]) <= 3, (text, ex.answers)
    assert len(seen) == 300  # every answer fits in at least one window
    assert len(wrong) <= 15


def test_postprocess_recovers_answers_through_default_windows(tokenizer):
    examples = read_squad()[:300]
    features, windows = convert_examples_to_features(examples, tokenizer, is_training=True)  # 384 / 128
    preds, nbest, _ = postprocess_predictions(examples, windows, _oracle(features, windows))
    # same 10 WordPiece-edge misses as above (Super Bowl 50's "gold"/"golden"); everything else is exact
    assert sum(preds[e.qas_id] != e.answers[0][0] for e in examples) <= 15
    assert all(e.answers[0][0] in preds[e.qas_id] for e in examples)
    assert all(abs(sum(c["probability"] for c in nb) - 1) < 1e-9 for nb in nbest.values())


def test_answer_outside_window_is_cls_and_bad_span_is_named(tokenizer):
    context = " ".join(f"w{i}" for i in range(60)) + " answer here."
    ex = SquadExample("q1", "where?", context, (("answer", context.index("answer")),))
    features, windows = convert_examples_to_features([ex], tokenizer, max_seq_length=40, doc_stride=20,
                                                     max_query_length=8, is_training=True)
    assert features[0]["start_positions"] == features[0]["end_positions"] == 0
    last = features[-1]
    assert tokenizer.convert_ids_to_tokens([last["input_ids"][last["start_positions"]]]) == ["answer"]
    bad = SquadExample("q2", "where?", "short", (("x", 40),))
    with pytest.raises(ValueError, match="question 'q2'"):
        convert_examples_to_features([bad], tokenizer, is_training=True)


def test_answer_windows_only_keeps_no_answer_windows_and_drops_the_rest(tokenizer):
    context = " ".join(f"w{i}" for i in range(60)) + " answer here."
    answerable = SquadExample("q1", "where?", context, (("answer", context.index("answer")),))
    impossible = SquadExample("q2", "where?", context, (), is_impossible=True)
    shape = dict(max_seq_length=40, doc_stride=20, max_query_length=8)
    every, every_windows = convert_examples_to_features([answerable, impossible], tokenizer, is_training=True,
                                                        **shape)
    kept, kept_windows = convert_examples_to_features([answerable, impossible], tokenizer, is_training=True,
                                                      answer_windows_only=True, **shape)
    per_question = len(every) // 2
    assert per_question >= 3 and len(every_windows) == len(every)
    holding = [f for f in every[:per_question] if f["start_positions"] > 0]
    assert 0 < len(holding) < per_question
    # the answerable question keeps only the windows holding its answer, the other question every window ([CLS])
    assert kept == holding + every[per_question:]
    assert [(w.example_index, w.doc_span_index) for w in kept_windows] == \
        [(w.example_index, w.doc_span_index) for w, f in zip(every_windows, every) if f in kept]
    with pytest.raises(ValueError, match="needs is_training=True"):
        convert_examples_to_features([answerable], tokenizer, answer_windows_only=True, **shape)


def test_max_answer_length_and_null_answer(tokenizer):
    context = "Alpha beta gamma delta epsilon."
    ex = SquadExample("q", "which?", context, (("gamma", 11),))
    features, windows = convert_examples_to_features([ex], tokenizer, is_training=False)
    n = len(features[0]["input_ids"])
    s, e = np.zeros(n), np.zeros(n)
    first = windows[0].token_spans.index((0, 5))
    s[first], e[first + 3] = 5.0, 5.0  # "Alpha beta gamma delta", 4 tokens
    e[first + 2] = 4.0
    preds, _, _ = postprocess_predictions([ex], windows, [SquadResult(s, e)], max_answer_length=4)
    assert preds["q"] == "Alpha beta gamma delta"
    preds, _, _ = postprocess_predictions([ex], windows, [SquadResult(s, e)], max_answer_length=3)
    assert preds["q"] == "Alpha beta gamma"
    s[0], e[0] = 6.0, 6.0  # null score 12 vs best span of <= 3 tokens 5 + 4 = 9: diff 3
    preds, _, diff = postprocess_predictions([ex], windows, [SquadResult(s, e)], max_answer_length=3,
                                             version_2_with_negative=True, null_score_diff_threshold=1.0)
    assert preds["q"] == "" and diff["q"] == pytest.approx(3.0)
    preds, _, _ = postprocess_predictions([ex], windows, [SquadResult(s, e)], max_answer_length=3,
                                          version_2_with_negative=True, null_score_diff_threshold=3.5)
    assert preds["q"] == "Alpha beta gamma"


def test_best_null_threshold_hand_computed():
    ex = [SquadExample("a", "?", "c", (("x", 0),)), SquadExample("b", "?", "c", (), True),
          SquadExample("c", "?", "c", (("y", 0),))]
    spans = {"a": "x", "b": "z", "c": "wrong"}
    # sorted by diff: a(-1), b(0.5), c(2). Answer none: 1/3; +a: 2/3; +b: 1/3; +c: 1/3. Best: threshold -1.
    thresh, score = best_null_threshold(ex, {"a": -1.0, "b": 0.5, "c": 2.0}, spans, metric="exact")
    assert thresh == -1.0 and score == pytest.approx(200 / 3)


def test_predict_logits_matches_one_by_one(tokenizer):
    from minibert.heads import BertForQuestionAnswering
    from minibert.modeling import BertConfig

    torch.manual_seed(0)
    model = BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    examples = read_squad()[:6]
    features, windows = convert_examples_to_features(examples, tokenizer, max_seq_length=128, doc_stride=64)
    batched = predict_logits(model, features, batch_size=4)
    model.eval()
    for f, r in zip(features, batched):
        with torch.no_grad():
            start, end = model(torch.tensor([f["input_ids"]]), torch.tensor([f["token_type_ids"]]))
        # padding changes fp32 sums by ~1e-6; 1e-4 covers it with room, a wrong row differs by ~1e-1
        assert np.allclose(r.start_logits, start[0].numpy(), atol=1e-4)
        assert np.allclose(r.end_logits, end[0].numpy(), atol=1e-4)


def test_overlap_baseline_returns_a_sentence_of_the_context():
    ex = SquadExample("q", "Who founded the city?", "It rains. Romulus founded the city. The end", (("Romulus", 10),))
    assert overlap_baseline([ex]) == {"q": "Romulus founded the city"}


def test_first_sentence_baseline_ignores_the_question():
    ex = SquadExample("q", "Who founded the city?", "It rains. Romulus founded the city. The end", (("Romulus", 10),))
    assert first_sentence_baseline([ex]) == {"q": "It rains"}


def test_paragraph_halves_keep_a_paragraph_together_and_subset_scores_only_them():
    path = data_path("squad", "dev-v2.0-first5articles.json")
    examples = [e for e in read_squad(path) if e.title == "Normans"]
    tune, score = paragraph_halves(examples)
    assert tune | score == {e.qas_id for e in examples} and not tune & score
    side = {}
    for e in examples:  # every paragraph on one side only
        side.setdefault(e.context_text, set()).add(e.qas_id in tune)
    assert all(len(v) == 1 for v in side.values()) and len(side) == 39
    assert abs(len(tune) - len(score)) < 30
    part = squad_subset(json.loads(path.read_text(encoding="utf-8")), score)
    s = squad_scores(part, {q: "" for q in score})
    assert s["total"] == len(score) and s["NoAns_total"] == sum(e.is_impossible for e in examples if e.qas_id in score)


def test_score_null_answers_on_real_2_0_questions(tokenizer):
    path = data_path("squad", "dev-v2.0-first5articles.json")
    dataset = json.loads(path.read_text(encoding="utf-8"))
    examples = [e for e in read_squad(path) if e.title == "Normans"]
    features, windows = convert_examples_to_features(examples, tokenizer, 128, 48, 32, is_training=True)
    tune, score = paragraph_halves(examples)
    # the oracle: gold span where the window holds it, [CLS] elsewhere; every unanswerable question is null
    perfect = score_null_answers(examples, windows, _oracle(features, windows), dataset, tune, score, 20, 30)
    assert perfect.honest["f1"] == perfect.upper_bound["f1"] == 100.0 and perfect.auc == 1.0
    assert perfect.honest["total"] == len(score) and perfect.spans.keys() == {e.qas_id for e in examples}
    # the reverse: [CLS] high for answerable questions, a span for unanswerable ones; the AUC is 0, and the best
    # threshold can only answer everything or nothing (evaluate-v2.0's best_f1 = the larger share)
    reverse = []
    for f, w in zip(features, windows):
        s, e = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
        if examples[w.example_index].is_impossible:
            first = next(i for i, (span, is_max) in enumerate(zip(w.token_spans, w.token_is_max_context))
                         if span is not None and is_max)
            s[first], e[first + 5] = 10.0, 10.0  # 6 words: one word may be "the", which scores as no answer
        else:
            s[0] = e[0] = 30.0
            s[f["start_positions"]] += 10
            e[f["end_positions"]] += 10
        reverse.append(SquadResult(s, e))
    worst = score_null_answers(examples, windows, reverse, dataset, tune, score, 20, 30)
    no_answer = np.mean([e.is_impossible for e in examples if e.qas_id in score])
    assert worst.auc == 0.0 and 0 < no_answer < 1
    assert worst.upper_bound["f1"] == pytest.approx(100 * max(no_answer, 1 - no_answer))
    with pytest.raises(ValueError, match="disjoint"):
        score_null_answers(examples, windows, _oracle(features, windows), dataset, tune, tune, 20, 30)
