"""Feature extraction: the 2019 JSON lines layout round-trips, sentence vectors, ROC AUC, MRPC without training."""
import json

import numpy as np
import pytest
import torch

from minibert import features, metrics
from minibert.datasets import read_mrpc
from minibert.course import checks

N_MRPC = 408  # all of MRPC dev

# per-layer ROC AUC on MRPC dev with the packaged all-MiniLM-L6-v2, computed with this module (and matched by
# the independent computation below); a change here means the pipeline changed
EXPECTED_AUC = {
    "cls": [0.7087, 0.7057, 0.71451, 0.73752, 0.70554, 0.6959],
    "mean": [0.75991, 0.77614, 0.77242, 0.76325, 0.76183, 0.73213],
    "pooled": [0.69692],
}


@pytest.fixture(scope="module")
def mrpc():
    return read_mrpc("dev")[:N_MRPC]


@pytest.fixture(scope="module")
def mrpc_auc(model, tokenizer, mrpc):
    return features.mrpc_similarity_auc(model, tokenizer, mrpc)


TEXTS = ["Who was Jim Henson?", ("Who was Jim Henson?", "Jim Henson was a puppeteer"), "Hello, world!"]


def test_extract_features_jsonl_round_trip(model, tokenizer, tmp_path, jim_henson_reference):
    path = features.extract_features(model, tokenizer, TEXTS, tmp_path / "out.jsonl", batch_size=2)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == ["linex_index", "features"]          # the original's key order
    assert list(first["features"][0]) == ["token", "layers"]
    assert list(first["features"][0]["layers"][0]) == ["index", "values"]

    records = list(features.read_features(path))
    assert [r["linex_index"] for r in records] == [0, 1, 2]
    pair = records[1]
    assert [f["token"] for f in pair["features"]] == ["[CLS]", "who", "was", "jim", "henson", "?", "[SEP]", "jim",
                                                      "henson", "was", "a", "puppet", "##eer", "[SEP]"]
    assert [lay["index"] for lay in pair["features"][0]["layers"]] == [-1, -2, -3, -4]

    # the values are the model's hidden states for the batch they were written from (texts 0 and 1, padded
    # together), rounded to 6 decimals as the original does
    batch = features.encode_batch(tokenizer, TEXTS[:2])
    assert batch.input_ids[1].tolist() == [101, 2040, 2001, 3958, 27227, 1029, 102, 3958, 27227, 2001, 1037, 13997,
                                           11510, 102]
    with torch.no_grad():
        layers, _ = model(batch.input_ids, batch.token_type_ids, batch.attention_mask)
    for layer in (-1, -2, -3, -4):
        tokens, values = features.feature_matrix(pair, layer)
        assert values.shape == (14, 384)
        # 5e-7: rounding to 6 decimals; 5e-7: the rounded value read back as float32 (half an ulp below 16);
        # 2e-6: fp32 sums over H=384 in another order if MKL splits the matmul over fewer threads under load
        # (measured 5.1e-7 in total with 1 and 2 threads, idle and beside two busy loops)
        np.testing.assert_allclose(values, layers[layer][1].numpy(), atol=5e-7 + 5e-7 + 2e-6, rtol=0)
    ref = jim_henson_reference  # computed with transformers in conftest.py
    # transformers' float32 forward, another order of every sum through 6 layers: ~1e-6, 1e-4 is far below the
    # ~1e-1 a wrong weight or mask would give
    np.testing.assert_allclose(features.feature_matrix(pair, -1)[1][0], ref["cls_last_hidden_full"], atol=1e-4)
    with pytest.raises(KeyError, match="layer 0 is not in this record"):
        features.feature_matrix(pair, 0)

    # writing what was read gives the same bytes back
    again = tmp_path / "again.jsonl"
    again.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert again.read_bytes() == path.read_bytes()


