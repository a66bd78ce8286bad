"""Widgets for the notebooks: a training form (09, 10), an attention explorer (11). ipywidgets, IPython and
matplotlib are imported when a widget is built, so minibert itself runs without them. The live training plot
moved to :mod:`minibert.course.plots`; ``widgets.LivePlot`` still finds it."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from minibert.course.plots import LivePlot  # noqa: F401  (re-exported: notebooks import it from here)
from minibert.features import TextInput
from minibert.viz import AttentionResult, get_attention, plot_attention


class TrainingForm:
    """An ipywidgets form for the knobs a learner turns (lr, epochs, batch, max length, warmup, precision) and
    a Train button that calls ``on_train(**values)`` with its output shown under the form.

    Callbacks do not run in CI, so notebooks also call ``on_train(**form.values())`` in a plain cell.
    """

    def __init__(self, on_train: Callable[..., Any], learning_rate: float = 2e-5, num_train_epochs: int = 3,
                 train_batch_size: int = 32, max_seq_length: int = 128, warmup_proportion: float = 0.1,
                 precision: str = "auto"):
        import ipywidgets as w

        self.on_train, self.result = on_train, None
        style = {"description_width": "150px"}
        self.widgets = {
            "learning_rate": w.FloatLogSlider(value=learning_rate, base=10, min=-6, max=-2, step=0.1,
                                              readout_format=".1e", description="learning rate", style=style),
            "num_train_epochs": w.IntSlider(value=num_train_epochs, min=1, max=10, description="epochs",
                                            style=style),
            "train_batch_size": w.Dropdown(options=sorted({8, 16, 32, 64, train_batch_size}),
                                           value=train_batch_size, description="batch size", style=style),
            "max_seq_length": w.Dropdown(options=sorted({32, 64, 128, 256, 512, max_seq_length}),
                                         value=max_seq_length, description="max sequence length", style=style),
            "warmup_proportion": w.FloatSlider(value=warmup_proportion, min=0.0, max=0.5, step=0.05,
                                               description="warmup proportion", style=style),
            "precision": w.Dropdown(options=["auto", "fp32", "bf16", "fp16"], value=precision,
                                    description="precision", style=style),
        }
        self.button = w.Button(description="Train", button_style="primary", icon="play")
        self.output = w.Output()
        self.button.on_click(self._clicked)
        self.box = w.VBox([*self.widgets.values(), self.button, self.output])

    def values(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.widgets.items()}

    def _clicked(self, _button: Any) -> None:
        self.output.clear_output()
        with self.output:
            self.result = self.on_train(**self.values())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


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
