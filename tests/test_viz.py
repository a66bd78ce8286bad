"""Attention views: the probabilities minibert.viz returns are the model's own, statistics, bertviz HTML, plots."""
import json
import math
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from minibert import viz  # noqa: E402
from minibert.course import checks, widgets  # noqa: E402
from minibert.features import encode_batch  # noqa: E402

SENTENCES = ["The quick brown fox jumps over the lazy dog.",
             ("Who was Jim Henson?", "Jim Henson was a puppeteer, and a very good one."),
             "Short one."]


@pytest.fixture(scope="module")
def batches(model, tokenizer):
    return viz.batch_attention(model, tokenizer, SENTENCES, batch_size=8)


def explicit_attention(model, input_ids, token_type_ids, attention_mask):
    """softmax(Q K^T / sqrt(d) + mask) from each layer's own query/key weights, on that layer's input."""
    with torch.no_grad():
        hidden = [model.embeddings(input_ids, token_type_ids)]
        # the layer inputs come from the same (explicit-math) forward pass; the probabilities are recomputed here
        layers, _, _ = model(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=True,
                             output_attentions=True)
        hidden += layers[:-1]
        out = []
        for layer, h in zip(model.encoder.layer, hidden):
            sa = layer.attention.self
            n, d = sa.num_attention_heads, sa.attention_head_size
            b, s, _ = h.shape
            q = sa.query(h).view(b, s, n, d).permute(0, 2, 1, 3)
            k = sa.key(h).view(b, s, n, d).permute(0, 2, 1, 3)
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)
            scores = scores + (1.0 - attention_mask[:, None, None, :].float()) * -10000.0  # the 2019 mask value
            out.append(scores.softmax(-1))
    return out


def test_attention_equals_explicit_computation_with_padding(model, tokenizer, batches):
    (b,) = batches
    assert b.attention_mask.sum(1).tolist() != [b.input_ids.shape[1]] * 3, "the batch must contain padding"
    enc = encode_batch(tokenizer, SENTENCES)
    expected = explicit_attention(model, enc.input_ids, enc.token_type_ids, enc.attention_mask)
    assert len(b.attentions) == model.config.num_hidden_layers == 6
    for got, want in zip(b.attentions, expected):
        assert got.shape == (3, 12, b.input_ids.shape[1], b.input_ids.shape[1])
        # the same float32 formula in another order (scores over head_dim=32, softmax over <= 20 keys), on
        # probabilities in [0, 1]: ~1e-7 measured; 1e-5 also covers a thread split that changes under load
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        # a row of float32 probabilities sums to 1 up to ~seq * 6e-8
        torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-5, rtol=0)
        pad_keys = (b.attention_mask == 0)[:, None, None, :].expand_as(got)
        assert got[pad_keys].abs().max().item() < 1e-30  # exp(-10000 or finfo.min) underflows to 0


