"""NSP pairs and dynamic masking on real text (Gutenberg, Google's sample_text.txt) with the real uncased vocab.

Statistical bounds: a share k/n with expectation p is accepted within 5 binomial standard deviations,
|k/n - p| <= 5 * sqrt(p (1 - p) / n). A correct implementation fails with probability < 1e-6 (the seeds are
fixed, so the tests are deterministic); a 1-point bias in the 80/10/10 split on ~4e4 targets is ~5 sd away.
"""
import math

import pytest
import torch

from minibert import pretraining as P
from minibert.assets import data_path, vocab_path
from minibert.course import checks
from minibert.tokenization import BertTokenizer


def within(k: int, n: int, p: float) -> bool:
    return abs(k / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer(vocab_path("bert-base-uncased"))


@pytest.fixture(scope="module")
def docs(tok):
    raw = P.read_documents(data_path("lm_text", "gutenberg_austen_chesterton_sentences.txt"), max_documents=60)
    return P.tokenize_documents(raw, tok)


@pytest.fixture(scope="module")
def dataset(docs, tok):
    return P.PretrainingDataset(P.create_training_instances(docs, 128, 0.1, 1, seed=1, tokenizer=tok), tok)


def test_read_documents_sample_text():
    d = P.read_documents(data_path("lm_text", "sample_text.txt"))
    assert len(d) == 3
    assert d[0][0].startswith("This text is included to make sure Unicode is handled properly")
    assert sum(map(len, d)) == 31  # 33 lines, 2 of them blank document separators


@pytest.mark.parametrize("max_len", [16, 40, 128])
def test_pairs_never_longer_than_asked_and_well_formed(docs, tok, max_len):
    inst = P.create_training_instances(docs[:20], max_len, 0.1, 1, seed=3, tokenizer=tok)
    assert len(inst) > 50
    for x in inst:
        assert len(x.tokens) <= max_len
        assert x.tokens[0] == "[CLS]" and x.tokens[-1] == "[SEP]" and x.tokens.count("[SEP]") == 2
        sep = x.tokens.index("[SEP]")
        assert 1 < sep < len(x.tokens) - 2  # A and B both non-empty
        assert x.segment_ids == [0] * (sep + 1) + [1] * (len(x.tokens) - sep - 1)


def _find(hay: list[str], needle: list[str]) -> int:
    """Token offset of `needle` as a contiguous run inside `hay`, or -1."""
    s, n = "\x00" + "\x00".join(hay) + "\x00", "\x00" + "\x00".join(needle) + "\x00"
    i = s.find(n) if needle else -1
    return -1 if i < 0 else s[:i + 1].count("\x00") - 1


def test_isnext_b_follows_a_in_the_same_document(docs, tok):
    # short targets (short_seq_prob=1) far below max_seq_length: most pairs need no truncation
    inst = P.create_training_instances(docs[:30], 512, 1.0, 1, seed=0, tokenizer=tok)
    streams = [[t for sent in d for t in sent] for d in docs[:30]]
    checked = 0
    for x in inst:
        if x.is_random_next or len(x.tokens) == 512:  # truncated pairs are cut at a random end
            continue
        sep = x.tokens.index("[SEP]")
        a, b = x.tokens[1:sep], x.tokens[sep + 1:-1]
        assert any(_find(s, a + b) >= 0 for s in streams), "IsNext: B must directly follow A in one document"
        checked += 1
    assert checked > 20


def test_notnext_share_near_half(docs, tok):
    inst = P.create_training_instances(docs, 128, 0.1, 3, seed=7, tokenizer=tok)
    free = [x for x in inst if not x.forced_random_next]  # one-sentence chunks are always NotNext (Google)
    k = sum(x.is_random_next for x in free)
    assert len(free) > 3000 and within(k, len(free), 0.5), (k, len(free))
    assert all(x.is_random_next for x in inst if x.forced_random_next)


def test_truncation_trims_the_longer_side_from_both_ends():
    import random
    rng = random.Random(0)
    fronts = backs = 0
    for _ in range(200):
        a, b = list("abcdefghij"), list("xyz")
        P.truncate_seq_pair_at_random_ends(a, b, 8, rng)
        assert b == list("xyz") and len(a) == 5
        fronts += a[0] != "a"
        backs += a[-1] != "j"
    assert fronts > 150 and backs > 150  # each of 5 cuts picks an end with p=1/2: P(end untouched)=1/32


def _batch(dataset, n, collator):
    return collator([dataset[i % len(dataset)] for i in range(n)])


def test_masking_proportions_on_real_text(dataset, tok):
    col = P.PretrainingCollator(tok, max_predictions_per_seq=1000, seed=0)
    mask_id = tok.vocab["[MASK]"]
    targets = kept = masked = random_ = cand = 0
    expected = 0
    for start in range(0, 2048, 256):
        items = [dataset[(start + i) % len(dataset)] for i in range(256)]
        b = col(items)
        orig = torch.nn.utils.rnn.pad_sequence([it["input_ids"] for it in items], batch_first=True)
        t = b["masked_lm_labels"] != -100
        lengths = b["attention_mask"].sum(1)
        expected += torch.round(lengths.double() * 0.15).clamp(min=1).sum().item()
        cand += (lengths - 3).sum().item()
        targets += t.sum().item()
        masked += (b["input_ids"][t] == mask_id).sum().item()
        kept += (b["input_ids"][t] == orig[t]).sum().item()
        random_ += ((b["input_ids"][t] != mask_id) & (b["input_ids"][t] != orig[t])).sum().item()
    assert cand >= 100_000
    assert targets == expected  # exactly round(0.15 * length) per sequence, as Google
    assert abs(targets / cand - 0.15) < 0.005  # length counts [CLS]/[SEP]: a hair above 15% of candidates
    assert within(masked, targets, 0.8), masked / targets
    assert within(kept, targets, 0.1), kept / targets  # (+1/V from random draws equal to the original)
    assert within(random_, targets, 0.1), random_ / targets


def test_special_tokens_and_padding_never_targets(dataset, tok):
    col = P.PretrainingCollator(tok, max_predictions_per_seq=200, masked_lm_prob=0.9, seed=1)
    items = [dataset[i] for i in range(300)]
    b = col(items)
    orig = torch.nn.utils.rnn.pad_sequence([it["input_ids"] for it in items], batch_first=True)
    t = b["masked_lm_labels"] != -100
    special = (orig == tok.vocab["[CLS]"]) | (orig == tok.vocab["[SEP]"]) | (b["attention_mask"] == 0)
    assert special.sum() > 600 and not (t & special).any()
    assert torch.equal(b["input_ids"][special], orig[special])
    assert torch.equal(b["masked_lm_labels"][t], orig[t])
    assert torch.equal(b["input_ids"][~t], orig[~t])
    assert set(b["masked_lm_labels"].unique().tolist()) >= {-100}
    assert b["next_sentence_label"].tolist() == [int(x.is_random_next) for x in dataset.instances[:300]]


def test_max_predictions_per_seq(dataset, tok):
    b = _batch(dataset, 200, P.PretrainingCollator(tok, max_predictions_per_seq=5, seed=0))
    per_row = (b["masked_lm_labels"] != -100).sum(1)
    assert per_row.max().item() == 5 and per_row.min().item() >= 1


def test_same_seed_same_batch_and_fresh_masks_each_call(dataset, tok):
    c1, c2 = (P.PretrainingCollator(tok, seed=42) for _ in range(2))
    b1, b2 = _batch(dataset, 64, c1), _batch(dataset, 64, c2)
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k
    again = _batch(dataset, 64, c1)  # dynamic masking: a new call draws new masks
    assert not torch.equal(again["masked_lm_labels"], b1["masked_lm_labels"])
    other = _batch(dataset, 64, P.PretrainingCollator(tok, seed=43))
    assert not torch.equal(other["input_ids"], b1["input_ids"])
    fixed = P.fixed_batches(P.PretrainingDataset(dataset.instances[:70], tok), c1, 32, seed=5)
    fixed2 = P.fixed_batches(P.PretrainingDataset(dataset.instances[:70], tok), c2, 32, seed=5)
    assert [len(f["input_ids"]) for f in fixed] == [32, 32, 6]
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(fixed, fixed2))


