"""Late fusion of frame-level predictions (issue 5).

Base models' per-frame tables (after upsampling to the frame rate, before the final smoothing) are
aligned (`align_predictions`), fused by a registered `LateFusion` method built by name
(`create_fusion`, `list_fusions`; `vapipe.fusion.base`): Dirichlet weighted fusion "dwf"
(`DirichletWeightedFusion`) or random-forest stacking "random_forest" (`ForestFusion`), both of
Dresvyanskiy et al. (paper 001, sec. 3.3), fitted on out-of-fold predictions
(`out_of_fold_predictions`). Fold models' test predictions are averaged
(`average_folds`) or chosen per target (`targetwise_fold_selection`, SAGE, paper 000).
"""

from vapipe.fusion.base import (
    FUSION_METHODS,
    LateFusion,
    create_fusion,
    fusion_options,
    list_fusions,
    register_fusion,
)
from vapipe.fusion.dirichlet import DirichletWeightedFusion, apply_weights, dirichlet_pool, pool_ccc
from vapipe.fusion.folds import (
    align_predictions,
    average_folds,
    frame_labels,
    fused_table,
    out_of_fold_predictions,
    targetwise_fold_selection,
)
from vapipe.fusion.forest import ForestFusion

__all__ = [
    "FUSION_METHODS",
    "DirichletWeightedFusion",
    "ForestFusion",
    "LateFusion",
    "align_predictions",
    "apply_weights",
    "average_folds",
    "create_fusion",
    "dirichlet_pool",
    "frame_labels",
    "fused_table",
    "fusion_options",
    "list_fusions",
    "out_of_fold_predictions",
    "pool_ccc",
    "register_fusion",
    "targetwise_fold_selection",
]
