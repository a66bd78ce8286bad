"""Every exercise of the registry: its empty stub gets "Not yet", its solution "passed", and typical wrong answers
each get the message that names their mistake; nothing the learner's function raises escapes the runner; every
checker in course/checks.py is registered."""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minibert import course, memory
from minibert.course import checks, solutions
from minibert.course.exercises import EXERCISES
from minibert.data import collate
from minibert.metrics import roc_auc

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(EXERCISES)


def stub_of(name: str):
    """The registry's empty stub, compiled as the notebook cell would define it."""
    exercise = EXERCISES[name]
    namespace: dict = {}
    exec(compile(exercise.stub(), f"<stub {name}>", "exec"), namespace)  # noqa: S102 - our own stub text
    return namespace[exercise.function]


def empty_body(name: str):
    """The stub with `pass` for a body: it returns None, and the runner must still say "Not yet" calmly."""
    exercise = EXERCISES[name]
    namespace: dict = {}
    exec(compile(f"{exercise.signature}\n    pass\n", f"<pass {name}>", "exec"), namespace)  # noqa: S102
    return namespace[exercise.function]


# ----------------------------------------------------------------------------------------------------------
# The registry and the runner
# ----------------------------------------------------------------------------------------------------------

def test_every_checker_is_registered():
    checkers = {name for name, f in inspect.getmembers(checks, inspect.isfunction)
                if name.startswith("check_") and f.__module__ == checks.__name__}
    registered = {e.check.__name__ for e in EXERCISES.values()}
    assert len(checkers) >= 20, checkers  # the walk found the checkers
    assert checkers - registered == set(), f"checkers without a registry entry: {sorted(checkers - registered)}"


def test_every_entry_names_a_notebook_and_a_stub_shaped_like_its_solution():
    for name, exercise in EXERCISES.items():
        assert (NOTEBOOKS / f"{exercise.notebook}.ipynb").is_file(), (name, exercise.notebook)
        stub_params = list(inspect.signature(stub_of(name)).parameters)
        solution_params = list(inspect.signature(exercise.solution).parameters)[:len(stub_params)]
        assert stub_params == solution_params, (name, stub_params, solution_params)
        assert exercise.solution.__module__ == solutions.__name__
    covered = {e.notebook[:2] for e in EXERCISES.values()}
    assert covered == {f"{i:02d}" for i in range(0, 18)}, f"notebooks without an exercise: {covered}"


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_yet(name, capsys):
    course.exercise(name, stub_of(name))
    out = capsys.readouterr().out
    function = EXERCISES[name].function
    assert out.startswith(f"Not yet: {function} is still empty"), out
    assert f"Stuck? `course.solution('{name}')` shows one." in out


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_body_returning_none_is_not_yet_without_a_traceback(name):
    assert course.verdict(name, empty_body(name)).startswith("Not yet: ")


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(name, capsys):
    course.exercise(name, EXERCISES[name].solution)
    assert capsys.readouterr().out == f"{name}: passed\n"


@pytest.mark.parametrize("name", NAMES)
def test_what_the_learners_function_raises_is_reported_not_raised(name):
    def raises(*args, **kwargs):
        raise ValueError("shapes do not match")

    result = course.verdict(name, raises)
    assert result.startswith("Not yet: ") and "your function raised ValueError: shapes do not match" in result, result


def test_the_runner_says_what_to_pass_and_which_names_exist(capsys):
    assert course.verdict("attention", 3.0).startswith("Not yet: pass the function itself, "
                                                       "course.exercise('attention', my_attention)")
    with pytest.raises(KeyError, match=r"no exercise named 'atention'; the exercises are \['attention', 'attention_"):
        course.exercise("atention", solutions.attention)
    course.solution("attention")
    out = capsys.readouterr().out
    assert out.startswith("# 02 · scaled dot-product attention with a padding mask\ndef attention(q: torch.Tensor")
    assert "softmax" in out


def test_an_error_of_the_checker_reading_the_answer_is_not_yet():
    result = course.verdict("mlm_loss", lambda scores, labels: "0.5")  # a string where a tensor belongs
    assert result.startswith("Not yet: ") and "scalar tensor" in result, result