def test_whole_word_masking_masks_whole_words(dataset, tok):
    col = P.PretrainingCollator(tok, whole_word_mask=True, max_predictions_per_seq=20, seed=0)
    items = [dataset[i] for i in range(400)]
    b = col(items)
    t = b["masked_lm_labels"] != -100
    start = torch.nn.utils.rnn.pad_sequence([it["word_start"] for it in items], batch_first=True,
                                            padding_value=True)
    # a continuation piece (##x) is a target exactly when the piece before it is (unless truncation left it
    # orphaned right after [CLS]/[SEP]: then it is a word of its own)
    prev_special = b["input_ids"][:, :-1].eq(tok.vocab["[CLS]"]) | b["input_ids"][:, :-1].eq(tok.vocab["[SEP]"])
    cont = ~start[:, 1:] & ~prev_special
    assert torch.equal(t[:, 1:][cont], t[:, :-1][cont])
    n_multi = (t[:, 1:] & cont).sum().item()
    assert n_multi > 20  # the test saw multi-piece words being masked
    budget = torch.round(b["attention_mask"].sum(1).double() * 0.15).clamp(min=1, max=20)
    assert ((t.sum(1) <= budget) & (t.sum(1) >= budget - 6)).all()


def test_check_masking_accepts_ours_and_names_mistakes():
    checks.check_masking(lambda ids, sp, V, m, g: P.mask_tokens(ids, sp, V, m, g))

    def masks_specials(ids, sp, V, m, g):
        return P.mask_tokens(ids, torch.zeros_like(sp), V, m, g)

    with pytest.raises(AssertionError, match="special token"):
        checks.check_masking(masks_specials)

    def all_mask(ids, sp, V, m, g):  # forgets the 10% random / 10% unchanged
        inputs, labels = P.mask_tokens(ids, sp, V, m, g)
        return torch.where(labels != -100, torch.full_like(ids, m), ids), labels

    with pytest.raises(AssertionError, match=r"replaced by \[MASK\]: .* expected 0.8"):
        checks.check_masking(all_mask)


