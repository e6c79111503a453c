"""The model comparison view: every model on the same held-out sets (the in-distribution test
year and the future warmer decades) -- overall and tail scores, the extreme-trend error (%/K)
against the truth, the issue-7 goal, OOD detection and the in/out split.

It shows the last comparison stored under ``<data_root>/comparison/compare.json`` (written by
``raincheck compare``, or by the "Run comparison" button here, which runs
:func:`evaluation.compare.compare` off the event loop). Numbers are never re-derived here.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import panel as pn
import param

log = logging.getLogger(__name__)


def result_path() -> Path:
    from evaluation.compare import default_result_path

    return default_result_path()


def load_result(path: Path | None = None) -> dict | None:
    from evaluation.compare import load_result as _load

    return _load(path)


def save_result(res: dict, path: Path | None = None) -> Path:
    from evaluation.compare import save_result as _save

    return _save(res, path)


def score_frame(res: dict):
    """One row per (model, split): the overall and tail scores (a pandas DataFrame)."""
    import pandas as pd

    rows = []
    th = list(res["thresholds_mm_h"])
    for name, m in res["models"].items():
        for split in ("test", "ood"):
            s = m[split]
            row = {"model": name, "split": {"test": "test year", "ood": "future decades"}[split],
                   "CRPS": s["crps"], "QS": s["qs"], "MSE": s["mse"], "corr": s["corr"]}
            for k in th:
                row[f"twCRPS {k}"] = s[f"twcrps@{k}"]
                row[f"SEDI {k}"] = s[f"sedi@{k}"]
                row[f"FB {k}"] = s[f"fbias@{k}"]
            rows.append(row)
    return pd.DataFrame(rows)


def trend_frame(res: dict):
    """One row per model: extreme trends (%/K) of model and truth, errors and the goal."""
    import pandas as pd

    rows = []
    for name, m in res["models"].items():
        t = m["trend"]
        row = {"model": name}
        for k in res["thresholds_mm_h"]:
            row[f"{k} model %/K"] = t[k]["model_pct_per_K"]
            row[f"{k} truth %/K"] = t[k]["truth_pct_per_K"]
            row[f"{k} error"] = t[k]["error_pct_per_K"]
        row["trend error"] = t["trend_error"]
        g = (res.get("goal") or {}).get("models", {}).get(name)
        red = None if g is None else g.get("trend_error_reduction")
        row["error change"] = None if red is None else -red
        row["CRPS change"] = None if g is None else g["crps_change"]
        row["goal met"] = None if g is None else g["met"]
        rows.append(row)
    return pd.DataFrame(rows)


class CompareView(pn.viewable.Viewer):
    """Tables and a trend-error chart of the stored comparison, with a button to (re)run it."""

    models = param.List(default=[], item_type=str)
    running = param.Boolean(default=False)

    def __init__(self, **params):
        super().__init__(**params)
        from models.registry import list_models

        names = [c.name for c in list_models()]
        self.picker = pn.widgets.MultiChoice(name="Models", options=names, value=names, sizing_mode="stretch_width")
        self.button = pn.widgets.Button(name="Run comparison", button_type="primary")
        self.button.on_click(lambda e: self.run())
        self.status = pn.pane.Markdown("", css_classes=["rc-note"])
        self.body = pn.Column(sizing_mode="stretch_width")
        self.refresh()

    def __panel__(self):
        return pn.Column(pn.Row(self.picker, self.button), self.status, self.body, sizing_mode="stretch_width")

    def refresh(self, res: dict | None = None) -> None:
        res = res if res is not None else load_result()
        if res is None:
            self.body.objects = [pn.pane.Markdown("No comparison yet: run `raincheck compare --out` "
                                                  f"{result_path()} or press *Run comparison*.")]
            return
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  (the app's plotting backend, for .opts)

        tf = trend_frame(res)
        bars = hv.Bars(tf, "model", "trend error").opts(title="extreme-trend error (%/K, mean over p99 / p99.9)",
                                                        height=260, responsive=True, xrotation=30)
        goal = res.get("goal", {})
        met = ", ".join(goal.get("met_by", [])) or "no model"
        per = res["periods"]
        parts = [
            pn.pane.Markdown(f"Held-out sets of `{res['config']}`: test {per['test']['period']} "
                             f"({per['test']['gmst_K']:.2f} K), future {per['ood']['period']} "
                             f"({per['ood']['gmst_K']:.2f} K); thresholds from the training period "
                             f"{res['thresholds_mm_h']} mm/h. Goal ({goal.get('criterion', '')}): **{met}**."),
            pn.widgets.Tabulator(score_frame(res), disabled=True, show_index=False, sizing_mode="stretch_width",
                                 layout="fit_data_table"),
            pn.widgets.Tabulator(trend_frame(res), disabled=True, show_index=False, sizing_mode="stretch_width",
                                 layout="fit_data_table"),
            pn.pane.HoloViews(bars, sizing_mode="stretch_width"),
        ]
        if "ood_detection" in res:
            import pandas as pd

            od = res["ood_detection"]
            rows = [{"shift": k, **v} for k, v in od.items() if isinstance(v, dict)]
            parts += [pn.pane.Markdown(f"OOD detector `{od.get('detector')}`; in distribution: {od['in_distribution']}"),
                      pn.widgets.Tabulator(pd.DataFrame(rows), disabled=True, show_index=False)]
        self.body.objects = parts

    def run(self) -> None:
        if self.running:
            return
        self.running = True
        self.button.disabled = True
        names = list(self.picker.value)
        self.status.object = f"running the comparison of {', '.join(names)} (minutes on CPU)..."

        def work():
            try:
                from evaluation.compare import compare
                from evaluation.report import clean

                res = clean(compare(names))
                save_result(res)
                pn.state.execute(lambda: (self.refresh(res), setattr(self.status, "object", "done")))
            except Exception as e:  # shown to the user, logged with the traceback
                log.exception("comparison failed")
                pn.state.execute(lambda: setattr(self.status, "object", f"comparison failed: {e}"))
            finally:
                self.running = False
                pn.state.execute(lambda: setattr(self.button, "disabled", False))

        threading.Thread(target=work, daemon=True).start()


def make_view(selection=None, catalog_path=None) -> CompareView:
    """The comparison view of one session (for ``app.views.make_views``)."""
    return CompareView()
