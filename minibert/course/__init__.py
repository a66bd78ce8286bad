"""Course material, kept off the library's shelf: the notebooks import it, minibert itself never does.

- ``checks``: exercise checkers, one section per notebook (``check_attention``, ``check_wordpiece``, ...);
  each runs a learner's function against the library on tricky cases and names the first difference.
- ``widgets``: ipywidgets forms (``TrainingForm``, ``attention_explorer``).
- ``plots``: live training curves from ``log_history`` (``LivePlot``, ``pretraining_plot``) and ``draw_bert``.
- ``demos``: small computations a notebook shows but the library does not need (``wordpiece_stats``,
  ``masked_html``, ``global_vs_per_tensor_clipping``).
"""
