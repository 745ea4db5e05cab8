"""Pretrained weights for clusters whose compute nodes cannot reach the model hubs.

With ``paths.weights`` set, every library keeps its downloads in that one folder, each the way it
caches on its own: transformers and timm in a Hugging Face hub cache (``HF_HOME``), torchvision and
torch-hub downloads such as VGGish under ``TORCH_HOME``. `fetch_weights` (``vapipe fetch-weights
CONFIG``, run once on a login node that has internet) builds every pretrained backbone and text
tower the config uses, which fills the cache; workflow jobs then run with the hubs offline
(``HF_HUB_OFFLINE=1``), and a backbone whose weights are not in the cache stops with one line that
says to run that command.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def cache_environment(folder: str | Path, offline: bool) -> dict[str, str]:
    """Environment variables that put every library's weights cache in `folder`."""
    folder = Path(folder).resolve()
    env = {"HF_HOME": str(folder / "huggingface"), "TORCH_HOME": str(folder / "torch")}
    if offline:
        env |= dict.fromkeys(OFFLINE_FLAGS, "1")
    return env


def use_weights_cache(folder: str | Path | None, offline: bool) -> None:
    """Point this process (and the jobs it starts) at the cache; call it before the libraries are
    imported, since they read these variables once. None leaves the libraries' defaults."""
    if folder is not None:
        os.environ.update(cache_environment(folder, offline))


def hubs_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True", "yes")


def missing_weights(what: str, model_id: str, error: Exception) -> str:
    """One line: which weights the cache lacks, and the command that fetches them."""
    home = os.environ.get("HF_HOME", "the default cache")
    return (
        f"{what}: pretrained weights of '{model_id}' are not in the weights cache ({home}) and the hubs are "
        f"offline; run 'vapipe fetch-weights CONFIG' where the hub is reachable ({type(error).__name__})"
    )


def fetch_weights(spec, log=print) -> list[dict]:
    """Build every pretrained backbone and text tower of a `PipelineSpec` once, which downloads
    what the cache lacks; one row per model: name, id, seconds."""
    import time

    from vapipe.features.backbones import create_backbone
    from vapipe.features.text_prototypes import load_text_tower

    rows = []
    jobs = [
        (f"backbones.{name}", b.id, lambda n=name, b=b: create_backbone(n, b.to_dict()))
        for name, b in spec.backbones.items()
        if b.pretrained and not b.weights
    ]
    jobs += [
        (f"text_towers.{name}", t.id, lambda t=t: load_text_tower(t.id, pretrained=True))
        for name, t in spec.text_towers.items()
        if t.pretrained and not t.weights
    ]
    for what, model_id, build in jobs:
        start = time.perf_counter()
        build()
        rows.append({"name": what, "id": model_id, "seconds": round(time.perf_counter() - start, 1)})
        log(f"{what}: '{model_id}' is in the cache ({rows[-1]['seconds']} s)")
    return rows
