"""One interface for late-fusion methods: a registry of `LateFusion` subclasses, built by name.

A fusion method is one class: subclass `LateFusion`, register it with ``@register_fusion("name")``
and implement how its parameters are chosen on a set of frames (`_fit_frames`) and applied
(`_predict_frames`). The shared `LateFusion.fit` leaves unannotated frames out, validates the
inputs and cross-fits over groups (`vapipe.fusion.run` passes each frame's video, so the two people
``<video>_left`` and ``<video>_right`` of one video are held out together), so every method reports
the same fitted attributes:

- ``fit_scores_``: {valence, arousal, mean, n_frames}, the score on the frames the parameters were
  chosen on (optimistic; its metrics row is named by the class attribute ``fit_score_name``);
- ``cv_scores_``: the same keys, the group-wise cross-fitted score;
- ``cv_predictions_`` [N, 2]: every frame, annotated or not, fused by parameters chosen on the
  other splits of a GroupKFold over the groups: the whole choice (weights, hyper-parameters) is
  made again inside each split, on its training frames alone, never with the held-out group;
- ``cv_params_``: per split, what that split's fit chose (`_chosen_params`; None entries for a
  method that records nothing).

``create_fusion(method, **options)`` builds a registered method (what a config's ``fusions:``
entry names), ``list_fusions()`` lists them, ``fusion_options(method)`` gives a method's options and
their defaults, which live only in its constructor's signature.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GroupKFold

from vapipe import TARGETS
from vapipe.evaluation.metrics import va_scores, valid_label_mask

# name -> LateFusion subclass, filled by @register_fusion when the modules defining them are imported.
FUSION_METHODS: dict[str, type] = {}


def check_base_predictions(preds: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """preds as float64 [N, M, 2]; labels, when given, must be [N, 2]."""
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[2] != len(TARGETS):
        raise ValueError(f"expected base predictions of shape [N, models, 2], got {preds.shape}")
    if labels is not None and np.shape(labels) != (preds.shape[0], len(TARGETS)):
        raise ValueError(f"expected labels of shape ({preds.shape[0]}, 2), got {np.shape(labels)}")
    return preds


def grouped_splits(groups, keep: np.ndarray, n_splits: int, what: str):
    """GroupKFold over all frames by group (video): (train frames with labels, every test frame).

    Test frames include unannotated ones, so each group gets a complete out-of-split prediction;
    only annotated frames are fitted on. No more splits than groups with annotated frames; fewer
    than two such groups, or a split left with no annotated frame to fit on, is a ValueError.
    """
    groups = np.asarray(groups)
    if groups.shape != keep.shape:
        raise ValueError(f"{what}: expected groups of shape {keep.shape}, got {groups.shape}")
    if n_splits < 2:
        raise ValueError(f"{what}: cv_splits must be at least 2, got {n_splits}")
    annotated = np.unique(groups[keep])
    if len(annotated) < 2:
        raise ValueError(
            f"{what}: the grouped cross-validation needs annotated frames of at least two groups (videos), "
            f"got {len(annotated)}" + (f": {_some(annotated)}" if len(annotated) else "")
        )
    for train, test in GroupKFold(n_splits=min(n_splits, len(annotated))).split(keep, groups=groups):
        if not keep[train].any():
            raise ValueError(
                f"{what}: a cross-validation split holds out every group with annotated frames "
                f"({_some(np.unique(groups[test]))}), leaving none to fit on"
            )
        yield train[keep[train]], test


def _some(names, shown: int = 3) -> str:
    """'a, b, c, ...': the first few names, for a one-line message."""
    names = [str(n) for n in names]
    return ", ".join(names[:shown] + (["..."] if len(names) > shown else []))


def _json_ready(value):
    """Tuples as lists, NumPy scalars and arrays as Python numbers and lists (for json.dump)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class LateFusion(BaseEstimator):
    """The contract of a late-fusion method: M base models' per-frame predictions to one [N, 2].

    ``fit(preds [N, M, 2], labels [N, 2], groups [N] = None) -> self``: frames whose label is -5
    (either target) are left out of fitting; ``groups`` (the video of each frame) drive the
    cross-fitting (``cv_splits`` GroupKFold splits); without them ``cv_scores_``,
    ``cv_predictions_`` and ``cv_params_`` are None. ``predict(preds [N, M, 2]) -> [N, 2]``.

    A subclass sets ``display_name`` (for messages), ``fit_score_name`` (the metrics row of
    ``fit_scores_``) and implements:

    - ``_fit_frames(preds [n, M, 2], labels [n, 2]) -> {valence: score, arousal: score}``: choose
      and store the fitted parameters on these frames (annotated only) and return their score there;
    - ``_predict_frames(preds [N, M, 2]) -> [N, 2]`` with those parameters;
    - optionally ``_check_fit(preds, keep)`` (raise ValueError on inputs it cannot fit),
      ``_chosen_params()`` (what a fit chose, recorded per split in ``cv_params_``),
      ``_split_fusion`` (how one cross-fitting split is fitted; by default a fresh copy of the
      method whose whole choice runs on the split's training frames alone), ``summary`` and
      ``figure``.

    Constructor arguments are the method's options, every one with a default (scikit-learn style:
    stored under the same name, nothing else done in ``__init__``).
    """

    method: str = ""
    display_name: str = "fusion"
    fit_score_name: str = "fit"

    def __init__(self, cv_splits: int = 5):
        self.cv_splits = cv_splits

    # --- what a method implements ---------------------------------------------------------------

    def _check_fit(self, preds: np.ndarray, keep: np.ndarray) -> None:
        """Raise ValueError if this method cannot be fitted on these predictions (``keep``: annotated)."""

    def _fit_frames(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _fit_frames")

    def _predict_frames(self, preds: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement _predict_frames")

    def _chosen_params(self) -> dict | None:
        """What this fit chose on its frames (JSON-ready), kept per cross-fitting split in
        ``cv_params_``; None (the default): nothing to record."""
        return None

    def _split_fusion(self, preds: np.ndarray, labels: np.ndarray) -> LateFusion:
        """A fusion fitted on one split's training frames (annotated), that predicts its test frames:
        a fresh copy of this method, so everything it chooses is chosen without the test frames."""
        fold = clone(self)
        fold.n_models_ = preds.shape[1]
        fold._fit_frames(preds, labels)
        return fold

    # --- the shared contract --------------------------------------------------------------------

    def fit(self, preds, labels, groups=None) -> LateFusion:
        preds = check_base_predictions(preds, labels)
        labels = np.asarray(labels, dtype=np.float64)
        keep = valid_label_mask(labels)
        self._check_fit(preds, keep)
        if not np.isfinite(preds).all():
            raise ValueError(f"{self.display_name}: base predictions contain NaN or infinite values")
        splits = None
        if groups is not None:
            splits = list(grouped_splits(groups, keep, self.cv_splits, self.display_name))
        self.n_models_ = preds.shape[1]
        scores = self._fit_frames(preds[keep], labels[keep])
        self.fit_scores_ = {
            **{t: float(scores[t]) for t in TARGETS},
            "mean": float(np.mean([scores[t] for t in TARGETS])),
            "n_frames": int(keep.sum()),
        }
        self.cv_scores_ = self.cv_predictions_ = self.cv_params_ = None
        if splits is not None:
            fused, chosen = np.empty_like(labels), []
            for train, test in splits:
                fold = self._split_fusion(preds[train], labels[train])
                fused[test] = fold._predict_frames(preds[test])
                chosen.append(fold._chosen_params())
            self.cv_predictions_, self.cv_params_ = fused, chosen
            self.cv_scores_ = va_scores(fused[keep], labels[keep])
        return self

    def predict(self, preds) -> np.ndarray:
        """[N, 2] fused predictions of [N, M, 2] base predictions."""
        preds = check_base_predictions(preds)
        if preds.shape[1] != self.n_models_:
            raise ValueError(f"{self.display_name} was fitted on {self.n_models_} models, got {preds.shape[1]}")
        return self._predict_frames(preds)

    def summary(self, models: list[str] | None = None) -> dict:
        """JSON-ready record: method, options, the fit score's name and both scores. Subclasses add
        what they fitted (weights, hyper-parameters), by model name where given."""
        return _json_ready(
            {
                "method": self.method,
                **self.get_params(),
                "fit_score_name": self.fit_score_name,
                "fit_scores": self.fit_scores_,
                "cv_scores": self.cv_scores_,
            }
        )

    def model_names(self, models: list[str] | None = None) -> list[str]:
        """The base models' names, or model0, model1, ... when none are given."""
        return list(models) if models is not None else [f"model{m}" for m in range(self.n_models_)]

    def figure(self, preds, labels, models: list[str], path) -> None:
        """PNG at ``path`` of the fit (here: per target, the score on the fitting frames beside the
        cross-fitted one); ``preds``, ``labels``: the fitting frames."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.6))
        x = np.arange(len(TARGETS) + 1)
        rows = [(self.fit_score_name, self.fit_scores_), ("grouped_cv", self.cv_scores_ or {})]
        for k, (name, scores) in enumerate(rows):
            values = [scores.get(key, np.nan) for key in (*TARGETS, "mean")]
            ax.bar(x + (k - 0.5) * 0.38, values, width=0.38, label=name)
        ax.set_xticks(x, [*TARGETS, "mean"])
        ax.set_ylabel("CCC")
        ax.legend(fontsize=7)
        ax.set_title(f"{self.method} of {', '.join(self.model_names(models))}", fontsize=9)
        save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def register_fusion(name: str):
    """Class decorator: register a `LateFusion` subclass as fusion method ``name`` (sets ``cls.method``).

    A name already taken by another class is an error (the registry is shared by the whole package).
    """

    def register(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, LateFusion)):
            raise TypeError(f"register_fusion('{name}'): {cls!r} is not a LateFusion subclass")
        if name in FUSION_METHODS and FUSION_METHODS[name] is not cls:
            raise ValueError(f"fusion method '{name}' is already registered ({FUSION_METHODS[name].__qualname__})")
        without = [p.name for p in _init_parameters(cls) if p.default is inspect.Parameter.empty]
        if without:
            raise TypeError(f"register_fusion('{name}'): option '{without[0]}' of {cls.__qualname__} has no default")
        cls.method = name
        FUSION_METHODS[name] = cls
        return cls

    return register


def _init_parameters(cls: type) -> list[inspect.Parameter]:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{cls.__qualname__}: fusion options must be named (no *args, **kwargs)")
    return parameters


def list_fusions() -> list[str]:
    """The registered fusion methods' names, sorted."""
    return sorted(FUSION_METHODS)


def _fusion_class(method: str) -> type:
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method '{method}'; known: {', '.join(list_fusions())}")
    return FUSION_METHODS[method]


def fusion_options(method: str) -> dict:
    """{option: default} of a registered method: its constructor's keyword arguments."""
    return {p.name: p.default for p in _init_parameters(_fusion_class(method))}


def create_fusion(method: str, **options) -> LateFusion:
    """A new, unfitted fusion of a registered method; an option it does not take is a ValueError."""
    cls = _fusion_class(method)
    accepted = fusion_options(method)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"fusion method '{method}' takes no option '{unknown[0]}'; it takes {', '.join(sorted(accepted))}"
        )
    return cls(**options)
