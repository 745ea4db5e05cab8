"""DASP's 3x3 region prototypes from a CLIP text tower (vapipe.features.text_prototypes)."""

from vapipe.features.text_prototypes import compute_prototypes, save_prototypes
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    spec = sm.params.spec
    prototypes = compute_prototypes(
        spec["id"], pretrained=spec["pretrained"], weights=spec["weights"], config=spec["config"], seed=spec["seed"]
    )
    save_prototypes(sm.output[0], prototypes, {"tower": sm.wildcards.tower, **spec})