# ----------------------------------------------------------------------------------------------------------
# Typical wrong answers, each with the message that names its cause
# ----------------------------------------------------------------------------------------------------------

def _wordpiece_shortest_first(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _attention_with(scale=True, mask_axis="keys"):
    def attention(q, k, v, mask=None):
        scores = q @ k.transpose(-1, -2) / (math.sqrt(q.shape[-1]) if scale else 1.0)
        if mask is not None and mask_axis == "keys":
            scores = scores + (1.0 - mask[:, None, None, :].float()) * -10000.0
        if mask is not None and mask_axis == "queries":
            scores = scores + (1.0 - mask[:, None, :, None].float()) * -10000.0
        probs = scores.softmax(-1)
        return probs @ v, probs
    return attention


def _attention_filling_queries(fill):
    """A mask written as notebook 03 writes it (masked_fill with finfo.min, or -inf) on the query axis."""
    def attention(q, k, v, mask=None):
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, :, None] == 0, fill)
        probs = scores.softmax(-1)
        return probs @ v, probs
    return attention


def _layer_with(**mistake):
    return lambda layer, x, mask: checks._layer_variant(layer, x, mask, **mistake)


def _layer_filling(axis, fill):
    """One BertLayer written by hand, its mask filled with ``fill`` on the queries, the keys or nowhere."""
    def my_layer(layer, x, mask):
        sa, (B, S, H) = layer.attention.self, x.shape
        A = sa.num_attention_heads
        q, k, v = (m(x).view(B, S, A, H // A).transpose(1, 2) for m in (sa.query, sa.key, sa.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(H // A)
        where = {"queries": mask[:, None, :, None] == 0, "keys": mask[:, None, None, :] == 0, "none": None}[axis]
        scores = scores if where is None else scores.masked_fill(where, fill)
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, H)
        h = layer.attention.output.LayerNorm(layer.attention.output.dense(context) + x)
        return layer.output.LayerNorm(layer.output.dense(F.gelu(layer.intermediate.dense(h))) + h)
    return my_layer


def _mlm_sum(scores, labels):
    labels = labels.masked_fill(labels == -1, -100)
    return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1), reduction="sum")


def _mlm_mean_of_rows(scores, labels):
    labels = labels.masked_fill(labels == -1, -100)
    return torch.stack([F.cross_entropy(s, y) for s, y in zip(scores, labels)]).mean()


def _masking_labels_everywhere(ids, special, vocab_size, mask_id, g):
    inputs, _ = solutions.mask_tokens(ids, special, vocab_size, mask_id, g)
    return inputs, ids.clone()


def _masking_labels_at_every_real_token(ids, special, vocab_size, mask_id, g):
    inputs, _ = solutions.mask_tokens(ids, special, vocab_size, mask_id, g)
    return inputs, ids.masked_fill(special, -100)  # specials skipped, but every other position labelled


def _masking_in_place(ids, special, vocab_size, mask_id, g):
    inputs, labels = solutions.mask_tokens(ids, special, vocab_size, mask_id, g)
    ids[labels != -100] = mask_id
    return inputs, labels


def _bertadam(mistake):
    return lambda p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm: checks._bertadam_mistake(
        p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm, mistake)


def _bertadam_in_place(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm):
    new_p, new_m, new_v = solutions.bertadam_step(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm)
    m.copy_(new_m)
    return new_p, new_m, new_v


def _bertadam_in_place_p(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm):
    new_p, new_m, new_v = solutions.bertadam_step(p, grad, m, v, lr, b1, b2, e, weight_decay, max_grad_norm)
    p.sub_(p - new_p)  # p -= lr * update, as torch optimizers do on parameters
    return p, new_m, new_v


def _train_steps_without(skip):
    def loop(model, batches, optimizer):
        losses = []
        for batch in batches:
            loss = model(**batch)
            loss.backward()
            if skip != "step":
                optimizer.step()
            if skip != "zero_grad":
                optimizer.zero_grad()
            losses.append(loss.item())
        return losses
    return loop