def test_errors_name_the_fix(docs, tok):
    with pytest.raises(ValueError, match="max_seq_length=4 leaves no room"):
        P.create_training_instances(docs, max_seq_length=4, tokenizer=tok)
    with pytest.raises(TypeError, match="pass tok, not tok.vocab"):
        P.PretrainingCollator({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2})


def test_losses_metrics_and_unigram_baseline(dataset, tok):
    col = P.PretrainingCollator(tok, seed=0)
    batches = P.fixed_batches(P.PretrainingDataset(dataset.instances[:64], tok), col, 32)
    base = P.unigram_baseline(dataset, batches, tok.vocab)
    labels = torch.cat([b["masked_lm_labels"].reshape(-1) for b in batches])
    labels = labels[labels >= 0]
    top = torch.bincount(labels).argmax().item()
    assert tok.convert_ids_to_tokens([top])[0] in {",", ".", "the"}
    assert 0.03 < base["mlm_accuracy"] < 0.2 and 100 < base["perplexity"] < 3000
    # a perfect predictor: accuracy 1 and loss ~0; ignored positions do not count
    lab = batches[0]["masked_lm_labels"]
    scores = torch.full((*lab.shape, len(tok.vocab)), -30.0)
    scores.scatter_(2, lab.clamp(min=0)[..., None], 30.0)
    nsp = torch.nn.functional.one_hot(batches[0]["next_sentence_label"], 2).float() * 60 - 30
    r = P.pretraining_losses(scores, nsp, lab, batches[0]["next_sentence_label"])
    assert r["mlm_correct"] == r["mlm_count"] == (lab != -100).sum() and r["mlm_loss"] < 1e-6
    assert r["nsp_correct"] == 32


def _tiny_pretraining_run(dataset, tok):
    """A seeded 1-layer BertForPreTraining, 16 training pairs, their collator and those pairs as one fixed batch."""
    from minibert import BertConfig, BertForPreTraining
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok.vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    small = P.PretrainingDataset(dataset.instances[:16], tok)
    col = P.PretrainingCollator(tok, seed=0)
    return BertForPreTraining(cfg), small, col, P.fixed_batches(small, col, 16)


