"""The simple baselines (Naive Bayes, word overlap, logistic regression on features) and the readers of the
unlabelled Chinese pre-training text: exact formulas on small cases, and the figures they give on the real data."""
import math

import numpy as np
import pytest
import torch

from minibert.baselines import LogisticRegression, NaiveBayes, char_ngrams, jaccard_overlap, pair_features, words
from minibert.datasets import (drop_overlapping, read_chnsenticorp, read_chnsenticorp_htl, read_mrpc,
                               review_sentences)
from minibert.metrics import roc_auc, roc_curve
from minibert import pretraining as P
from minibert.pretraining import unigram_baseline
from minibert.tokenization import BertTokenizer


def test_char_ngrams_drop_whitespace_and_check_the_range():
    assert char_ngrams("不 错!", (1, 2)) == ["不", "错", "!", "不错", "错!"]
    assert char_ngrams("ab", (3, 3)) == []
    with pytest.raises(ValueError, match="1 <= low <= high"):
        char_ngrams("ab", (2, 1))


def test_naive_bayes_is_the_multinomial_formula():
    texts, labels = ["好好", "好差", "差差差"], [1, 1, 0]
    nb = NaiveBayes((1, 1), alpha=1.0).fit(texts, labels)
    # class 1 saw 好 x3, 差 x1 (4 tokens); class 0 saw 差 x3; vocabulary {好, 差}
    p = {1: {"好": 4 / 6, "差": 2 / 6}, 0: {"好": 1 / 5, "差": 4 / 5}}
    prior = {1: 2 / 3, 0: 1 / 3}
    text = "好差好新"  # 新 was never seen: it is ignored
    want = [math.log(prior[c]) + 2 * math.log(p[c]["好"]) + math.log(p[c]["差"]) for c in (0, 1)]
    np.testing.assert_allclose(nb.decision_function([text])[0], want, rtol=1e-12)
    assert nb.predict(["好", "差"]).tolist() == [1, 0]


def test_naive_bayes_errors():
    with pytest.raises(ValueError, match="alpha"):
        NaiveBayes(alpha=0)
    with pytest.raises(ValueError, match="missing or negative: \\[0\\]"):
        NaiveBayes().fit(["a", "b"], [1, 1])
    with pytest.raises(RuntimeError, match="call fit"):
        NaiveBayes().predict(["a"])


def test_naive_bayes_on_chnsenticorp_bigrams_beat_characters():
    train, dev = read_chnsenticorp("train")[:2000], read_chnsenticorp("dev")
    y = np.array([e.label for e in dev])
    acc = {}
    for ngrams in ((1, 1), (1, 2)):
        nb = NaiveBayes(ngrams).fit([e.text_a for e in train], [e.label for e in train])
        acc[ngrams] = float(np.mean(nb.predict([e.text_a for e in dev]) == y))
    # measured 0.765 and 0.833: "不错" and "失望" carry the sentiment, their characters alone less so
    assert 0.74 < acc[(1, 1)] < 0.79 and 0.82 < acc[(1, 2)] < 0.85


def test_words_are_the_basic_tokenizers():
    assert words("Hello, World's END.") == {"hello", ",", "world", "'", "s", "end", "."}
    assert jaccard_overlap("The cat sat.", "the cat ran") == pytest.approx(2 / 5)
    assert jaccard_overlap("", "") == 0.0


def test_word_overlap_auc_on_all_mrpc_dev_pairs():
    dev = read_mrpc("dev")
    auc = roc_auc([jaccard_overlap(e.text_a, e.text_b) for e in dev], [e.label for e in dev])
    assert auc == pytest.approx(0.7714, abs=1e-4)


def test_pair_features_order_and_symmetry():
    u, v = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]])
    assert pair_features(u, v).tolist() == [[2.0, 6.0, 3.0, -8.0]]
    assert pair_features(u, v, ("u", "v")).tolist() == [[1.0, -2.0, 3.0, 4.0]]
    np.testing.assert_array_equal(pair_features(u, v), pair_features(v, u))
    with pytest.raises(ValueError, match="parts must be"):
        pair_features(u, v, ("sum",))
    with pytest.raises(ValueError, match="same shape|one shape"):
        pair_features(u, v.T)