def _collate_fixed(features):
    batch = collate(features, pad_token_id=0)
    return {k: F.pad(v, (0, 8 - v.shape[1])) if v.dim() == 2 else v for k, v in batch.items()}


def _collate_mask_all_ones(features):
    batch = collate(features, pad_token_id=0)
    return {**batch, "attention_mask": torch.ones_like(batch["attention_mask"])}


def _entropy_no_clamp(attn, mask):
    per_query = -(attn * attn.log()).sum(-1)
    real = mask.float()[None, :, None, :]
    return (per_query * real).sum((1, 3)) / mask.sum()


def _entropy_all_queries(attn, mask):
    return (-(attn * attn.clamp_min(1e-30).log()).sum(-1)).mean((1, 3))


def _auc_pairwise(tie):
    def auc(scores, labels):
        pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
        return float(((pos > neg) + tie * (pos == neg)).mean())
    return auc


def _auc_ordinal_ranks(scores, labels):  # ties broken by position instead of sharing their mean rank
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    p = int(labels.sum())
    return float((ranks[labels == 1].sum() - p * (p + 1) / 2) / (p * (len(labels) - p)))


def _entropy_over_queries(attn, mask):  # sums each column (a key over the queries) instead of each row
    per_key = -(attn * attn.clamp_min(1e-30).log()).sum(-2)
    return (per_key * mask.float()[None, :, None, :]).sum((1, 3)) / mask.sum()


def _best_span_without(rule):
    def best(start_logits, end_logits, window, n_best_size, max_answer_length):
        spans, is_max, n = window.token_spans, window.token_is_max_context, len(window.token_spans)
        if rule == "argmax":
            return int(np.argmax(start_logits)), int(np.argmax(end_logits))
        top = None
        for s in range(n):
            for e in range(n):
                too_long = e - s > max_answer_length if rule == "off by one" else e - s + 1 > max_answer_length
                outside = spans[s] is None or (spans[e] is None and rule != "paragraph")
                if outside or e < s or too_long:
                    continue
                if rule != "max context" and not is_max[s]:
                    continue
                if top is None or start_logits[s] + end_logits[e] > start_logits[top[0]] + end_logits[top[1]]:
                    top = (s, e)
        return top
    return best


def _choices(mistake):
    def probs(model, input_ids, token_type_ids, attention_mask):
        batch, choices, seq = input_ids.shape
        flat = [t.reshape(-1, seq) for t in (input_ids, token_type_ids, attention_mask)]
        scores = model.classifier(model.bert(*flat, output_all_encoded_layers=False)[1])
        if mistake == "four":
            return scores.view(-1, 4).softmax(-1)
        if mistake == "transposed":
            return scores.view(choices, batch).t().softmax(-1)
        if mistake == "batch softmax":
            return scores.view(batch, choices).softmax(0)
        return scores.view(batch, choices)  # "logits"
    return probs


def _iob(mistake):
    def convert(tags):
        out = []
        for tag in tags:
            prev = out[-1] if out else "O"
            if mistake == "every I" and tag.startswith("I-"):
                tag = "B-" + tag[2:]
            if mistake == "after O only" and tag.startswith("I-") and prev == "O":
                tag = "B-" + tag[2:]
            out.append(tag)
        return out
    return convert


def _iob_previous_input(tags):
    """The wrap-around slip: the tag before word i read as tags[i - 1], which is the last tag when i = 0."""
    return [("B-" + t[2:] if t.startswith("I-") and tags[i - 1][2:] != t[2:] else t) for i, t in enumerate(tags)]


def _static(mistake):
    def static(num_parameters, optimizer):
        per = {"values": 1, "bytes": 4}["values" if mistake == "values" else "bytes"]
        moments = 1 if mistake == "one moment" and optimizer != "sgd" else (0 if optimizer == "sgd" else 2)
        return {"parameters": per * num_parameters, "gradients": per * num_parameters,
                "optimizer_state": per * moments * num_parameters}
    return static