def test_attention_matches_transformers_eager(model, tokenizer):
    transformers = pytest.importorskip("transformers")
    from minibert.assets import checkpoint_path

    ref = transformers.BertModel.from_pretrained(str(checkpoint_path()), attn_implementation="eager").eval()
    r = viz.get_attention(model, tokenizer, "Who was Jim Henson?", "Jim Henson was a puppeteer")
    with torch.no_grad():
        out = ref(torch.tensor([r.input_ids]), token_type_ids=torch.tensor([r.token_type_ids]),
                  output_attentions=True)
    assert r.input_ids == [101, 2040, 2001, 3958, 27227, 1029, 102, 3958, 27227, 2001, 1037, 13997, 11510, 102]
    for ours, theirs in zip(r.attentions, out.attentions):
        # two float32 implementations whose hidden states already differ by ~1e-6 after a few layers; on
        # probabilities in [0, 1] that gave 1.6e-6 to 2.1e-6 (1 or 2 threads, idle or busy): 1e-5 holds with
        # margin, and a wrong mask or scale would be off by > 1e-2
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_get_attention_pair_and_task_model(model, tokenizer):
    r = viz.get_attention(model, tokenizer, "Who was Jim Henson?", "Jim Henson was a puppeteer")
    assert r.tokens == ["[CLS]", "who", "was", "jim", "henson", "?", "[SEP]", "jim", "henson", "was", "a",
                        "puppet", "##eer", "[SEP]"]
    assert r.sentence_b_start == 7 and r.token_type_ids == [0] * 7 + [1] * 7
    assert (r.num_layers, r.num_heads) == (6, 12)
    assert viz.get_attention(model, tokenizer, "Who was Jim Henson?").sentence_b_start is None

    class Wrapped(torch.nn.Module):  # a task model holds its encoder at .bert
        def __init__(self):
            super().__init__()
            self.bert = model

    w = Wrapped().train()
    r2 = viz.get_attention(w, tokenizer, "Who was Jim Henson?", "Jim Henson was a puppeteer")
    assert w.training and model.training, "train/eval mode must be restored"
    model.eval()
    for a, b in zip(r.attentions, r2.attentions):
        assert torch.equal(a, b), "dropout must be off while reading attention"
    with pytest.raises(ValueError, match="layer 6 is out of range for a model with 6 layers"):
        r.matrix(6, 0)
    with pytest.raises(ValueError, match="head 12 is out of range"):
        r.matrix(0, 12)


def special_ids(tokenizer):
    return tokenizer.cls_token_id, tokenizer.sep_token_id, viz.punctuation_ids(tokenizer)


def naive_statistics(b, cls_id, sep_id, punct):
    """The same statistics with explicit loops over sentences and positions, as a second implementation."""
    L, H = len(b.attentions), b.attentions[0].shape[1]
    acc = {k: np.zeros((L, H)) for k in viz.HEAD_STATISTICS}
    n = {k: 0 for k in viz.HEAD_STATISTICS}
    for s in range(b.input_ids.shape[0]):
        length = int(b.attention_mask[s].sum())
        ids = b.input_ids[s, :length].tolist()
        for i in range(length):
            for key in ("cls", "sep", "punct", "entropy"):
                n[key] += 1
            if i > 0:
                n["prev"] += 1
            if i < length - 1:
                n["next"] += 1
            for layer in range(L):
                for h in range(H):
                    p = b.attentions[layer][s, h, i, :length].double().numpy()
                    acc["cls"][layer, h] += sum(p[j] for j in range(length) if ids[j] == cls_id)
                    acc["sep"][layer, h] += sum(p[j] for j in range(length) if ids[j] == sep_id)
                    acc["punct"][layer, h] += sum(p[j] for j in range(length) if ids[j] in punct)
                    acc["entropy"][layer, h] += -sum(x * math.log(x) for x in p if x > 0)
                    if i > 0:
                        acc["prev"][layer, h] += p[i - 1]
                    if i < length - 1:
                        acc["next"][layer, h] += p[i + 1]
    return {k: acc[k] / n[k] for k in acc}


def test_head_statistics_match_naive_loops(batches, tokenizer):
    (b,) = batches
    small = viz.BatchAttention(tuple(a[:, :3] for a in b.attentions[:2]), b.input_ids, b.attention_mask, b.tokens)
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, viz.punctuation_ids(tokenizer))
    assert ids == (101, 102, [1012, 1010])  # bert-base-uncased's [CLS], [SEP], '.', ','
    got = viz.head_statistics(small, *ids)
    want = naive_statistics(small, *ids)
    for k in viz.HEAD_STATISTICS:
        assert got[k].shape == (2, 3)
        # the same float64 sums in another order (vectorised vs loops): ~1e-15; 1e-9 is far below any real error
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-9, err_msg=k)


