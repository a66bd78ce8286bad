"""The fine-tuning loop: step counting, batches, accumulation, exact resume, atomic checkpoints, DDP, errors."""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minibert import runtime
from minibert.course import checks, plots, widgets
from minibert.metrics import accuracy, classification_metrics, confusion_matrix, f1_score, matthews_corrcoef
from minibert.data import collate, encode_examples
from minibert.training import (StopTraining, TrainingArguments, evaluate, length_bucketed_batches, load_checkpoint,
                               num_update_steps, resolve_precision, sequence_classification_metrics, train)


class TinyClassifier(nn.Module):
    """A stand-in for BertForSequenceClassification: embeddings, masked mean, dropout, linear head."""

    def __init__(self, vocab: int = 40, hidden: int = 12, num_labels: int = 2, dropout: float = 0.0):
        super().__init__()
        self.num_labels = num_labels
        self.word = nn.Embedding(vocab, hidden)
        self.types = nn.Embedding(2, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        h = self.word(input_ids) + self.types(token_type_ids)
        m = attention_mask.unsqueeze(-1).float()
        logits = self.classifier(self.dropout(torch.tanh(self.LayerNorm((h * m).sum(1) / m.sum(1)))))
        return F.cross_entropy(logits, labels) if labels is not None else logits


def make_features(n: int = 44, seed: int = 0, vocab: int = 40):
    """Random sequences of 3..20 tokens; label 1 iff token 7 occurs (learnable by the tiny model)."""
    rng = np.random.default_rng(seed)
    feats = []
    for _ in range(n):
        length = int(rng.integers(3, 21))
        ids = rng.integers(1, vocab, size=length).tolist()
        types = [0] * (length // 2) + [1] * (length - length // 2)
        feats.append({"input_ids": ids, "token_type_ids": types, "label": int(7 in ids)})
    return feats


def fresh_model(seed: int = 0, **kw) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(**kw)


def quick_args(**kw) -> TrainingArguments:
    base = dict(learning_rate=5e-2, num_train_epochs=2, train_batch_size=8, warmup_proportion=0.1, seed=3,
                progress=False, device="cpu", bucket_batches=2)
    base.update(kw)
    return TrainingArguments(**base)


def params(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# Step counting and the schedule


def test_num_update_steps_counts_the_partial_batch():
    assert num_update_steps(10, 4, 3) == 9  # 3 batches (4, 4, 2) per epoch; the 2019 int(10/4)*3 gives 6
    assert num_update_steps(8, 4, 3) == 6
    assert num_update_steps(10, 4, 3, max_steps=5) == 5
    assert num_update_steps(10, 4, 3, max_steps=100) == 9


def test_train_makes_exactly_t_total_updates_and_lr_decays_to_zero(caplog):
    feats = make_features(44)
    with caplog.at_level(logging.WARNING, logger="minibert.optimization"):
        res = train(fresh_model(), feats, quick_args(num_train_epochs=3))
    t_total = math.ceil(44 / 8) * 3
    assert res.state.t_total == t_total == res.state.global_step == len(res.state.log_history)
    assert "beyond" not in caplog.text  # no update past t_total
    lrs = [r["lr"] for r in res.state.log_history]
    warm = int(0.1 * t_total) + 1  # updates whose progress is below the warmup fraction
    # the peak lr comes one warmup step after the ramp: within that step's 10% of the base lr
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(5e-2, rel=0.1)
    assert all(a < b for a, b in zip(lrs[:warm - 1], lrs[1:warm]))
    assert all(a > b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    # the last update uses the last positive step of the ramp: lr * (1 - (t-1)/t) / (1 - warmup)
    # float64 schedule arithmetic: equal up to rounding
    assert lrs[-1] == pytest.approx(5e-2 * (1 / t_total) / 0.9, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Batches


def test_length_bucketed_batches_cover_everything_once_and_pad_less():
    lengths = np.random.default_rng(1).integers(5, 120, size=203).tolist()
    batches = length_bucketed_batches(lengths, 16, seed=0, epoch=0, bucket_batches=4)
    assert len(batches) == math.ceil(203 / 16)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert sorted(len(b) for b in batches)[1:] == [16] * (len(batches) - 1)  # only one partial batch
    assert batches == length_bucketed_batches(lengths, 16, seed=0, epoch=0, bucket_batches=4)
    assert batches != length_bucketed_batches(lengths, 16, seed=0, epoch=1, bucket_batches=4)
    plain = length_bucketed_batches(lengths, 16, seed=0, epoch=0, bucket_batches=0)
    padded = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert padded(batches) < 0.75 * padded(plain)


# ---------------------------------------------------------------------------------------------------------------
# Gradient accumulation


@pytest.mark.parametrize("accum", [4, 3])
def test_gradient_accumulation_gives_the_same_updates_as_the_large_batch(accum):
    feats = make_features(44)  # batches of 8, 8, ..., 4: accum=3 splits 8 as 3+3+2 and 4 as 2+1+1
    big = train(fresh_model(), feats, quick_args())
    m = fresh_model()
    small = train(m, feats, quick_args(gradient_accumulation_steps=accum))
    # accumulating changes only the fp32 summation order of losses and gradients (~1e-7)
    np.testing.assert_allclose(small.losses, big.losses, rtol=1e-5, atol=1e-6)
    ref = fresh_model()
    train(ref, feats, quick_args())
    for k, v in params(ref).items():
        # fp32 summation order of the gradients, over 12 updates
        torch.testing.assert_close(m.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.equal(ref.classifier.weight, fresh_model().classifier.weight)  # it did train


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: exact resume, atomic writes


class Boom(RuntimeError):
    pass


def test_resume_after_a_crash_reproduces_the_loss_curve_exactly(tmp_path):
    feats, dev = make_features(44), make_features(12, seed=5)
    args = quick_args(num_train_epochs=3, save_steps=2)  # dropout on: the RNG state must be restored too
    full_model = fresh_model(dropout=0.2)
    full = train(full_model, feats, args, eval_features=dev)

    def crash(event, state):
        if event == "step" and state.global_step == 9:  # mid epoch 2 (6 updates per epoch)
            raise Boom("power cut")

    out = tmp_path / "run"
    with pytest.raises(Boom):
        train(fresh_model(dropout=0.2), feats, quick_args(num_train_epochs=3, save_steps=2, output_dir=str(out)),
              eval_features=dev, callbacks=[crash])
    ckpt = load_checkpoint(out)
    assert ckpt["state"]["global_step"] == 8 and ckpt["state"]["step_in_epoch"] == 2
    assert not (out / "checkpoint.pt.tmp").exists()

    resumed_model = fresh_model(seed=99, dropout=0.2)  # different init: everything must come from the file
    resumed = train(resumed_model, feats, quick_args(num_train_epochs=3, save_steps=2, output_dir=str(out)),
                    eval_features=dev, resume_from=out)
    assert resumed.losses == full.losses  # bit-for-bit, the whole curve
    # the whole log, bit for bit: losses, lr, epochs and the dev metrics after each epoch
    assert resumed.state.log_history == full.state.log_history
    assert [r["step"] for r in full.state.log_history if "eval_accuracy" in r] == [6, 12, 18]
    for k, v in full_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[k], v), k


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    feats = make_features(24)
    out = tmp_path / "run"
    train(fresh_model(), feats, quick_args(num_train_epochs=1, output_dir=str(out)))
    before = load_checkpoint(out)
    real_save = torch.save

    def broken_save(obj, f, *a, **kw):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train(fresh_model(), feats, quick_args(num_train_epochs=1, output_dir=str(out)))
    monkeypatch.setattr(torch, "save", real_save)
    after = load_checkpoint(out)
    assert after["state"] == before["state"]
    for k, v in before["model"].items():
        assert torch.equal(after["model"][k], v)


def test_resume_with_a_different_plan_is_refused(tmp_path):
    feats = make_features(24)
    train(fresh_model(), feats, quick_args(num_train_epochs=1, output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="t_total=3 updates but this run plans 6"):
        train(fresh_model(), feats, quick_args(num_train_epochs=2), resume_from=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------------
# DistributedDataParallel on CPU (gloo, 2 processes)


def assert_same_as_one_process(out):
    """The losses and parameters a distributed run saved equal one process's run with the same global batch."""
    got = torch.load(out)
    ref = fresh_model()
    res = train(ref, make_features(44), quick_args())
    # DDP all-reduces the gradients: fp32 summation order only
    np.testing.assert_allclose(got["losses"], res.losses, rtol=1e-5, atol=1e-6)
    for k, v in ref.state_dict().items():
        # as above, accumulated over 12 updates
        torch.testing.assert_close(got["params"][k], v, rtol=1e-5, atol=1e-6, msg=k)


def _ddp_worker(rank: int, world: int, init_file: str, out_file: str, accum: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = fresh_model()
        res = train(model, make_features(44), quick_args(gradient_accumulation_steps=accum))
        if rank == 0:
            torch.save({"params": model.state_dict(), "losses": res.losses}, out_file)
        dist.barrier()  # rank 1 waits for rank 0's save before the group goes away
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "ddp.pt"
    # 2 processes x 2 accumulation steps: each global batch of 8 is cut in 4 micro-batches of 2
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out), 2), nprocs=2, join=True)
    assert_same_as_one_process(out)


# ---------------------------------------------------------------------------------------------------------------
# Precision, evaluation, live plot


def test_precision_is_resolved_per_device():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be"):
        TrainingArguments(precision="half")


def test_bf16_autocast_trains_on_cpu():
    feats = make_features(24)
    res = train(fresh_model(), feats, quick_args(precision="bf16", num_train_epochs=1),
                eval_features=feats)
    assert res.precision == "bf16" and all(math.isfinite(x) for x in res.losses)


def test_evaluate_keeps_the_order_and_the_metrics_match():
    feats = make_features(30, seed=2)
    model = fresh_model().eval()
    res = evaluate(model, feats, batch_size=7)
    with torch.no_grad():
        for i in (0, 13, 29):
            one = model(**{k: v for k, v in collate([feats[i]], pad_token_id=0).items() if k != "labels"})
            # a padded batch of 7 vs the feature alone: fp32 summation order in the tiny model
            torch.testing.assert_close(res.logits[i], one[0], rtol=1e-5, atol=1e-6)
    labels = [f["label"] for f in feats]
    assert res.metrics["accuracy"] == accuracy(res.preds, labels)
    assert res.metrics["f1"] == f1_score(res.preds, labels)
    logits = torch.stack([res.logits[i] for i in range(30)])
    # fp32 cross-entropy over 30 rows, reduced per batch then averaged: ~1e-7 relative
    assert res.metrics["loss"] == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), rel=1e-5)


def test_training_learns_and_evaluates_every_epoch():
    feats, dev = make_features(120), make_features(60, seed=9)
    plot = widgets.LivePlot(every=5)
    res = train(fresh_model(), feats, quick_args(num_train_epochs=4, learning_rate=0.1), eval_features=dev,
                callbacks=[plot])
    assert [r["epoch"] for r in res.state.log_history if "eval_accuracy" in r] == [1, 2, 3, 4]
    assert len(res.state.epoch_times) == 4
    assert np.mean(res.losses[-5:]) < 0.8 * np.mean(res.losses[:5])
    assert res.eval.metrics["accuracy"] > 0.75
    assert plot.fig is not None and len(plot.fig.axes[0].lines) == 2 and len(plot.fig.axes[1].lines) == 2


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def test_num_labels_that_do_not_match_the_data_are_an_error():
    feats = make_features(20)
    feats[5] = dict(feats[5], label=2, guid="train-5")
    with pytest.raises(ValueError, match=r"example 'train-5' \(batch row \d+\): labels contain 2; expected class "
                                         r"ids in \[0, 2\) .*build the model with num_labels=3"):
        train(fresh_model(), feats, quick_args())
    with pytest.raises(ValueError, match="example 'train-5' .*labels contain 2"):
        train(fresh_model(), [dict(f, guid=f"t{i}") for i, f in enumerate(make_features(20))], quick_args(),
              eval_features=[dict(f, guid=f"train-{i}") for i, f in enumerate(feats)])


def test_empty_splits_are_an_error():
    with pytest.raises(ValueError, match="training split is empty"):
        train(fresh_model(), [], quick_args())
    with pytest.raises(ValueError, match="evaluation split is empty"):
        evaluate(fresh_model(), [])


def test_training_arguments_are_checked_like_bert_config():
    with pytest.raises(ValueError, match="logging_steps must be an int >= 1, got 0"):
        TrainingArguments(logging_steps=0)
    with pytest.raises(ValueError, match="num_train_epochs must be an int >= 1, got 0"):
        TrainingArguments(num_train_epochs=0)
    with pytest.raises(ValueError, match="max_steps must be an int >= 1 or None, got 0"):
        TrainingArguments(max_steps=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainingArguments(schedule="linear")
    with pytest.raises(ValueError, match="gradient_accumulation_steps=16 splits a batch of train_batch_size=8"):
        TrainingArguments(train_batch_size=8, gradient_accumulation_steps=16)


def test_a_callback_can_stop_the_run():
    def stop_at_4(event, state):
        if event == "step" and state.global_step == 4:
            raise StopTraining("budget spent")

    res = train(fresh_model(), make_features(44), quick_args(), eval_features=make_features(8, seed=3),
                callbacks=[stop_at_4])
    assert res.state.global_step == 4 and len(res.losses) == 4 and res.eval is not None


# ---------------------------------------------------------------------------------------------------------------
# One log for every metric, eval_steps, the live plot that draws it


def test_eval_steps_log_the_dev_metrics_of_the_model_at_that_update():
    feats, dev = make_features(44), make_features(20, seed=4)  # 6 updates per epoch, 12 in all
    seen = {}

    def snapshot(event, state):  # what evaluate() says of the model as it is after this update
        if event == "step":
            seen[state.global_step] = evaluate(model, dev, batch_size=5).metrics

    model = fresh_model(dropout=0.2)
    res = train(model, feats, quick_args(eval_steps=5, evaluate_every_epoch=False, logging_steps=2),
                eval_features=dev, callbacks=[snapshot])
    log = res.state.log_history
    evals = [r for r in log if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [5, 10, 12]  # every 5 updates, and the final model
    for r in evals:
        assert {k: r[f"eval_{k}"] for k in seen[r["step"]]} == pytest.approx(seen[r["step"]], rel=1e-6)
    assert evals[0]["epoch"] == pytest.approx(5 / 6) and evals[-1]["epoch"] == 2
    assert [r["step"] for r in log if "loss" in r] == [2, 4, 6, 8, 10, 12]  # logging_steps=2
    assert [r["step"] for r in log] == sorted(r["step"] for r in log)  # one log, in the order it happened
    assert res.eval.metrics == pytest.approx({k[5:]: v for k, v in evals[-1].items() if k.startswith("eval_")})
    assert model.training  # evaluation gave the train mode back


def test_eval_steps_and_epochs_evaluate_an_update_once():
    feats, dev = make_features(44), make_features(20, seed=4)
    res = train(fresh_model(), feats, quick_args(eval_steps=3), eval_features=dev)
    # every 3 updates (3, 6, 9, 12) and every epoch (6, 12): the same model is not scored twice
    assert [r["step"] for r in res.state.log_history if "eval_accuracy" in r] == [3, 6, 9, 12]
    with pytest.raises(ValueError, match="eval_steps must be an int >= 1 or None, got 0"):
        TrainingArguments(eval_steps=0)


def test_live_plot_draws_the_keys_it_is_given_from_the_log():
    feats, dev = make_features(44), make_features(20, seed=4)
    plot = plots.LivePlot(keys=("loss", "lr", ("eval_accuracy", "eval_loss")), every=4,
                          baselines={"eval_accuracy": (0.5, "majority")})
    res = train(fresh_model(), feats, quick_args(eval_steps=4), eval_features=dev, callbacks=[plot])
    loss_ax, lr_ax, dev_ax = plot.fig.axes
    log = res.state.log_history
    assert list(loss_ax.lines[0].get_ydata()) == res.losses and len(loss_ax.lines) == 2  # raw and running mean
    assert list(lr_ax.lines[0].get_ydata()) == [r["lr"] for r in log if "lr" in r]
    assert list(dev_ax.lines[0].get_xdata()) == [4, 6, 8, 12] == [r["step"] for r in log if "eval_accuracy" in r]
    assert list(dev_ax.lines[1].get_ydata()) == [0.5, 0.5]  # the baseline of eval_accuracy
    assert list(dev_ax.lines[2].get_ydata()) == [r["eval_loss"] for r in log if "eval_loss" in r]
    assert widgets.LivePlot is plots.LivePlot  # the old import still works
    means = plots.running_mean([1.0, 3.0, 5.0, 7.0], window=2)
    assert means.tolist() == [1.0, 2.0, 4.0, 6.0]


def test_prepare_training_and_update_step_are_train_without_the_chores():
    """The parts train() is built from, called by hand: the same updates, bit for bit."""
    from minibert.training import prepare_training, update_step

    feats = make_features(44)
    ref = fresh_model(dropout=0.2)
    res = train(ref, feats, quick_args(num_train_epochs=1, gradient_accumulation_steps=2))
    model = fresh_model(dropout=0.2)
    run = prepare_training(model, feats, quick_args(num_train_epochs=1, gradient_accumulation_steps=2))
    batches = length_bucketed_batches([len(f["input_ids"]) for f in feats], 8, seed=3, epoch=0, bucket_batches=2)
    losses = [update_step(run, b).item() for b in batches]
    assert losses == res.losses and run.state.t_total == len(batches) == 6
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_log_history_continues_an_earlier_run():
    feats = make_features(24)  # 3 updates per epoch
    first = train(fresh_model(), feats, quick_args(num_train_epochs=1))
    second = train(fresh_model(), feats, quick_args(num_train_epochs=2), log_history=first.state.log_history)
    assert second.state.log_history is first.state.log_history
    assert [r["step"] for r in second.state.log_history] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert second.state.global_step == 6 and len(second.losses) == 9
    with pytest.raises(ValueError, match="pass one or the other"):
        train(fresh_model(), feats, quick_args(), log_history=[], resume_from="somewhere")


# ---------------------------------------------------------------------------------------------------------------
# Inference loops: eval mode restored; dry run


def test_eval_mode_restores_every_module_even_after_an_error():
    model = fresh_model(dropout=0.5)
    model.train()
    model.dropout.eval()  # a part kept in eval mode on purpose (e.g. a frozen encoder)
    with pytest.raises(RuntimeError, match="boom"):
        with runtime.eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert model.training and model.classifier.training and not model.dropout.training
    model.eval()
    evaluate(model, make_features(10))
    assert not model.training


@pytest.fixture
def dry_run(monkeypatch):
    monkeypatch.setenv(runtime.DRY_RUN_ENV, "1")
    runtime._say_dry_run.cache_clear()  # said once per process: once per test here
    yield
    runtime._say_dry_run.cache_clear()


def test_a_dry_run_stops_training_and_evaluation_early_and_still_saves(dry_run, tmp_path, caplog):
    feats, dev = make_features(44), make_features(30, seed=4)
    out = tmp_path / "run"
    args = quick_args(output_dir=str(out), eval_batch_size=4)
    with caplog.at_level(logging.WARNING, logger="minibert.runtime"):
        res = train(fresh_model(), feats, args, eval_features=dev)
        evaluate(fresh_model(), dev, batch_size=4)
    assert res.state.global_step == runtime.DRY_RUN_UPDATES == len(res.losses) and res.state.t_total == 12
    assert len(res.eval.logits) == len(res.eval.labels) == runtime.DRY_RUN_EVAL_BATCHES * 4  # 2 batches of 4
    assert res.eval.labels.tolist() == [f["label"] for f in dev[:8]]  # the first features, in order
    said = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert said == ["dry run (MINIBERT_DRY_RUN=1): training stops after 2 optimizer updates; its figures mean "
                    "nothing", "dry run (MINIBERT_DRY_RUN=1): evaluation stops after 2 batches; its figures mean "
                    "nothing"]  # once each, however many loops ran
    assert load_checkpoint(out)["state"]["global_step"] == 2
    again = train(fresh_model(seed=5), feats, args, eval_features=dev, resume_from=out)
    assert again.state.global_step == 4 and load_checkpoint(out)["state"]["global_step"] == 4


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def test_metrics_on_a_hand_computed_case():
    preds = [1, 1, 0, 1, 0, 0, 1, 1]
    labels = [1, 0, 0, 1, 1, 0, 1, 0]  # tp=3 fp=2 fn=1 tn=2
    assert accuracy(preds, labels) == 5 / 8
    # exact fractions: approx only absorbs float rounding (rel 1e-6)
    assert f1_score(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert f1_score(preds, labels, pos_label=0) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert confusion_matrix(preds, labels).tolist() == [[2, 2], [1, 3]]
    assert matthews_corrcoef(preds, labels) == pytest.approx((3 * 2 - 2 * 1) / math.sqrt(5 * 4 * 4 * 3))
    assert matthews_corrcoef([1, 1, 1], [0, 1, 1]) == 0.0
    m = classification_metrics(preds, labels)
    assert set(m) == {"accuracy", "f1", "mcc"}
    with pytest.raises(ValueError, match="preds has 2 entries but labels has 3"):
        accuracy([0, 1], [0, 1, 1])


# ---------------------------------------------------------------------------------------------------------------
# The real model, exercise checks, the form


def test_real_bert_classifier_accumulates_exactly_and_evaluates_real_mrpc():
    from minibert import BertConfig, BertForSequenceClassification, BertTokenizer
    from minibert.assets import checkpoint_path
    from minibert.datasets import read_mrpc

    tok = BertTokenizer.from_pretrained(checkpoint_path())
    feats = encode_examples(read_mrpc("dev")[:24], tok, 48, num_labels=2)
    assert all(f["input_ids"][0] == tok.cls_token_id and f["input_ids"][-1] == tok.sep_token_id
               and len(f["input_ids"]) <= 48 for f in feats)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     max_position_embeddings=64)
    models = []
    for accum in (1, 2):
        torch.manual_seed(0)
        m = BertForSequenceClassification(cfg, num_labels=2)
        train(m, feats, quick_args(learning_rate=1e-3, gradient_accumulation_steps=accum))
        models.append(m)
    for k, v in models[0].state_dict().items():
        # accumulation: fp32 summation order only, as in the tiny model
        torch.testing.assert_close(models[1].state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match=r"example 'dev-[0-9-]+' .*labels contain 2; expected class ids in \[0, 2\) "
                                         r".*build the model with num_labels=3"):
        train(models[0], [dict(f, label=i % 3) for i, f in enumerate(feats)], quick_args())


def test_exercise_checks_catch_the_classic_mistakes():
    checks.check_num_update_steps(lambda n, b, e: math.ceil(n / b) * e)
    with pytest.raises(AssertionError, match=r"fn\(10, 4, 1\) returned 2, expected 3"):
        checks.check_num_update_steps(lambda n, b, e: int(n / b) * e)
    checks.check_pad_collate(lambda feats: collate(feats, pad_token_id=0))

    def fixed_length(feats):  # pads to a fixed 8 instead of the batch's longest
        return collate(feats, pad_token_id=0, pad_to_multiple_of=8)

    with pytest.raises(AssertionError, match="input_ids has shape \\(2, 8\\), expected \\(2, 5\\)"):
        checks.check_pad_collate(fixed_length)


_TORCHRUN_SCRIPT = '''
import sys, torch
sys.path.insert(0, {tests!r})
from test_training import fresh_model, make_features, quick_args
from minibert.training import cleanup_distributed, setup_distributed, train
torch.set_num_threads(1)
rank, world = setup_distributed()
assert world == 2, world
model = fresh_model()
res = train(model, make_features(44), quick_args())
if rank == 0:
    torch.save({{"params": model.state_dict(), "losses": res.losses}}, {out!r})
cleanup_distributed()
'''


def test_torchrun_with_setup_distributed_matches_one_process(tmp_path):
    import subprocess
    import sys

    script, out = tmp_path / "run.py", tmp_path / "out.pt"
    script.write_text(_TORCHRUN_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        out_text, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # torchrun and its workers: they share the new session's process group
        raise
    # the whole output of every rank: the cause of a failure is often far above the last lines
    assert proc.returncode == 0, (f"torchrun exited with {proc.returncode}\n--- stdout ---\n{out_text}\n"
                                  f"--- stderr ---\n{err}")
    assert_same_as_one_process(out)


# ---------------------------------------------------------------------------------------------------------------
# One loop for every head: token labels, answer spans, multiple choice (real minibert heads, tiny config)


def tiny_bert_config():
    from minibert import BertConfig

    return BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def task_features(task: str, n: int = 48, seed: int = 0):
    """Learnable toy data: NER-like tags (token id mod 3), the span of the first 7 ... first 9, or which of two
    choices holds a 7."""
    rng = np.random.default_rng(seed)
    feats = []
    for i in range(n):
        ids = rng.integers(10, 40, size=int(rng.integers(6, 15))).tolist()
        if task == "tokens":
            feats.append({"input_ids": ids, "labels": [-100] + [t % 3 for t in ids[1:]]})
        elif task == "spans":
            s = int(rng.integers(1, len(ids) - 3))
            ids[s], ids[s + 2] = 7, 9
            feats.append({"input_ids": ids, "start_positions": s, "end_positions": s + 2})
        else:
            other = rng.integers(10, 40, size=int(rng.integers(4, 12))).tolist()
            ids[int(rng.integers(len(ids)))] = 7
            label = int(rng.integers(2))
            choices = [other, ids] if label == 1 else [ids, other]
            feats.append({"guid": f"swag-{i}", "input_ids": choices, "token_type_ids": [[0] * len(c) for c in choices],
                          "label": label})
    return feats


@pytest.mark.parametrize("task", ["tokens", "spans", "choices"])
def test_one_loop_trains_every_head(task):
    from minibert import BertForMultipleChoice, BertForQuestionAnswering, BertForTokenClassification

    torch.manual_seed(0)
    cfg = tiny_bert_config()
    model = {"tokens": lambda: BertForTokenClassification(cfg, num_labels=3),
             "spans": lambda: BertForQuestionAnswering(cfg),
             "choices": lambda: BertForMultipleChoice(cfg, num_choices=2)}[task]()
    feats, dev = task_features(task), task_features(task, n=10, seed=1)
    metrics = None if task != "choices" else sequence_classification_metrics
    res = train(model, feats, quick_args(learning_rate=3e-3, num_train_epochs=8, train_batch_size=8),
                eval_features=dev, metrics_fn=metrics)
    assert np.mean(res.losses[-6:]) < 0.8 * np.mean(res.losses[:6]), res.losses  # it learns
    if task != "choices":  # found before training, not after the first epoch
        with pytest.raises(ValueError, match="no class label per example, so the default metrics"):
            train(model, feats, quick_args(), eval_features=dev)
    out = res.eval
    lengths = [len(f["input_ids"]) for f in dev]
    if task == "tokens":  # per-token logits cut to each feature's length, in feature order
        assert [tuple(x.shape) for x in out.logits] == [(n, 3) for n in lengths]
        assert [len(y) for y in out.labels] == lengths and out.metrics == {}
    elif task == "spans":  # (start, end) logits per feature
        assert [(tuple(s.shape), tuple(e.shape)) for s, e in out.logits] == [((n,), (n,)) for n in lengths]
        assert out.preds is None
    else:  # (n, num_choices), scored like a classification
        assert out.logits.shape == (10, 2) and set(out.metrics) == {"accuracy", "f1", "mcc", "loss"}


def test_the_model_checks_its_inputs_on_the_first_batch_only():
    from minibert import BertForTokenClassification

    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(), num_labels=3)
    seen = []
    forward = model.forward

    def spy(*args, **kwargs):
        seen.append(model.check_inputs)
        return forward(*args, **kwargs)

    model.forward = spy
    train(model, task_features("tokens", 24), quick_args(num_train_epochs=1, gradient_accumulation_steps=2))
    assert seen == [True] + [False] * (len(seen) - 1) and len(seen) == 6  # 3 updates x 2 micro-batches
    assert model.check_inputs  # on again for direct calls