def test_logistic_regression_reaches_the_penalised_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.1, 1, 1] + 3
    y = (x[:, 0] + 0.1 * x[:, 1] + rng.normal(size=200) > 4).astype(int)
    lr = LogisticRegression(l2=0.1).fit(x, y)
    xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
    p = lr.predict_proba(x)
    # stationarity of mean log loss + l2/2 |w|^2: the gradient vanishes (the bias is not penalised)
    np.testing.assert_allclose(xs.T @ (p - y) / len(y) + 0.1 * lr.weight, 0, atol=1e-7)
    assert abs(np.mean(p - y)) < 1e-7
    assert ((lr.decision_function(x) > 0) == lr.predict(x)).all()
    with pytest.raises(ValueError, match="labels must be 0 and 1"):
        LogisticRegression().fit(x, np.zeros(200))
    with pytest.raises(ValueError, match=r"x must be \(N, 5\)"):
        lr.decision_function(x[:, :3])


def test_hotel_reviews_reader(tmp_path):
    hotel = read_chnsenticorp_htl()
    assert len(hotel) == 7765  # 7,766 rows, one with an empty review
    assert sum(e.label for e in hotel) == 5322 and hotel[0].text_a.startswith("距离川沙公路较近")
    bad = tmp_path / "htl.csv"
    bad.write_text("label,text\n1,好\n", encoding="utf-8")
    with pytest.raises(ValueError, match="htl.csv, line 1: expected the header 'label,review'"):
        read_chnsenticorp_htl(bad)
    bad.write_text('label,review\n1,好\n2,"差"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"htl.csv, line 3: label '2' is not one of"):
        read_chnsenticorp_htl(bad)


def test_drop_overlapping_catches_near_copies():
    reference = ["房间很大,服务很好,早餐也不错,下次还会再来住的。"]
    texts = ["房间很大, 服务很好,早餐也不错,下次还会再来住的。谢谢",  # a copy with a space and an extra end
             "房间很小。", "房间很小。", "房 间很小。"]  # repeats, whitespace aside, are kept once
    assert drop_overlapping(texts, reference, window=20) == ["房间很小。"]
    with pytest.raises(ValueError, match="window"):
        drop_overlapping(texts, reference, window=0)


def test_hotel_reviews_overlap_with_dev_and_test():
    held = [e.text_a for s in ("dev", "test") for e in read_chnsenticorp(s)]
    hotel = [e.text_a for e in read_chnsenticorp_htl()]
    exact = set(held)
    assert sum(h in exact for h in hotel) == 443
    kept = drop_overlapping(hotel, held)
    # 443 exact copies, then near copies (a space, a traditional character, a cut end) and shared hotel replies;
    # the hotel file itself holds no repeats
    assert len(hotel) - len(kept) == 814
    assert drop_overlapping(hotel, []) == hotel
    assert not any(h in exact for h in kept)


def test_review_sentences():
    assert review_sentences("房间很大！！服务好。 早餐 一般\n下次还来") == ["房间很大！！", "服务好。", "早餐 一般",
                                                                           "下次还来"]
    assert review_sentences("  ") == []


def test_unigram_perplexity_is_the_frequency_model():
    tok = BertTokenizer.from_pretrained(None)
    docs = [["the cat sat on the mat .", "the dog ran ."], ["a cat and a dog ."]]
    data = P.load_pretraining_data(docs, tok, 16, held_out=0.5, seed=1)
    collate = P.PretrainingCollator(tok, max_predictions_per_seq=3, seed=0)
    batches = P.fixed_batches(data.held_out, collate, 8)
    got = unigram_baseline(data.train, batches)
    ids = torch.cat([it["input_ids"] for it in data.train.items])
    counts = torch.bincount(ids, minlength=tok.vocab_size).double() + 1
    counts[[tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]] = 0
    labels = torch.cat([b["masked_lm_labels"].reshape(-1) for b in batches])
    labels = labels[labels >= 0]
    assert got["perplexity"] == pytest.approx(math.exp(-(counts / counts.sum()).log()[labels].mean().item()))


def test_roc_curve_area_is_the_auc_and_ties_move_both_rates():
    fpr, tpr = roc_curve([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    fpr, tpr = roc_curve(scores, labels)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(roc_auc(scores, labels), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([0.1, 0.2], [1, 1])