def _max_batch_first_that_does_not_fit(config, seq_len, memory_bytes):
    batch = 1
    while memory.estimate(config, batch, seq_len).peak <= memory_bytes:
        batch += 1
    return batch


def _predict(mistake):
    @torch.no_grad()
    def predict(model, features, batch_size):
        order = list(range(len(features))) if mistake == "unsorted" else \
            sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        rows = []
        for start in range(0, len(order), batch_size):
            batch = collate([features[i] for i in order[start:start + batch_size]], 0)
            if mistake == "no mask":
                batch.pop("attention_mask")
            rows.append(model(**batch))
        sorted_out = torch.cat(rows)
        if mistake in ("sorted order", "unsorted"):
            return sorted_out
        if mistake == "permutation":
            return sorted_out[torch.tensor(order)]
        out = torch.empty_like(sorted_out)
        out[torch.tensor(order)] = sorted_out
        return out
    return predict


def _raise(err):
    def fn(*args, **kwargs):
        raise err
    return fn


def _count_without(part: str):
    """A parameter count that forgets one part (the pooler, the biases, ...)."""
    def count(config):
        return checks._count_without(config, part)
    return count


WRONG = {
    "parameter_count": [(_count_without("pooler"), r"BERT-Base: .* - the pooler"),
                        (_count_without("biases"), "every linear layer has a bias too"),
                        (_count_without("LayerNorms"), "each LayerNorm has a weight and a bias"),
                        (lambda c: float(solutions.parameter_count(c)), "return the number of weights as an int")],
    "basic_tokenizer": [(str.split, r"differs on input ' \\tHeLLo!how"),
                        (lambda text: solutions.basic_tokenize(text, lower=False), r"differs on input ' \\tHeLLo")],
    "wordpiece": [(_wordpiece_shortest_first, r"differs on input 'unaffable': got \['u', '##n'"),
                  (lambda word, vocab: solutions.wordpiece(word, vocab, max_chars=1000),
                   r"differs on input 'x{101}'.*expected \['\[UNK\]'\]")],
    "attention": [(_attention_with(scale=False), r"did you scale by sqrt\(d\)\?"),
                  (_attention_with(mask_axis="queries"), "the mask is on the wrong axis"),
                  (_attention_with(mask_axis="none"), "the padding mask was not applied"),
                  (_attention_filling_queries(torch.finfo(torch.float32).min), "the mask is on the wrong axis"),
                  (_attention_filling_queries(float("-inf")), r"non-finite .* the mask is on the wrong axis")],
    "bert_layer": [(_layer_with(attention_residual=False), "the residual around attention is missing"),
                   (_layer_with(ffn_residual=False), "the residual around the feed-forward network is missing"),
                   (_layer_with(gelu="tanh"), "tanh GELU"),
                   (_layer_with(mask_axis="queries"), "the mask is on the wrong axis"),
                   (_layer_filling("queries", torch.finfo(torch.float32).min), "the mask is on the wrong axis"),
                   (_layer_filling("queries", float("-inf")), r"non-finite .* the mask is on the wrong axis"),
                   (_layer_filling("none", 0.0), "the padding mask was not applied")],
    "mlm_loss": [(lambda s, y: F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1)),
                  r"\[-1 \(2019 style\) marks ignored positions\] your function raised .* both -1 and -100"),
                 (_mlm_sum, "that is the sum"),
                 (_mlm_mean_of_rows, "a row with nothing labelled gives 0/0")],
    "masking": [(_masking_labels_everywhere, r"labels are set at 100% of the positions"),
                (lambda ids, sp, V, m, g: solutions.mask_tokens(ids, torch.zeros_like(sp), V, m, g), "special token"),
                (_masking_labels_at_every_real_token, r"labels are set at 97% of the positions"),
                (_masking_in_place, "changed its input in place")],
    "bertadam_step": [(_bertadam("bias correction"), "BertAdam has no bias correction"),
                      (_bertadam("eps inside sqrt"), "epsilon goes outside the square root"),
                      (_bertadam("L2 in the gradient"), "not to the gradient"),
                      (_bertadam_in_place, "modified its input m in place"),
                      (_bertadam_in_place_p, "modified its input p in place")],
    "pretraining_loss": [(lambda s, n, y, ny: solutions.mlm_loss(s, y), "MLM loss alone"),
                         (lambda s, n, y, ny: F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1))
                          + F.cross_entropy(n, ny), r"your function raised .*-1 \(2019 style\)")],
    "mlm_accuracy": [(lambda s, y: (s.argmax(-1) == y).float().mean().item(), "divided by all positions"),
                     (lambda s, y: 100 * solutions.mlm_accuracy(s, y), "not a percentage"),
                     (lambda s, y: (s.argmax(-1) == y).float(), "return one number")],
    "perplexity": [(lambda s, y: F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1), reduction="none")
                    [y.reshape(-1) >= 0].exp().mean().item(), r"averaged exp\(loss\)"),
                   (lambda s, y: math.log(solutions.perplexity(s, y)), "mean cross-entropy itself"),
                   (lambda s, y: math.exp(torch.stack([F.cross_entropy(a[b >= 0], b[b >= 0]) for a, b in zip(s, y)
                                                       if (b >= 0).any()]).mean().item()), "per sequence first")],
    "train_steps": [(_train_steps_without("zero_grad"),
                     r"loss at step \d is .*the gradients add up across batches - call optimizer.zero_grad\(\)"),
                    (_train_steps_without("step"), r"the weights never change - call optimizer.step\(\)")],
    "num_update_steps": [(lambda n, b, e: int(n / b) * e, r"fn\(10, 4, 1\) returned 2, expected 3: a partial"),
                         (lambda n, b, e: (n // b + 1) * e, r"returned 3, expected 2: batches that divide")],
    "pad_collate": [(_collate_fixed, r"pad to the longest sequence in the batch"),
                    (_collate_mask_all_ones, "the mask is 1 on every real token and 0 on the padding")],
    "attention_entropy": [(_entropy_no_clamp, "nan: 0 \\* log\\(0\\) must count as 0"),
                          (_entropy_all_queries, "averaged over padding queries too"),
                          (lambda a, m: solutions.attention_entropy(a, m) / math.log(2), r"in bits \(log2\)"),
                          (lambda a, m: -solutions.attention_entropy(a, m), "the sign is flipped"),
                          (_entropy_over_queries, r"you summed over the queries \(dim -2\)")],
    "roc_auc": [(_auc_pairwise(0.0), "ties count 0 in your AUC"), (_auc_pairwise(1.0), "ties count 1 in your AUC"),
                (lambda s, y: 1 - roc_auc(s, y), "that is 1 - AUC"),
                (_auc_ordinal_ranks, "tied scores got different ranks"),
                (lambda s, y: roc_auc(s, y) - 1 / (len(y) - y.sum()), "your ranks start at 0"),
                (lambda s, y: roc_auc(s, y) + (y.sum() + 1) / (2 * (len(y) - y.sum())), r"subtract P\(P\+1\)/2")],
    "best_span": [(_best_span_without("argmax"), r"\[end before start\] .* it ends \(token 8\) before it starts"),
                  (_best_span_without("max context"), "has its max context in another window"),
                  (_best_span_without("paragraph"), r"\[the highest end logit is the final \[SEP\], after the "
                                                    r"paragraph\] .* its end, token 17, is not in the paragraph"),
                  (lambda *args: (lambda span: span and (span[0], span[1] + 1))(solutions.best_span(*args)),
                   r"ends one token late: the end is inclusive"),
                  (_best_span_without("off by one"), r"it is 6 tokens long \(end - start \+ 1\), more than "
                                                     r"max_answer_length=5")],
    "choice_probs": [(_choices("logits"), r"these are the scores \(logits\): apply a softmax over the choices"),
                     (_choices("transposed"), "choices of different questions are mixed"),
                     (_choices("batch softmax"), r"the softmax runs over the batch \(dim 0\)"),
                     (_choices("four"), r"on case: 3 choices - read the number of choices from input_ids.shape")],
    "iob1_to_iob2": [(_iob("every I"), r"tag 1 is 'B-ORG', expected 'I-ORG' \(an I-ORG after B-ORG continues"),
                     (_iob("after O only"), r"tag 2 is 'I-LOC', expected 'B-LOC' \(an I-LOC after B-PER starts a new "
                                            "entity of another type"),
                     (_iob_previous_input, r"tag 0 is 'I-LOC', expected 'B-LOC' .*tags\[i - 1\] at i = 0 is the last")],
    "static_bytes": [(_static("values"), "that counts values, not bytes"),
                     (_static("one moment"), r"optimizer_state: .* \(m and v: two fp32 values per weight\)")],
    "ffn_activation_bytes": [(lambda b, s, h, i: 4 * (b * s * h + b * s * i), "the GELU keeps its input too"),
                             (lambda b, s, h, i: b * s * h + 2 * b * s * i, "that counts values, not bytes")],
    "max_batch_size": [(_max_batch_first_that_does_not_fit, "not the first that does not"),
                       (lambda c, s, m: solutions.max_batch_size(c, s, m) - 1, r"batch \d+ fits too")],
    "bucketed_predict": [(_predict("sorted order"), "your rows are in length order"),
                         (_predict("permutation"), r"in the wrong place .* not out = sorted_out\[order\]"),
                         (_predict("unsorted"), "sort the features by length before cutting batches"),
                         (_predict("no mask"), "pass the attention_mask")],
}
CASES = [(name, fn, message) for name, wrong in WRONG.items() for fn, message in wrong]


def test_every_exercise_has_two_typical_wrong_answers():
    assert set(WRONG) == set(EXERCISES)
    assert all(len(wrong) >= 2 for wrong in WRONG.values())


@pytest.mark.parametrize(("name", "fn", "message"), CASES,
                         ids=[f"{name}-{i}" for name, wrong in WRONG.items() for i in range(len(wrong))])
def test_a_typical_wrong_answer_gets_its_cause(name, fn, message):
    with pytest.raises(AssertionError, match=message):
        EXERCISES[name].check(fn)
    assert course.verdict(name, fn).startswith("Not yet: ")


@pytest.mark.parametrize("fill", [torch.finfo(torch.float32).min, float("-inf"), -10000.0])
def test_a_hand_written_layer_masking_the_keys_passes(fill):
    """The right axis passes with any fill value, so the wrong-axis cases above differ by the axis alone."""
    checks.check_bert_layer(_layer_filling("keys", fill))


def test_the_mistakes_the_checks_recompute_are_really_wrong():
    """Each recomputed wrong answer differs from the right one on some case, or naming it could mislead."""
    g = torch.Generator().manual_seed(0)
    p, grad, m, v = (torch.randn(3, 4, generator=g) for _ in range(4))
    v = v.abs()
    right = solutions.bertadam_step(p, grad * 5, m, v, 0.01, 0.9, 0.999, 1e-3, 0.1, 1.0)
    for mistake in checks._BERTADAM_MISTAKES:
        wrong = checks._bertadam_mistake(p, grad * 5, m, v, 0.01, 0.9, 0.999, 1e-3, 0.1, 1.0 if mistake !=
                                         "always clip" else 100.0, mistake)
        if mistake == "always clip":
            right = solutions.bertadam_step(p, grad * 5, m, v, 0.01, 0.9, 0.999, 1e-3, 0.1, 100.0)
        assert not torch.allclose(wrong[0], right[0]), mistake


def test_ffn_reference_counts_what_memory_counts():
    """The FFN checker's count, read off saved_tensors_hooks, is the memory model's share of one layer."""
    b, s, h, i = 2, 16, 64, 256
    counted = checks.ffn_saved_bytes(b, s, h, i)
    assert counted == 4 * (b * s * h + 2 * b * s * i)
    config = memory.BertConfig(vocab_size=8, hidden_size=h, num_hidden_layers=3, num_attention_heads=4,
                               intermediate_size=i)
    parts = memory.activation_breakdown(config, b, s, attention="sdpa")
    assert parts["GELU input"] == 3 * b * s * i * 4  # one GELU input per layer, as the checker counts it
