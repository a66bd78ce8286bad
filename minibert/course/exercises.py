"""Every "write it yourself" exercise of the course in one registry, and the one runner the notebooks call.

``EXERCISES`` maps an exercise's name to its checker (``minibert.course.checks``), its worked solution
(``minibert.course.solutions``), its notebook and the stub the notebook starts from. A notebook cell is::

    def my_attention(q, k, v, mask=None):
        # your code here
        raise NotImplementedError("write my_attention")

    course.exercise("attention", my_attention)

which prints ``attention: passed`` or ``Not yet: <what is wrong, and its likely cause>`` and where a solution
is. Nothing the learner's function raises escapes as a traceback: it is reported as "Not yet: your function
raised ValueError: ...".
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from minibert.course import checks, solutions


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it is, the function the learner writes, how it is checked, one answer."""

    name: str
    notebook: str  # the notebook's file name without .ipynb
    signature: str  # the stub's first line, e.g. "def my_attention(q, k, v, mask=None):"
    check: Callable[..., Any]  # raises AssertionError naming what is wrong
    solution: Callable[..., Any]

    @property
    def function(self) -> str:
        """The name the notebook gives the learner's function ("my_attention")."""
        return self.signature[len("def "):self.signature.index("(")]

    def stub(self) -> str:
        """The empty function the notebook's exercise cell starts from."""
        return f'{self.signature}\n    # your code here\n    raise NotImplementedError("write {self.function}")\n'


_ALL = [
    Exercise("parameter_count", "00_setup", "def my_parameter_count(config):",
             checks.check_parameter_count, solutions.parameter_count),
    Exercise("basic_tokenizer", "01_tokenizer", "def basic_tokenize(text, lower=True):",
             checks.check_basic_tokenizer, solutions.basic_tokenize),
    Exercise("wordpiece", "01_tokenizer", "def my_wordpiece(word, vocab):",
             checks.check_wordpiece, solutions.wordpiece),
    Exercise("attention", "02_attention", "def my_attention(q, k, v, mask=None):",
             checks.check_attention, solutions.attention),
    Exercise("bert_layer", "03_bert_model", "def my_layer(layer, x, mask):",
             checks.check_bert_layer, solutions.bert_layer),
    Exercise("mlm_loss", "04_masked_lm", "def my_mlm_loss(prediction_scores, masked_lm_labels):",
             checks.check_mlm_loss, solutions.mlm_loss),
    Exercise("masking", "05_pretraining_data",
             "def my_mask_tokens(input_ids, special_tokens_mask, vocab_size, mask_token_id, generator):",
             checks.check_masking, solutions.mask_tokens),
    Exercise("bertadam_step", "06_bertadam",
             "def my_bertadam_step(p, grad, m, v, lr_scheduled, b1, b2, e, weight_decay, max_grad_norm):",
             checks.check_bertadam_step, solutions.bertadam_step),
    Exercise("pretraining_loss", "07_pretrain_from_scratch",
             "def my_pretraining_loss(prediction_scores, seq_relationship_score, masked_lm_labels, "
             "next_sentence_label):",
             checks.check_pretraining_loss, solutions.pretraining_loss),
    Exercise("mlm_accuracy", "07_pretrain_from_scratch", "def my_mlm_accuracy(prediction_scores, masked_lm_labels):",
             checks.check_mlm_accuracy, solutions.mlm_accuracy),
    Exercise("perplexity", "08_lm_finetuning", "def my_perplexity(prediction_scores, masked_lm_labels):",
             checks.check_perplexity, solutions.perplexity),
    Exercise("train_steps", "09_mrpc", "def my_train_steps(model, batches, optimizer):",
             checks.check_train_steps, solutions.train_steps),
    Exercise("num_update_steps", "09_mrpc", "def my_num_update_steps(num_examples, batch_size, epochs):",
             checks.check_num_update_steps, solutions.num_update_steps),
    Exercise("pad_collate", "10_chinese_sentiment", "def my_collate(features):",
             checks.check_pad_collate, solutions.pad_collate),
    Exercise("attention_entropy", "11_attention", "def my_entropy(attn, mask):",
             checks.check_attention_entropy, solutions.attention_entropy),
    Exercise("roc_auc", "12_feature_extraction", "def my_roc_auc(scores, labels):",
             checks.check_roc_auc, solutions.roc_auc),
    Exercise("best_span", "13_squad",
             "def my_best_span(start_logits, end_logits, window, n_best_size, max_answer_length):",
             checks.check_best_span, solutions.best_span),
    Exercise("choice_probs", "14_swag", "def my_choice_probs(model, input_ids, token_type_ids, attention_mask):",
             checks.check_choice_probs, solutions.choice_probs),
    Exercise("iob1_to_iob2", "15_ner", "def my_iob1_to_iob2(tags):",
             checks.check_iob1_to_iob2, solutions.iob1_to_iob2),
    Exercise("static_bytes", "16_out_of_memory", "def my_static_bytes(num_parameters, optimizer):",
             checks.check_static_bytes, solutions.static_bytes),
    Exercise("ffn_activation_bytes", "16_out_of_memory",
             "def my_ffn_activation_bytes(batch_size, seq_len, hidden_size, intermediate_size):",
             checks.check_ffn_activation_bytes, solutions.ffn_activation_bytes),
    Exercise("max_batch_size", "16_out_of_memory", "def my_max_batch_size(config, seq_len, memory_bytes):",
             checks.check_max_batch_size, solutions.max_batch_size),
    Exercise("bucketed_predict", "17_making_bert_fast", "def my_bucketed_predict(model, features, batch_size):",
             checks.check_bucketed_predict, solutions.bucketed_predict),
]
EXERCISES: dict[str, Exercise] = {e.name: e for e in _ALL}


def _get(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; the exercises are {sorted(EXERCISES)}")
    return EXERCISES[name]


def verdict(name: str, fn: Callable[..., Any], **check_kwargs: Any) -> str:
    """Run exercise ``name``'s checker on ``fn``; return "passed" or "Not yet: ..." (never raises for the
    learner's mistakes). ``check_kwargs`` go to the checker (e.g. ``vocab=`` for "wordpiece")."""
    exercise = _get(name)
    if not callable(fn):
        return (f"Not yet: pass the function itself, course.exercise({name!r}, {exercise.function}), "
                f"not {type(fn).__name__} (without the parentheses that call it)")
    try:
        exercise.check(fn, **check_kwargs)
    except NotImplementedError:
        return f"Not yet: {exercise.function} is still empty (it raises NotImplementedError): write its body"
    except AssertionError as err:
        return f"Not yet: {err}"
    except Exception as err:  # the checker could not read what the function returned
        return (f"Not yet: your function's answer could not be checked ({type(err).__name__}: {err}); "
                f"return what the exercise asks for")
    return "passed"


def exercise(name: str, fn: Callable[..., Any], **check_kwargs: Any) -> None:
    """Check the learner's ``fn`` for exercise ``name`` and print the verdict; on a miss, say where a
    solution is."""
    result = verdict(name, fn, **check_kwargs)
    if result == "passed":
        print(f"{name}: passed")
    else:
        print(f"{result}\nStuck? `course.solution({name!r})` shows one.")


def solution(name: str) -> None:
    """Print exercise ``name``'s worked solution: its source, with the comment line above it."""
    fn = _get(name).solution
    print((inspect.getcomments(fn) or "") + inspect.getsource(fn))
