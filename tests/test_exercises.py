"""Every "write it yourself" cell starts empty, its checker fails on that stub with a clear message, and the
package's solution (`minibert.course.solutions`) passes the same checker."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from minibert.course import checks, solutions

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# (notebook, the learner's function, its checker, the package's solution)
EXERCISES = [
    ("01_tokenizer", "my_wordpiece", checks.check_wordpiece, solutions.wordpiece),
    ("02_attention", "my_attention", checks.check_attention, solutions.attention),
    ("05_pretraining_data", "my_mask_tokens", checks.check_masking, solutions.mask_tokens),
    ("06_bertadam", "my_bertadam_step", checks.check_bertadam_step, solutions.bertadam_step),
    ("07_pretrain_from_scratch", "my_pretraining_loss", checks.check_pretraining_loss, solutions.pretraining_loss),
    ("07_pretrain_from_scratch", "my_mlm_accuracy", checks.check_mlm_accuracy, solutions.mlm_accuracy),
    ("08_lm_finetuning", "my_perplexity", checks.check_perplexity, solutions.perplexity),
    ("09_mrpc", "my_train_steps", checks.check_train_steps, solutions.train_steps),
    ("09_mrpc", "my_num_update_steps", checks.check_num_update_steps, solutions.num_update_steps),
    ("10_chinese_sentiment", "my_collate", checks.check_pad_collate, solutions.pad_collate),
]
IDS = [f"{nb}:{fn}" for nb, fn, _, _ in EXERCISES]


def stub_from_notebook(notebook: str, name: str):
    """The notebook's exercise cell, run on its own: it must define `name` and nothing that answers it."""
    cells = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    hits = [s for s in sources if re.search(rf"^def {name}\(", s, flags=re.M)]
    assert len(hits) == 1, f"{notebook}: expected one cell defining {name}, found {len(hits)}"
    namespace = {"torch": torch}
    exec(compile(hits[0], f"{notebook}:{name}", "exec"), namespace)  # noqa: S102 - our own notebook cell
    return namespace[name]


@pytest.mark.parametrize(("notebook", "name", "checker", "solution"), EXERCISES, ids=IDS)
def test_stub_is_empty_and_its_check_fails_clearly(notebook, name, checker, solution):
    stub = stub_from_notebook(notebook, name)
    with pytest.raises((AssertionError, NotImplementedError)) as err:
        checker(stub)
    message = str(err.value)
    assert name in message or "NotImplementedError" in message, message  # says the stub is not written yet


@pytest.mark.parametrize(("notebook", "name", "checker", "solution"), EXERCISES, ids=IDS)
def test_solution_passes(notebook, name, checker, solution):
    checker(solution)


def test_check_train_steps_names_the_classic_bugs():
    def no_zero_grad(model, batches, optimizer):
        losses = []
        for batch in batches:
            loss = model(**batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    with pytest.raises(AssertionError, match=r"loss at step \d is .*zero_grad"):
        checks.check_train_steps(no_zero_grad)


def test_check_pretraining_loss_names_a_missing_nsp_term():
    def mlm_only(scores, nsp, labels, nsp_labels):
        return solutions.pretraining_loss(scores, nsp * 0, labels, nsp_labels) - torch.log(torch.tensor(2.0))

    with pytest.raises(AssertionError, match="MLM loss alone"):
        checks.check_pretraining_loss(mlm_only)