def test_head_statistics_on_hand_made_heads():
    # one sentence [CLS] a . [SEP] [PAD]; head 0 looks at the previous token (itself at 0), head 1 at [CLS]
    ids = torch.tensor([[101, 7, 1012, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    prev = torch.zeros(5, 5)
    for i in range(4):
        prev[i, max(i - 1, 0)] = 1.0
    prev[4, 4] = 1.0  # a padding query: must be ignored
    to_cls = torch.zeros(5, 5)
    to_cls[:, 0] = 1.0
    att = torch.stack([prev, to_cls])[None]  # (1, 2, 5, 5)
    special = dict(cls_token_id=101, sep_token_id=102, punct_token_ids=[1012])
    s = viz.head_statistics(viz.BatchAttention((att,), ids, mask, []), **special)
    # hand-made 0/1 attention: exact fractions up to float64 rounding (assert_allclose's default rtol=1e-7)
    np.testing.assert_allclose(s["prev"][0], [1.0, 1 / 3])  # queries 1..3 have a previous token
    np.testing.assert_allclose(s["next"][0], [0.0, 0.0])
    np.testing.assert_allclose(s["cls"][0], [2 / 4, 1.0])  # head 0: queries 0 and 1 land on [CLS]
    np.testing.assert_allclose(s["sep"][0], [0.0, 0.0])
    np.testing.assert_allclose(s["punct"][0], [1 / 4, 0.0])  # query 3 looks at '.'
    np.testing.assert_allclose(s["entropy"][0], [0.0, 0.0])
    with pytest.raises(ValueError, match="does not match input_ids"):
        viz.head_statistics(viz.BatchAttention((att,), ids[:, :4], mask[:, :4], []), **special)
    with pytest.raises(ValueError, match="at least one batch"):
        viz.head_statistics([], **special)


def test_notable_heads_names_the_largest_value(batches, tokenizer):
    stats = viz.head_statistics(batches, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                viz.punctuation_ids(tokenizer))
    lines = viz.notable_heads(stats, top=1)
    layer, head = np.unravel_index(stats["sep"].argmax(), stats["sep"].shape)
    sep_line = next(line for line in lines if line.startswith("attention to [SEP]"))
    assert f"layer {layer} head {head} ({stats['sep'][layer, head]:.2f})" in sep_line
    layer, head = np.unravel_index(stats["entropy"].argmin(), stats["entropy"].shape)
    assert f"layer {layer} head {head}" in lines[-1]


def _params(html):
    m = re.search(r"const params = (\{.*?\}); // HACK", html, re.S)
    assert m, "bertviz's params block not found"
    return json.loads(m.group(1))


def test_head_view_html_uses_local_javascript_and_carries_every_head(model, tokenizer, tmp_path):
    r = viz.get_attention(model, tokenizer, "Who was Jim Henson?", "Jim Henson was a puppeteer")
    html = viz.head_view_html(r, js_base="/static/js")
    assert "cdnjs" not in html
    assert '<script src="/static/js/require.js">' in html
    assert "d3: '/static/js/d3.min'" in html and "jquery: '/static/js/jquery.min'" in html
    params = _params(html)
    views = params["attention"]
    assert [v["name"] for v in views] == ["All", "Sentence A -> Sentence A", "Sentence B -> Sentence B",
                                          "Sentence A -> Sentence B", "Sentence B -> Sentence A"]
    attn = np.array(views[0]["attn"])
    assert attn.shape == (6, 12, 14, 14)
    np.testing.assert_allclose(attn, torch.stack(r.attentions)[:, 0].numpy(), atol=5e-5 + 1e-7)  # 4 decimals
    assert max(len(x) for x in re.findall(r"\d\.\d+", html[html.find("const params"):][:20000])) <= 6
    full = np.array(_params(viz.head_view_html(r, decimals=None))["attention"][0]["attn"])
    # decimals=None writes the float32 values themselves: JSON float repr round-trips them (1e-7 is slack)
    np.testing.assert_allclose(full, torch.stack(r.attentions)[:, 0].numpy(), atol=1e-7)
    assert views[0]["left_text"] == r.tokens and len(views[1]["left_text"]) == 7
    assert "cdnjs" in viz.head_view_html(r)  # without js_base: bertviz's own CDN links

    mv = viz.model_view_html(r, js_base="js")
    assert "cdnjs" not in mv and np.array(_params(mv)["attention"][0]["attn"]).shape == (6, 12, 14, 14)

    page = viz.save_view(r, tmp_path / "head.html", js_base="js")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    with pytest.raises(ValueError, match="view must be 'head_view' or 'model_view'"):
        viz.save_view(r, tmp_path / "x.html", view="neuron_view")


def test_plots_and_widget(model, tokenizer, batches):
    import matplotlib.pyplot as plt

    r = viz.get_attention(model, tokenizer, "Who was Jim Henson?")
    ax = viz.plot_attention(r, layer=2, head=3)
    assert [t.get_text() for t in ax.get_xticklabels()] == r.tokens
    # the heat map holds the matrix itself (default rtol=1e-7: only a float64 copy in between)
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(len(r.tokens), -1), r.matrix(2, 3))
    fig = viz.plot_layer(r, layer=1)
    assert sum(1 for a in fig.axes if a.images) == 12
    fig2 = viz.plot_head_statistics(viz.head_statistics(batches, *special_ids(tokenizer)))
    assert [a.get_title() for a in fig2.axes[:6:1] if a.get_title()][:1] == ["attention to [CLS]"]
    plt.close("all")

    w = widgets.attention_explorer(model, tokenizer, ["Who was Jim Henson?", ("A dog.", "A cat.")])
    dropdown, layer, head = w.children[0].children
    # the default view is drawn at once, on the head that reads the previous token the most
    first = viz.get_attention(model, tokenizer, "Who was Jim Henson?")
    to_previous = torch.stack([a[0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) for a in first.attentions])
    best = divmod(int(to_previous.argmax()), first.num_heads)
    assert best != (0, 0) and w.last_axes.get_title() == f"layer {best[0]}, head {best[1]}"
    assert (layer.value, head.value) == best
    dropdown.value, layer.value, head.value = 1, 5, 11  # fires the callbacks in the kernel
    assert w.last_axes.get_title() == "layer 5, head 11" and layer.max == 5 and head.max == 11
    assert [t.get_text() for t in w.last_axes.get_xticklabels()][:3] == ["[CLS]", "a", "dog"]
    plt.close("all")
    with pytest.raises(ValueError, match="at least one sentence"):
        widgets.attention_explorer(model, tokenizer, [])
    with pytest.raises(ValueError, match="layer=6, head=0 is outside"):
        widgets.attention_explorer(model, tokenizer, ["A dog."], layer=6, head=0)
    w = widgets.attention_explorer(model, tokenizer, ["A dog."], layer=2, head=7)
    assert w.last_axes.get_title() == "layer 2, head 7"
    plt.close("all")


def test_check_attention_entropy_accepts_right_and_names_wrong():
    def right(a, mask):
        e = -(a * torch.log(a.clamp_min(1e-30))).sum(-1)
        w = mask.float()[None, :, None, :]
        return (e * w).sum((1, 3)) / w.sum((1, 3))

    checks.check_attention_entropy(right)
    with pytest.raises(AssertionError, match="padding queries"):
        checks.check_attention_entropy(lambda a, m: (-(a * torch.log(a.clamp_min(1e-30)))).sum(-1).mean((1, 3)))
    with pytest.raises(AssertionError, match="nan"):
        checks.check_attention_entropy(lambda a, m: (-(a * torch.log(a))).sum(-1).mean((1, 3)))


def test_corpus_statistics_stream_batches_and_weight_by_tokens(model, tokenizer, batches):
    """Batches of different padding combine as one corpus: every real token counts once, wherever it sits."""
    one_batch = viz.head_statistics(batches, *special_ids(tokenizer))
    streamed = viz.corpus_head_statistics(model, tokenizer, SENTENCES, batch_size=2)
    for k in viz.HEAD_STATISTICS:
        # other batches, so other padding: the attention differs by fp32 noise (~1e-6), averaged into float64
        np.testing.assert_allclose(streamed[k], one_batch[k], atol=1e-5, rtol=0, err_msg=k)
