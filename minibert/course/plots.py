"""Figures the notebooks draw: live training curves read from ``state.log_history`` (fine-tuning in 09 and 10,
pre-training in 07) and the picture of BERT's blocks (03). matplotlib and IPython are imported when a figure is
drawn, so minibert itself runs without them."""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence, Union

import numpy as np

from minibert.training import TrainState

Panel = Union[str, Sequence[str]]  # one key of log_history, or several drawn on one panel


def _name(key: str) -> str:
    """"eval_mlm_accuracy" -> "mlm accuracy": the metric a key names, in words."""
    return key.removeprefix("eval_").replace("_", " ")


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every point (fewer at the start): a noisy curve, smoothed."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64))])
    end = np.arange(1, len(values) + 1)
    begin = np.maximum(end - window, 0)
    return (c[end] - c[begin]) / (end - begin)


class LivePlot:
    """A training callback that redraws curves of ``state.log_history`` while a run trains, one panel per entry
    of ``keys`` (a key, or a tuple of keys drawn together), against the update number.

    Training values (logged every ``logging_steps``, e.g. "loss") are drawn faint with their running mean over
    ``window`` points; evaluations ("eval_<metric>", logged every ``eval_steps`` or epoch) as dots. ``baselines``
    draws a dotted line on the panel of a key (``{"eval_accuracy": (0.68, "majority class")}``), ``marks``
    vertical lines at some updates (e.g. where a pre-training phase ends)::

        train(..., callbacks=[LivePlot(keys=("loss", ("eval_accuracy", "eval_f1")), every=10)])

    It redraws every ``every`` updates, after an evaluation and at the end, when the log has grown. Outside a
    notebook it draws nothing on screen and only keeps the figure. ``seconds`` is the time spent drawing.
    """

    def __init__(self, keys: Sequence[Panel] = ("loss", ("eval_accuracy", "eval_f1")), every: int = 10,
                 window: int = 25, baselines: Mapping[str, tuple[float, str]] | None = None,
                 marks: Sequence[int] = (), titles: Sequence[str] | None = None, xlabel: str = "update",
                 eval_label: str = "dev", figsize: tuple[float, float] | None = None):
        self.panels = [(k,) if isinstance(k, str) else tuple(k) for k in keys]
        if titles is not None and len(titles) != len(self.panels):
            raise ValueError(f"got {len(titles)} titles for {len(self.panels)} panels; give one title per entry of "
                             "keys")
        self.titles = list(titles) if titles is not None else [" / ".join(dict.fromkeys(map(_name, p)))
                                                               for p in self.panels]
        self.every, self.window, self.baselines = every, window, dict(baselines or {})
        self.marks, self.xlabel, self.eval_label = list(marks), xlabel, eval_label
        self.figsize = figsize or (min(5.0 * len(self.panels), 15.0), 3.2)
        self.fig = None
        self.seconds = 0.0
        self._handle = None
        self._drawn = -1  # length of the log at the last redraw

    def __call__(self, event: str, state: TrainState) -> None:
        if event == "step" and state.global_step % self.every:
            return
        if len(state.log_history) != self._drawn:
            self.draw(state)

    def draw(self, state: TrainState) -> Any:
        import matplotlib.pyplot as plt

        start = time.perf_counter()
        if self.fig is None:
            self.fig, _ = plt.subplots(1, len(self.panels), figsize=self.figsize, squeeze=False)
            plt.close(self.fig)  # drawn through the display handle only
        log = state.log_history
        for ax, keys, title in zip(self.fig.axes, self.panels, self.titles):
            ax.clear()
            for key in keys:
                steps = [r["step"] for r in log if key in r]
                values = [r[key] for r in log if key in r]
                if key.startswith("eval_"):
                    ax.plot(steps, values, "o-", ms=4, label=f"{self.eval_label} {_name(key)}")
                elif values:
                    ax.plot(steps, values, lw=0.8, alpha=0.3, label=_name(key))
                    if len(values) >= 5:
                        ax.plot(steps, running_mean(values, self.window), lw=1.8, label=f"mean of {self.window}")
                if key in self.baselines:
                    value, name = self.baselines[key]
                    ax.axhline(value, color="k", ls=":", lw=1, label=f"{name} {value:.3f}")
            for step in self.marks:
                ax.axvline(step, color="grey", lw=0.8)
            ax.set(xlabel=self.xlabel, ylabel=title, title=title)
            if ax.lines:
                ax.legend(fontsize=7, loc="upper right" if "loss" in keys[0] else "lower right")
        self.fig.suptitle(f"update {state.step_offset + state.global_step}/{state.step_offset + state.t_total}",
                          fontsize=9)
        self.fig.tight_layout()
        self._show()
        self._drawn = len(log)
        self.seconds += time.perf_counter() - start
        return self.fig

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)