def test_pretrain_loop_learns_a_fixed_batch(dataset, tok):
    from minibert import BertAdam
    model, small, col, ev = _tiny_pretraining_run(dataset, tok)
    before = P.evaluate_pretraining(model, ev)
    opt = BertAdam(model.parameters(), lr=3e-3, warmup=0.1, t_total=40, weight_decay=0.0)
    seen = []

    def watch(event, state):  # a callback of train(): it sees the log pretrain fills, held-out metrics included
        if event == "step" and state.global_step % 10 == 0:
            seen.append((state.global_step, sum("eval_mlm_loss" in r for r in state.log_history)))

    hist = P.pretrain(model, small, col, opt, num_steps=40, batch_size=16, eval_batches=ev, eval_every=20,
                      callbacks=[watch])
    assert hist.step == list(range(1, 41)) and seen == [(10, 0), (20, 1), (30, 1), (40, 2)]
    assert [s for s, _ in hist.evals] == [20, 40]
    assert all(0 <= r["mlm_accuracy"] <= 1 and 0 <= r["nsp_accuracy"] <= 1 for r in hist.log_history if "loss" in r)
    # the peak lr comes one warmup step after the ramp: within 10% of the base lr
    assert hist.lr[0] == 0.0 and max(hist.lr) == pytest.approx(3e-3, rel=0.1)
    after = hist.evals[-1][1]
    assert after["mlm_loss"] < before["mlm_loss"] - 1.0
    # perplexity is exp(mean loss) in float64: rounding only
    assert after["perplexity"] == pytest.approx(math.exp(after["mlm_loss"]))


def test_pretrain_phases_continue_one_history(dataset, tok):
    """BERT's short-then-long phases with one optimizer: the second call's steps, evaluations and seconds
    continue the first's, and the schedule runs on (t_total spans both)."""
    from minibert import BertAdam
    model, small, col, ev = _tiny_pretraining_run(dataset, tok)
    opt = BertAdam(model.parameters(), lr=1e-3, warmup=0.1, t_total=30)
    hist = P.pretrain(model, small, col, opt, num_steps=20, batch_size=16, eval_batches=ev, eval_every=15)
    first_seconds = hist.seconds
    same = P.pretrain(model, small, col, opt, num_steps=10, batch_size=8, eval_batches=ev, eval_every=15,
                      history=hist)
    assert same is hist and hist.step == list(range(1, 31))
    assert [s for s, _ in hist.evals] == [15, 20, 30]  # every 15 global steps, and at the end of each call
    assert hist.seconds > first_seconds
    assert hist.lr[-1] == pytest.approx(1e-3 * (1 - 29 / 30) / 0.9)  # warmup_linear at step 29 of 30, not of 10


def test_held_out_metrics_read_off_the_heads_equal_the_full_scores(dataset, tok):
    """evaluate_pretraining lets the model compute its loss (scores at masked positions only) and reads the
    metrics off its heads: they must equal what the full (batch, seq, vocab) scores give."""
    from minibert import BertConfig, BertForPreTraining
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok.vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    model = BertForPreTraining(cfg).eval()
    batches = P.fixed_batches(P.PretrainingDataset(dataset.instances[:20], tok), P.PretrainingCollator(tok), 8)
    got = P.evaluate_pretraining(model, batches)
    scores, nsp, labels, next_labels = [], [], [], []
    with torch.no_grad():
        for b in batches:
            s, n = model(b["input_ids"], b["token_type_ids"], b["attention_mask"])  # no labels: full scores
            scores.append(s[b["masked_lm_labels"] != -100])
            labels.append(b["masked_lm_labels"][b["masked_lm_labels"] != -100])
            nsp.append(n)
            next_labels.append(b["next_sentence_label"])
    want = P.pretraining_losses(torch.cat(scores), torch.cat(nsp), torch.cat(labels), torch.cat(next_labels))
    assert got["masked_tokens"] == want["mlm_count"].item() > 100
    # fp32 cross-entropy over a 30522-word vocab, summed per batch in another order: ~1e-6 relative
    assert got["mlm_loss"] == pytest.approx(want["mlm_loss"].item(), rel=1e-5)
    assert got["nsp_loss"] == pytest.approx(want["nsp_loss"].item(), rel=1e-5)
    assert got["mlm_accuracy"] == want["mlm_correct"].item() / want["mlm_count"].item()
    assert got["nsp_accuracy"] == want["nsp_correct"].item() / 20


