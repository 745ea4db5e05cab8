"""Offline clusters: `vapipe fetch-weights` fills one cache folder (the libraries' own cache
layouts), and jobs then load from it with the hubs offline; a model missing from the cache stops
with one line naming the command. No hub is reachable here, so the cache is filled from tiny
models saved locally, in the layout the Hugging Face hub cache uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from vapipe.features.weights import cache_environment

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_WAVLM = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
}


def put_in_hub_cache(cache: Path, repo_id: str, save) -> Path:
    """Store a model as `huggingface_hub` stores a download: models--org--name/snapshots/<commit>/
    with refs/main naming the commit."""
    repo = cache / "huggingface/hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    save(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def weights_cache(tmp_path) -> Path:
    from transformers import WavLMConfig, WavLMModel

    cache = tmp_path / "weights"
    model = WavLMModel(WavLMConfig(**TINY_WAVLM))
    put_in_hub_cache(cache, "tiny-org/wavlm-tiny", model.save_pretrained)
    return cache


def run_offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **cache_environment(cache, offline=True), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_a_cached_backbone_loads_offline_and_a_missing_one_names_the_command(weights_cache):
    code = """
import numpy as np
from vapipe.cli import main
from vapipe.features.backbones import create_backbone
backbone = create_backbone("voice", {"kind": "hf_audio", "id": "tiny-org/wavlm-tiny", "pretrained": True,
                                     "input": "mixture"})
features, centres = backbone.embed_waveform(np.zeros(16000, np.float32))
print("DIM", backbone.dim, features.shape)
create_backbone("other", {"kind": "hf_audio", "id": "tiny-org/not-fetched", "pretrained": True, "input": "mixture"})
"""
    result = run_offline(weights_cache, code)
    assert "DIM 32 (49, 32)" in result.stdout, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "backbone 'other': pretrained weights of 'tiny-org/not-fetched' are not in the weights cache" in last
    assert "run 'vapipe fetch-weights CONFIG'" in last


def test_fetch_weights_builds_every_pretrained_model_of_the_config_into_the_cache(weights_cache, tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["backbones"]["voice_wavlm"] = {
        "kind": "hf_audio",
        "id": "tiny-org/wavlm-tiny",
        "pretrained": True,
        "input": "mixture",
    }
    config["paths"] = {"weights": str(weights_cache)}
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}  # no hub here
    result = subprocess.run(
        [sys.executable, "-m", "vapipe.cli", "fetch-weights", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "backbones.voice_wavlm: 'tiny-org/wavlm-tiny' is in the cache" in result.stdout
    assert f"{weights_cache}: 1 pretrained models cached" in result.stdout  # random-init ones are not fetched
    config["backbones"]["voice_wavlm"]["id"] = "tiny-org/elsewhere"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "vapipe.cli", "fetch-weights", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "'tiny-org/elsewhere' are not in the weights cache" in result.stderr


@pytest.mark.slow
def test_workflow_jobs_load_backbones_from_the_cache_with_the_hubs_offline(weights_cache, tmp_path):
    override = {
        "backbones": {
            "voice_cached": {"kind": "hf_audio", "id": "tiny-org/wavlm-tiny", "pretrained": True, "input": "mixture"}
        },
        "paths": {"weights": str(weights_cache)},
    }
    (tmp_path / "offline.yaml").write_text(yaml.safe_dump(override))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "results/features/voice_cached/shards/0.tsv",
        "--cores",
        "2",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path / "run"),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(REPO / "tests/config/tiny.yaml"),
        str(tmp_path / "offline.yaml"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TORCH_HOME", "TRANSFORMERS_"))}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run/logs/embed/voice_cached/0.log").read_text()
    assert "pretrained weights of 'tiny-org/wavlm-tiny'" in log
    from vapipe.features.cache import read_store

    store = next((tmp_path / "run/results/features/voice_cached").glob("*.zarr"))
    assert read_store(store).features.shape[1] == 32 and np.isfinite(read_store(store).features).all()