def pretraining_plot(unigram_accuracy: float, nsp_majority: float, phase_ends: Sequence[int] = (),
                     phase_label: str = "", every: int = 100, window: int = 25) -> LivePlot:
    """The live plot of pre-training (notebook 07): the loss, and the MLM and NSP accuracies of the training
    batches (faint, with their running mean) and of the held-out set (dots), each against its no-context
    baseline (the unigram guess, the majority class). ``phase_ends``: grey lines where a phase of shorter
    sequences hands over to the next, described by ``phase_label``."""
    xlabel = f"optimizer step (grey line: {phase_label})" if phase_ends and phase_label else "optimizer step"
    return LivePlot(keys=("loss", ("mlm_accuracy", "eval_mlm_accuracy"), ("nsp_accuracy", "eval_nsp_accuracy")),
                    every=every, window=window, marks=phase_ends, xlabel=xlabel, eval_label="held out",
                    titles=("loss (MLM + NSP)", "MLM accuracy", "NSP accuracy"), figsize=(13, 3.4),
                    baselines={"mlm_accuracy": (unigram_accuracy, "unigram"),
                               "nsp_accuracy": (nsp_majority, "majority class")})


def draw_bert(config: Any) -> Any:
    """BERT from the input (bottom) to the heads (top), with the sizes of ``config`` (a BertConfig)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    L, H, A, V, FF = (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.vocab_size,
                     config.intermediate_size)
    boxes = [(0.05, 0.02, 0.9, "input: [CLS] sentence A [SEP] sentence B [SEP]   (ids, segment ids, mask)", "#eeeeee"),
             (0.05, 0.14, 0.9, f"embeddings: token ({V} x {H}) + position (512 x {H}) + segment (2 x {H}), LayerNorm",
              "#cfe2f3"),
             (0.05, 0.30, 0.9, f"multi-head self-attention ({A} heads of {H // A}), add & LayerNorm", "#d9ead3"),
             (0.05, 0.42, 0.9, f"feed-forward {H} -> {FF} -> {H} with GELU, add & LayerNorm", "#d9ead3"),
             (0.05, 0.60, 0.42, f"final hidden states\n(batch, seq, {H})", "#fff2cc"),
             (0.53, 0.60, 0.42, f"pooler: tanh(dense({H} -> {H}))\non the [CLS] state", "#fce5cd"),
             (0.05, 0.80, 0.42, "MLM head: dense, GELU, LayerNorm,\ndecoder tied to the word embeddings", "#f4cccc"),
             (0.53, 0.80, 0.42, "NSP / classification head:\na dense layer on the pooled output", "#f4cccc")]
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for x, y, w, text, colour in boxes:
        ax.add_patch(FancyBboxPatch((x, y), w, 0.09, boxstyle="round,pad=0.01", fc=colour, ec="black"))
        ax.text(x + w / 2, y + 0.045, text, ha="center", va="center", fontsize=9)
    ax.add_patch(FancyBboxPatch((0.02, 0.27), 0.96, 0.26, boxstyle="round,pad=0.01", fc="none", ec="green", ls="--"))
    ax.text(0.985, 0.40, f"x {L} layers", rotation=90, va="center", color="green")
    for x0, y0, x1, y1 in [(0.5, 0.11, 0.5, 0.14), (0.5, 0.23, 0.5, 0.30), (0.5, 0.39, 0.5, 0.42),
                           (0.26, 0.51, 0.26, 0.60), (0.47, 0.645, 0.53, 0.645), (0.26, 0.69, 0.26, 0.80),
                           (0.74, 0.69, 0.74, 0.80)]:
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->"))
    ax.set_xlim(0, 1.03)
    ax.set_ylim(0, 0.92)
    ax.axis("off")
    ax.set_title(f"BERT with this checkpoint's sizes: L={L} layers, H={H}, A={A} heads")
    return fig