def test_extract_features_errors(model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="layer index 6 is out of range for a model with 6 layers"):
        features.extract_features(model, tokenizer, ["a"], tmp_path / "x.jsonl", layers=[6])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"linex_index": 0, "features": []}\n{"oops": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected keys 'linex_index' and 'features'"):
        list(features.read_features(bad))
    bad.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not valid JSON"):
        list(features.read_features(bad))


def test_read_examples_pairs_and_singles(tmp_path):
    f = tmp_path / "input.txt"
    f.write_text("Who was Jim Henson ? ||| Jim Henson was a puppeteer\nJust one sentence.\n\n", encoding="utf-8")
    assert features.read_examples(f) == [("Who was Jim Henson ?", "Jim Henson was a puppeteer"), "Just one sentence."]
    assert features.read_examples(["a|||b", "a ||| b"]) == ["a|||b", ("a", "b")]
    with pytest.raises(FileNotFoundError, match="no input file"):
        features.read_examples(str(tmp_path / "missing.txt"))


def test_encode_batch_truncates_pairs_like_bert(tokenizer):
    b = features.encode_batch(tokenizer, [("one two three four five six", "seven eight")], max_seq_length=8)
    assert b.tokens[0] == ["[CLS]", "one", "two", "three", "[SEP]", "seven", "eight", "[SEP]"]
    assert b.token_type_ids[0].tolist() == [0] * 5 + [1] * 3
    with pytest.raises(TypeError, match="a sentence \\(str\\) or a pair"):
        features.encode_batch(tokenizer, [("a", "b", "c")])


def test_sentence_vectors_ignore_padding_and_order(model, tokenizer):
    texts = ["A very long sentence that forces the others in its batch to be padded quite a lot.", "Short.",
             "Medium length sentence here."]
    together = features.sentence_vectors(model, tokenizer, texts, batch_size=3)
    for i, t in enumerate(texts):
        alone = features.sentence_vectors(model, tokenizer, [t])
        # padding changes the matmul shapes, hence the fp32 summation order, through 6 layers (~2e-6 measured);
        # a padding key that leaked into attention would move the vectors by ~1e-2
        np.testing.assert_allclose(together.mean[:, i], alone.mean[:, 0], atol=2e-5, rtol=0)
        np.testing.assert_allclose(together.cls[:, i], alone.cls[:, 0], atol=2e-5, rtol=0)
        np.testing.assert_allclose(together.pooled[i], alone.pooled[0], atol=2e-5, rtol=0)
    enc = features.encode_batch(tokenizer, [texts[1]])
    with torch.no_grad():
        layers, pooled = model(enc.input_ids, enc.token_type_ids, enc.attention_mask)
    # padded batch of 3 vs the sentence alone: the same padding noise as above
    np.testing.assert_allclose(together.mean[-1, 1], layers[-1][0].mean(0).numpy(), atol=2e-5)
    np.testing.assert_allclose(together.pooled[1], pooled[0].numpy(), atol=2e-5)


def brute_force_auc(scores, labels):
    """Fraction of (positive, negative) pairs ranked correctly, ties 1/2: the definition, O(P N)."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_equals_pairwise_definition():
    rng = np.random.default_rng(1)
    for n, decimals in ((30, 1), (101, 3), (7, 0)):
        s = rng.normal(size=n).round(decimals)
        y = (rng.random(n) < 0.6).astype(int)
        y[:2] = [0, 1]
        # both are exact fractions of pair counts, computed in float64: only rounding of the last bit
        assert metrics.roc_auc(s, y) == pytest.approx(brute_force_auc(s, y), abs=1e-12)
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    np.testing.assert_array_equal(metrics.average_ranks(np.array([3, 1, 3, 2])), [3.5, 1, 3.5, 2])
    with pytest.raises(ValueError, match="needs both classes"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        metrics.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="same length"):
        metrics.roc_auc([0.1, 0.2, 0.3], [0, 1])


def test_check_roc_auc_names_the_failing_case():
    checks.check_roc_auc(metrics.roc_auc)
    checks.check_roc_auc(brute_force_auc)

    def ignores_ties(s, y):
        return np.mean([p > n for p in s[y == 1] for n in s[y == 0]])

    with pytest.raises(AssertionError, match="all scores tied"):
        checks.check_roc_auc(ignores_ties)


def test_mrpc_auc_independent_computation(mrpc, mrpc_auc):
    """Same AUCs from transformers' BertModel, hand-written pooling and the pairwise definition of AUC."""
    transformers = pytest.importorskip("transformers")
    from minibert.assets import checkpoint_path

    ref = transformers.BertModel.from_pretrained(str(checkpoint_path())).eval()
    tok = transformers.BertTokenizer(str(checkpoint_path() / "vocab.txt"))
    labels = [e.label for e in mrpc]

    def encode(texts):
        out = {"cls": [], "mean": [], "pooled": []}
        for i in range(0, len(texts), 48):  # in input order, padded by transformers' tokenizer
            enc = tok(texts[i:i + 48], return_tensors="pt", padding=True, truncation=True, max_length=128)
            with torch.no_grad():
                o = ref(**enc, output_hidden_states=True)
            hs = torch.stack(o.hidden_states[1:])  # (layers, batch, seq, hidden), embeddings left out
            for row, length in enumerate(enc["attention_mask"].sum(1).tolist()):
                out["cls"].append(hs[:, row, 0])
                out["mean"].append(hs[:, row, :length].mean(1))
                out["pooled"].append(o.pooler_output[row])
        return {k: torch.stack(v, -2).numpy() for k, v in out.items()}

    a, b = encode([e.text_a for e in mrpc]), encode([e.text_b for e in mrpc])
    for name in ("cls", "mean"):
        cos = features.cosine_similarity(a[name], b[name])
        want = [brute_force_auc(c, labels) for c in cos]
        # one pair of cosine scores swapping order by fp32 noise moves an AUC by 1/(P N) = 2.8e-5 on MRPC dev
        # (279 x 129): 2e-4 allows a few such swaps between two implementations
        np.testing.assert_allclose(mrpc_auc[name], want, atol=2e-4, rtol=0, err_msg=name)
    cos = features.cosine_similarity(a["pooled"], b["pooled"])
    assert mrpc_auc["pooled"][0] == pytest.approx(brute_force_auc(cos, labels), abs=2e-4)  # as above


def test_mrpc_auc_is_reproducible(mrpc_auc):
    assert mrpc_auc["cls"].shape == mrpc_auc["mean"].shape == (6,)
    for name, values in EXPECTED_AUC.items():
        # the table holds 4-5 decimals: rounding (5e-5) plus a swapped pair or two (2.8e-5 each) across machines
        np.testing.assert_allclose(mrpc_auc[name], values, atol=1e-4, rtol=0, err_msg=name)
    # all-MiniLM-L6-v2 was trained for mean-pooled similarity: its last layer beats chance clearly
    assert mrpc_auc["mean"][-1] > 0.65


def test_pca_2d_finds_the_main_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    pts, ratio = features.pca_2d(x)
    assert pts.shape == (200, 2)
    assert abs(np.corrcoef(pts[:, 0], x[:, 0])[0, 1]) > 0.999
    assert abs(np.corrcoef(pts[:, 1], x[:, 1])[0, 1]) > 0.99
    assert ratio[0] > 0.85 and ratio.sum() < 1
    with pytest.raises(ValueError, match="needs a \\(N >= 2, hidden\\) array"):
        features.pca_2d(np.ones(3))


def test_word_vectors_picks_the_word(model, tokenizer):
    v = features.word_vectors(model, tokenizer, ["The dog barked.", "A red car."], ["dog", "red"], layer=-1)
    assert v.shape == (2, 384)
    enc = features.encode_batch(tokenizer, ["The dog barked."])
    with torch.no_grad():
        layers, _ = model(enc.input_ids, enc.token_type_ids, enc.attention_mask)
    # a batch of 2 (padded) vs the sentence alone: fp32 summation order through 6 layers, as above
    np.testing.assert_allclose(v[0], layers[-1][0, 2].numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="does not occur in sentence 0"):
        features.word_vectors(model, tokenizer, ["The dog barked."], ["cat"])
    with pytest.raises(ValueError, match="one WordPiece"):
        features.word_vectors(model, tokenizer, ["The puppeteer."], ["puppeteer"])
