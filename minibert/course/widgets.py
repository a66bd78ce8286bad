"""Widgets and live plots for the notebooks: a live loss plot, a form for short runs that keeps the table of every
run (07, 09, 10, 13, 14, 15), an attention explorer (11), the memory knobs (16). ipywidgets, IPython, pandas and
matplotlib are imported when a widget is built, so minibert itself runs without them. The live plot is
:mod:`minibert.course.plots`' (``widgets.LivePlot`` finds it)."""
from __future__ import annotations

import numbers
import time
from typing import Any, Callable, Mapping, Sequence

import torch

from minibert import memory
from minibert.course.plots import LivePlot  # noqa: F401  (re-exported: notebooks import it from here)
from minibert.features import TextInput
from minibert.modeling import BertConfig
from minibert.viz import AttentionResult, get_attention, plot_attention


class RunForm:
    """A form for the knobs of a short run, a Run button, and the table of every run so far (its knobs, its
    metrics, its seconds), kept across presses so a learner compares runs instead of remembering them.

    ``run(**knobs) -> {metric: value}`` is the notebook's function; the table shows the numbers and strings it
    returns, and ``last`` keeps the whole dict of the latest run (a model, say). Each knob is given as its default
    (a text box; a checkbox for a bool) or as ``(default, options)`` (a dropdown). The notebook picks defaults
    that finish in seconds (a subset or a step budget) and offers a ``seed`` knob: two seeds of one setting show
    how much of a difference is noise. Without a frontend (CI, tests), ``run_once(**knobs)`` runs and records the
    same way and displays nothing; a button press calls it with the widgets' values.
    """

    def __init__(self, run: Callable[..., Mapping[str, Any]], knobs: Mapping[str, Any], title: str | None = None):
        if not callable(run):
            raise TypeError(f"run must be the notebook's function run(**knobs) -> dict, got {type(run).__name__}")
        self.run, self.title = run, title
        self.defaults: dict[str, Any] = {}
        self.options: dict[str, list[Any]] = {}
        for name, spec in knobs.items():
            if isinstance(spec, tuple):
                if len(spec) != 2 or isinstance(spec[1], (str, bytes)) or not hasattr(spec[1], "__iter__"):
                    raise ValueError(f"knob {name!r}: give (default, [options]) for a dropdown, got {spec!r}")
                default, options = spec[0], list(spec[1])
                if default not in options:
                    raise ValueError(f"knob {name!r}: default {default!r} is not one of its options {options}")
                self.options[name] = options
            elif isinstance(spec, (bool, numbers.Number, str)):
                default = spec
            else:
                raise ValueError(f"knob {name!r}: give a default (int, float, str, bool) or (default, [options]), "
                                 f"got {type(spec).__name__}")
            self.defaults[name] = default
        self.runs: list[dict[str, Any]] = []
        self.last: Mapping[str, Any] | None = None
        self._widgets: dict[str, Any] | None = None
        self._box = self._button = self._output = self._table = None

    def values(self) -> dict[str, Any]:
        """The knobs' current values: the widgets' once the form is shown, else the defaults."""
        if self._widgets is None:
            return dict(self.defaults)
        return {name: w.value for name, w in self._widgets.items()}

    def run_once(self, **knobs: Any) -> Mapping[str, Any]:
        """Run once with the form's values, overridden by ``knobs``; record the row and return run's dict."""
        unknown = sorted(set(knobs) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; this form's knobs are {list(self.defaults)}")
        values = {**self.values(), **knobs}
        start = time.perf_counter()
        result = self.run(**values)
        seconds = time.perf_counter() - start
        if not isinstance(result, Mapping):
            raise TypeError(f"run(**knobs) must return a dict of metrics, e.g. {{'accuracy': 0.8}}; got "
                            f"{type(result).__name__}")
        clash = sorted(set(result) & (set(values) | {"run", "seconds"}))
        if clash:
            raise ValueError(f"run returned {clash}, which are knob or column names; name the metrics differently")
        metrics = {k: v for k, v in result.items() if isinstance(v, (numbers.Number, str, bool))}
        self.runs.append({"run": len(self.runs) + 1, **values, **metrics, "seconds": round(seconds, 1)})
        self.last = result
        return result

    def table(self):
        """The runs so far as a pandas DataFrame, one row per run: knobs, metrics, seconds."""
        import pandas as pd

        if not self.runs:
            return pd.DataFrame(columns=["run", *self.defaults, "seconds"]).set_index("run")
        return pd.DataFrame(self.runs).set_index("run")

    @property
    def widget(self) -> Any:
        """The ipywidgets form (built on first use)."""
        if self._box is None:
            self._build()
        return self._box

    def _build(self) -> None:
        import ipywidgets as w

        style, layout = {"description_width": "140px"}, w.Layout(width="340px")
        self._widgets = {}
        for name, default in self.defaults.items():
            label = name.replace("_", " ")
            if name in self.options:
                widget = w.Dropdown(options=self.options[name], value=default, description=label)
            elif isinstance(default, bool):
                widget = w.Checkbox(value=default, description=label)
            elif isinstance(default, numbers.Integral):
                widget = w.IntText(value=default, description=label)
            elif isinstance(default, numbers.Number):
                widget = w.FloatText(value=default, description=label)
            else:
                widget = w.Text(value=default, description=label, continuous_update=False)
            widget.style, widget.layout = style, layout
            self._widgets[name] = widget
        self._button = w.Button(description="Run", button_style="primary", icon="play")
        self._button.on_click(self._clicked)
        self._output, self._table = w.Output(), w.Output()
        head = [w.HTML(f"<b>{self.title}</b>")] if self.title else []
        self._box = w.VBox([*head, *self._widgets.values(), self._button, self._output, self._table])
        self._show_table()

    def _clicked(self, _button: Any) -> None:
        self._button.disabled, self._button.description = True, "Running..."
        self._output.clear_output()
        try:
            with self._output:  # a failed run shows its traceback here, under the form
                self.run_once()
            self._show_table()  # a press updates the form's own table; run_once() in a cell shows nothing twice
        finally:
            self._button.disabled, self._button.description = False, "Run"

    def _show_table(self) -> None:
        if self._table is None or not self.runs:
            return
        from IPython.display import display

        with self._table:
            self._table.clear_output(wait=True)
            display(self.table())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def memory_sliders(config: BertConfig, memory_bytes: float | None = None, seq_len: int = 128,
                   batch_size: int = 32, most: int = 512) -> dict[str, Any]:
    """16's knobs as widgets. Sliders update on release (each change builds BERT and may measure it); the
    sequence length stops at ``max_position_embeddings`` and the batch at the largest one that fits
    ``memory_bytes`` with the other knobs' current values (``memory.max_batch_size`` with PyTorch's allocator
    assumption, at most ``most``), recomputed whenever they change. ``memory_bytes`` defaults to the GPU's
    memory, else to the largest card in ``memory.CARDS`` (on a CPU nothing is measured, only estimated)."""
    import ipywidgets as w

    if memory_bytes is None:
        memory_bytes = (torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available()
                        else max(memory.CARDS.values()))
    longest = min(512, config.max_position_embeddings)
    on_release = dict(continuous_update=False, style={"description_width": "140px"})
    knobs = {
        "seq_len": w.IntSlider(min(max(seq_len, 16), longest), 16, longest, 16, description="sequence length",
                               **on_release),
        "batch_size": w.IntSlider(1, 1, most, description="batch size", **on_release),
        "grad_accumulation": w.IntSlider(1, 1, 16, description="grad accumulation", **on_release),
        "precision": w.Dropdown(options=list(memory.PRECISIONS), value="fp32", description="precision"),
        "optimizer": w.Dropdown(options=list(memory.OPTIMIZERS), value="bertadam", description="optimizer"),
        "attention": w.Dropdown(options=list(memory.ATTENTIONS), value="sdpa", description="attention"),
        "gradient_checkpointing": w.Checkbox(value=False, description="gradient checkpointing"),
    }

    def largest_batch(_: Any = None) -> None:
        k = {name: widget.value for name, widget in knobs.items()}
        fits = memory.max_batch_size(config, k["seq_len"], memory_bytes, precision=k["precision"],
                                     optimizer=k["optimizer"], gradient_checkpointing=k["gradient_checkpointing"],
                                     attention=k["attention"], limit=most, **memory.PYTORCH_ALLOCATOR)
        knobs["batch_size"].max = max(fits, 1)  # a value above the new maximum is clamped to it

    largest_batch()
    if not memory.fits(config, 1, 16, memory_bytes, precision="bf16", optimizer="sgd", gradient_checkpointing=True,
                       **memory.PYTORCH_ALLOCATOR):
        raise ValueError(f"not even one sequence of 16 tokens fits {memory_bytes / memory.GB:.1f} GB with this "
                         "config: choose a smaller model")
    knobs["batch_size"].value = min(batch_size, knobs["batch_size"].max)
    for name in ("seq_len", "precision", "optimizer", "attention", "gradient_checkpointing"):
        knobs[name].observe(largest_batch, names="value")  # before interactive's own observers: bound, then draw
    return knobs


def memory_explorer(show: Callable[..., None], config: BertConfig, memory_bytes: float | None = None,
                    seq_len: int = 128, batch_size: int = 32) -> Any:
    """``ipywidgets.interactive(show, ...)`` over :func:`memory_sliders`: ``show`` (the notebook's plot) takes
    seq_len, batch_size, grad_accumulation, precision, optimizer, attention, gradient_checkpointing."""
    import ipywidgets as w

    return w.interactive(show, **memory_sliders(config, memory_bytes, seq_len, batch_size))


def attention_explorer(model: torch.nn.Module, tokenizer: Any, texts: Sequence[TextInput],
                       max_seq_length: int = 128, layer: int | None = None, head: int | None = None) -> Any:
    """Dropdown for the sentence, sliders for layer and head; redraws the offline heat map on every change.

    Attention is computed once per sentence and cached. The first view is drawn when the widget is built, so it
    shows something even where widget callbacks never run (CI, a static notebook viewer). It opens on
    ``layer``/``head`` when given, else on the head of the first sentence that reads the previous token the
    most: a visible pattern rather than whatever layer 0, head 0 happens to do.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not texts:
        raise ValueError("attention_explorer needs at least one sentence or (a, b) pair")
    labels = [t if isinstance(t, str) else f"{t[0]} ||| {t[1]}" for t in texts]
    cache: dict[int, AttentionResult] = {}

    def result_for(i: int) -> AttentionResult:
        if i not in cache:
            t = texts[i]
            cache[i] = (get_attention(model, tokenizer, t, max_seq_length=max_seq_length) if isinstance(t, str)
                        else get_attention(model, tokenizer, t[0], t[1], max_seq_length=max_seq_length))
        return cache[i]

    first = result_for(0)
    if layer is None or head is None:
        to_previous = torch.stack([a[0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) for a in first.attentions])
        best_layer, best_head = divmod(int(to_previous.argmax()), first.num_heads)
        layer, head = (best_layer if layer is None else layer), (best_head if head is None else head)
    if not (0 <= layer < first.num_layers and 0 <= head < first.num_heads):
        raise ValueError(f"layer={layer}, head={head} is outside this model's {first.num_layers} layers x "
                         f"{first.num_heads} heads (both count from 0)")
    sentence = widgets.Dropdown(options=[(lab[:80], i) for i, lab in enumerate(labels)], value=0,
                                description="sentence")
    layer = widgets.IntSlider(layer, 0, first.num_layers - 1, description="layer")
    head = widgets.IntSlider(head, 0, first.num_heads - 1, description="head")
    out = widgets.Output()

    box = widgets.VBox([widgets.HBox([sentence, layer, head]), out])

    def redraw(_: Any = None) -> None:
        from IPython.display import display

        with out:
            out.clear_output(wait=True)
            ax = plot_attention(result_for(sentence.value), layer.value, head.value)
            display(ax.figure)
            plt.close(ax.figure)  # shown once, in the widget's output, not again at the end of the cell
        box.last_axes = ax  # the view on screen, for checks

    for w in (sentence, layer, head):
        w.observe(redraw, names="value")
    redraw()
    return box