def test_read_book_documents_uses_the_corpus_sentence_splitter():
    from minibert.assets import gutenberg_documents
    docs = P.read_book_documents(data_path("gutenberg", "shakespeare-hamlet.txt"), sentences_per_document=30)
    assert len(docs) > 50 and all(len(d) == 30 for d in docs[:-1])
    assert not docs[0][0].startswith("[")  # the NLTK title line is dropped
    emma = P.read_book_documents(data_path("gutenberg", "austen-emma.txt"), sentences_per_document=10 ** 6)
    text = data_path("gutenberg", "austen-emma.txt").read_text(encoding="utf-8")
    assert emma[0] == [s for doc in gutenberg_documents(text) for s in doc]  # same sentences as the corpus


def test_mlm_accuracy_by_input_splits_targets_by_what_the_model_saw(dataset, tok):
    """A model that copies its input is right on every unchanged target, wrong on every [MASK], and right on a
    random-token target only when the random id happens to be the label: the split notebook 07 shows."""
    col = P.PretrainingCollator(tok, seed=3)
    batches = P.fixed_batches(P.PretrainingDataset(dataset.instances[:96], tok), col, 32)

    class Copy(torch.nn.Module):
        """Computes its loss as BertForPreTraining does (scores at the masked positions only), from one-hot
        scores of the token it was shown."""

        def __init__(self):
            super().__init__()
            self.cls = torch.nn.Module()
            self.cls.predictions, self.cls.seq_relationship = torch.nn.Identity(), torch.nn.Identity()
            self.dummy = torch.nn.Parameter(torch.zeros(()))  # a device to read

        def forward(self, input_ids, token_type_ids, attention_mask, masked_lm_labels, next_sentence_label):
            shown = input_ids[masked_lm_labels >= 0]
            scores = self.cls.predictions(torch.nn.functional.one_hot(shown, len(tok.vocab)).float())
            nsp = self.cls.seq_relationship(torch.zeros(input_ids.shape[0], 2))
            return P.pretraining_losses(scores, nsp, masked_lm_labels, next_sentence_label)["loss"]

    r = P.mlm_accuracy_by_input(Copy(), batches, tok.mask_token_id, device="cpu")
    labels = torch.cat([b["masked_lm_labels"].reshape(-1) for b in batches])
    inputs = torch.cat([b["input_ids"].reshape(-1) for b in batches])
    target = labels >= 0
    assert sum(n for _, n in r.values()) == int(target.sum())
    assert r["[MASK]"] == (0.0, int((target & (inputs == tok.mask_token_id)).sum()))
    assert r["unchanged"] == (1.0, int((target & (inputs == labels)).sum()))
    assert r["random token"][0] == 0.0  # a random id equal to its label counts as unchanged
    # the 80/10/10 split: each share within 5 binomial sd of its expectation
    n = int(target.sum())
    assert within(r["[MASK]"][1], n, 0.8) and within(r["unchanged"][1] + r["random token"][1], n, 0.2)


def test_pretrain_logs_every_logging_steps_with_the_accuracies_of_that_update(dataset, tok):
    """logging_steps=2 used to raise IndexError (the callback read log_history[-1] at update 1). The records it
    keeps are those of a run logging every update: each with its own batch's MLM / NSP accuracy."""
    from minibert import BertAdam
    from minibert.training import TrainingArguments

    logs = {}
    for every in (1, 2):
        model, small, col, ev = _tiny_pretraining_run(dataset, tok)
        opt = BertAdam(model.parameters(), lr=1e-3, warmup=0.1, t_total=10)
        args = TrainingArguments(max_steps=10, num_train_epochs=10, train_batch_size=8, logging_steps=every,
                                 seed=0, device="cpu", progress=False)
        logs[every] = P.pretrain(model, small, col, opt, num_steps=10, args=args, eval_batches=ev, eval_every=5)
    assert logs[2].step == [2, 4, 6, 8, 10] and logs[1].step == list(range(1, 11))
    every_other = [r for r in logs[1].log_history if "loss" in r and r["step"] % 2 == 0]
    assert [r for r in logs[2].log_history if "loss" in r] == every_other  # same run, every other record
    assert logs[2].evals == logs[1].evals and [s for s, _ in logs[2].evals] == [5, 10]


