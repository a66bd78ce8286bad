"""Course material, kept off the library's shelf: the notebooks import it, minibert itself never does.

- ``start()``: the call after a notebook's setup cell; prints the mode, device and threads, returns the mode.
- ``exercise(name, my_function)``, ``solution(name)``, ``EXERCISES``: every exercise of the course, one runner
  (``exercises``); the checkers are in ``checks``, one worked answer each in ``solutions``.
- ``widgets``: ipywidgets forms and live plots (``RunForm``, ``attention_explorer``, ``memory_explorer``).
- ``plots``: live training curves from ``log_history`` (``LivePlot``, ``pretraining_plot``) and ``draw_bert``.
- ``demos``: small computations a notebook shows but the library does not need (``wordpiece_stats``,
  ``masked_html``, ``global_vs_per_tensor_clipping``, ``measured_peak``).
"""
from minibert.course.exercises import EXERCISES, Exercise, exercise, solution, verdict
from minibert.course.session import start

__all__ = ["EXERCISES", "Exercise", "exercise", "solution", "start", "verdict"]
