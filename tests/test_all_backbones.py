"""Every backbone of config/backbones_all.yaml extracts on the tiny demo through snakemake."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from test_workflow import snakemake

from vapipe.features.cache import read_extra, read_store, store_path

CONFIGS = ("config/config.yaml", "tests/config/tiny.yaml", "config/backbones_all.yaml")
ALL = yaml.safe_load((REPO / "config/backbones_all.yaml").read_text())["backbones"]
# Kinds whose package is an optional extra run only where it is installed.
OPTIONAL = {"opensmile": "opensmile"}


def export_tiny_onnx_face_model(path) -> None:
    """A random timm ResNet-18 as ONNX: stands in for the IResNet-50 / ArcFace file a user has."""
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 112, 112),),
        str(path),
        input_names=["input.1"],
        output_names=["embedding"],
        dynamic_axes={"input.1": {0: "batch"}},
        dynamo=False,
    )


@pytest.mark.slow
def test_every_backbone_extracts_on_the_tiny_demo(tmp_path):
    pytest.importorskip("onnx")  # torch.onnx.export (test extra)
    export_tiny_onnx_face_model(tmp_path / ALL["face_iresnet50_onnx"]["weights"])
    names = [
        n for n, spec in ALL.items() if spec["kind"] not in OPTIONAL or importlib.util.find_spec(OPTIONAL[spec["kind"]])
    ]
    targets = [f"results/features/{name}/shards/0.tsv" for name in names]
    # Two CPU jobs at once, one thread each, so they overlap their start-up (imports); the default
    # profile's gpu=1 cap would run them one by one.
    result = snakemake(
        tmp_path,
        *targets,
        "--cores",
        "2",
        "--resources",
        "gpu=2",
        "--set-threads",
        "embed_faces=1",
        "embed_audio=1",
        configs=CONFIGS,
    )
    assert result.returncode == 0, result.stderr[-5000:]

    manifest = pd.read_csv(tmp_path / "results/manifest.tsv", sep="\t")
    rates = {}
    for name in names:
        summary = pd.read_csv(tmp_path / f"results/features/{name}/shards/0.tsv", sep="\t")
        assert set(summary["trial"]) == set(manifest["trial"]) and (summary["status"] == "computed").all()
        rates[name] = summary["n_rows"].sum() / summary["seconds"].sum()
        for row in manifest.itertuples():
            store = read_store(store_path(tmp_path / "results/features", name, row.trial))
            assert store.features.shape[0] == row.n_rows and np.isfinite(store.features).all()
            assert store.valid.any() and store.attrs["backbone"] == name
            # Frames differ (faces move, the voice talks): a constant store would mean a broken path.
            assert store.features[store.valid].std(axis=0).max() > 0
    stores = {n: read_store(store_path(tmp_path / "results/features", n, manifest["trial"][0])) for n in names}
    assert stores["face_r3d18"].features.shape[1] == 512 and stores["voice_vggish"].features.shape[1] == 128
    assert stores["voice_logmel"].features.shape[1] == 128 and stores["face_iresnet50_onnx"].features.shape[1] == 512
    flipped = read_extra(
        store_path(tmp_path / "results/features", "face_efficientnet_b1", manifest["trial"][0]), "features_flipped"
    )
    assert flipped.shape == stores["face_efficientnet_b1"].features.shape
    print("frames/s per backbone (tiny variants):", {k: round(v, 1) for k, v in rates.items()})