def test_held_out_batches_are_not_counted_as_training_batches(dataset, tok):
    """The held-out forward passes go through the model's hooks too; the training record after an evaluation
    holds its own batch's accuracy, as in a run without evaluations."""
    from minibert import BertAdam

    runs = []
    for eval_batches in (None, "held out"):
        model, small, col, ev = _tiny_pretraining_run(dataset, tok)
        opt = BertAdam(model.parameters(), lr=1e-3, warmup=0.1, t_total=6)
        runs.append(P.pretrain(model, small, col, opt, num_steps=6, batch_size=8, eval_every=2,
                               eval_batches=ev if eval_batches else None, device="cpu"))
    assert runs[1].mlm_accuracy == runs[0].mlm_accuracy and runs[1].nsp_accuracy == runs[0].nsp_accuracy
    assert [s for s, _ in runs[1].evals] == [2, 4, 6] and runs[0].evals == []


def test_whole_word_masking_can_choose_word_0():
    """Word ids from 0, as a tokenizer's word_ids() gives them (None -> -1 at [CLS] and [SEP]): word 0 is a word
    like the others. [CLS] w0 w1 ##w1 w2 [SEP]: 6 tokens, 15% -> one target a row when the budget is 1."""
    B = 4000
    ids = torch.tensor([[101, 10, 11, 12, 13, 102]]).repeat(B, 1)
    special = torch.tensor([[True, False, False, False, False, True]]).repeat(B, 1)
    word_ids = torch.tensor([[-1, 0, 1, 1, 2, -1]]).repeat(B, 1)
    _, labels = P.mask_tokens(ids, special, 200, 103, torch.Generator().manual_seed(0), masked_lm_prob=1 / 3,
                              word_ids=word_ids)  # budget round(6 / 3) = 2 targets a row
    t = labels != -100
    assert not t[:, [0, 5]].any() and torch.equal(t[:, 2], t[:, 3])  # no special; ##w1 goes with w1
    # words in random order while they fit: w1 (2 pieces) alone, or w0 and w2 together, or w0 or w2 then stop
    first = t[:, 1]
    assert within(int(first.sum()), B, 1 / 2), first.float().mean()  # w0 is a target when drawn before w1
    assert within(int(t[:, 4].sum()), B, 1 / 2)  # as often as w2, the same kind of word
    with pytest.raises(ValueError, match=r"word_ids\[0, 1\] = -1: a token that is not special needs a word id"):
        P.mask_tokens(ids[:1], special[:1], 200, 103, word_ids=torch.tensor([[-1, -1, 1, 1, 2, -1]]))


def test_pairs_take_their_special_tokens_from_the_tokenizer(docs):
    other = BertTokenizer(vocab_path("bert-base-uncased"), cls_token="[unused0]", sep_token="[unused1]")
    inst = P.create_training_instances(docs[:5], 64, 0.1, 1, seed=3, tokenizer=other)
    assert all(x.tokens[0] == "[unused0]" and x.tokens[-1] == "[unused1]" and x.tokens.count("[unused1]") == 2
               and "[CLS]" not in x.tokens and "[SEP]" not in x.tokens for x in inst)


def test_a_dry_run_evaluates_two_held_out_batches_and_stops_pretraining_early(dataset, tok, monkeypatch):
    from minibert import BertAdam, runtime

    model, small, col, ev = _tiny_pretraining_run(dataset, tok)
    batches = P.fixed_batches(small, col, 4)  # 4 batches of 4
    full = P.evaluate_pretraining(model, batches)
    first_two = P.evaluate_pretraining(model, batches[:runtime.DRY_RUN_EVAL_BATCHES])
    monkeypatch.setenv(runtime.DRY_RUN_ENV, "1")
    assert P.evaluate_pretraining(model, batches) == first_two != full
    by_input = P.mlm_accuracy_by_input(model, batches, tok.mask_token_id)
    assert sum(n for _, n in by_input.values()) == first_two["masked_tokens"]
    hist = P.pretrain(model, small, col, BertAdam(model.parameters(), lr=1e-3), num_steps=10, batch_size=4,
                      eval_batches=batches, eval_every=5)
    assert hist.step == [1, 2] and [s for s, _ in hist.evals] == [2]  # the final model is still evaluated
