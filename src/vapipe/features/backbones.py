"""Frozen pretrained backbones, built by registry name from a config entry.

A config entry looks like ``{kind: timm, id: resnet50, pretrained: true, weights: null, ...}``.
Weights are loaded the ecosystem's way (``timm.create_model(..., pretrained=True)``,
``AutoModel.from_pretrained(id_or_dir)``); ``weights:`` points at a local file or folder instead
of the hub; ``pretrained: false`` builds the same architecture with random weights (the demo).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from vapipe.features.alignment import native_frame_centres

log = logging.getLogger(__name__)

BACKBONE_KINDS: dict[str, Callable[..., "Backbone"]] = {}


def register_backbone(kind: str):
    """Class decorator: make a backbone kind constructible by name from config."""

    def add(cls):
        BACKBONE_KINDS[kind] = cls
        return cls

    return add


class Backbone:
    """A frozen feature extractor; `modality` is 'face' (crops in) or 'audio' (waveform in)."""

    modality: str
    dim: int

    def __init__(self, name: str, device: str = "cpu"):
        self.name = name
        self.device = torch.device(device)

    def describe_weights(self, spec: dict) -> str:
        """One plain sentence for the log saying which weights are in use."""
        if spec.get("weights"):
            return f"{self.name}: weights loaded from local path {spec['weights']}"
        if spec.get("pretrained", False):
            return f"{self.name}: pretrained weights of '{spec['id']}'"
        return (
            f"{self.name}: RANDOM weights (pretrained: false) for architecture '{spec['id']}': "
            "features carry no pretrained knowledge"
        )


def create_backbone(name: str, spec: dict, device: str = "cpu") -> Backbone:
    """Build the backbone that config entry `spec` (under backbones.<name>) declares."""
    kind = spec.get("kind")
    if kind not in BACKBONE_KINDS:
        raise ValueError(
            f"backbone '{name}': unknown kind '{kind}'; known kinds: {', '.join(sorted(BACKBONE_KINDS))}"
        )
    options = {k: v for k, v in spec.items() if k not in ("kind", "input", "batch_size", "num_workers", "seed")}
    # Random-init weights come from torch's global generator: seed it so a run is reproducible.
    torch.manual_seed(int(spec.get("seed", 0)))
    backbone = BACKBONE_KINDS[kind](name=name, device=device, **options)
    log.info(backbone.describe_weights(spec))
    return backbone


@register_backbone("timm")
class TimmFaceBackbone(Backbone):
    """A timm image model with its classifier removed; one pooled embedding per face crop."""

    modality = "face"

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | None = None,
        device: str = "cpu",
    ):
        import timm

        super().__init__(name, device)
        overlay = {"file": str(weights)} if weights else None
        self.model = timm.create_model(
            id,
            pretrained=bool(pretrained or weights),
            pretrained_cfg_overlay=overlay,
            num_classes=0,
        )
        # channels_last: faster convolutions on CPU (oneDNN) and on GPU tensor cores.
        self.model.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)
        data_config = timm.data.resolve_model_data_config(self.model)
        self.image_size = int(image_size or data_config["input_size"][-1])
        self.mean = torch.tensor(data_config["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(data_config["std"], device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():  # the pooled width; num_features misses e.g. MobileNetV3's head
            probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
            self.dim = int(self.model(probe).shape[-1])

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, S, S] on the model's device."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = torch.nn.functional.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True
            )
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """Embeddings [B, D] of a batch of uint8 crops [B, H, W, 3]."""
        x = self.preprocess(images)
        with autocast_on(self.device):
            out = self.model(x)
        return out.float().cpu().numpy()


@register_backbone("hf_audio")
class HFAudioBackbone(Backbone):
    """A transformers speech encoder (WavLM, wav2vec2, HuBERT) read at one hidden layer.

    The conv front end's stride and receptive field give each native frame's centre time, which
    `vapipe.features.alignment.pool_to_frames` maps onto video frames.
    """

    modality = "audio"
    sample_rate = 16_000

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = False,
        weights: str | None = None,
        architecture: str | None = None,
        config: dict | None = None,
        layer: int = -1,
        normalize: bool = True,
        chunk_seconds: float = 20.0,
        device: str = "cpu",
    ):
        from transformers import AutoConfig, AutoModel

        super().__init__(name, device)
        if pretrained or weights:
            self.model = AutoModel.from_pretrained(str(weights or id))
        else:
            if not architecture:
                raise ValueError(
                    f"backbone '{name}': pretrained: false needs 'architecture' (e.g. wavlm), "
                    "since the hub config of the id cannot be fetched"
                )
            self.model = AutoModel.from_config(AutoConfig.for_model(architecture, **(config or {})))
        self.model.eval().requires_grad_(False).to(self.device)
        cfg = self.model.config
        self.hop = int(np.prod(cfg.conv_stride))
        self.receptive_field = 1 + int(
            sum((k - 1) * np.prod(cfg.conv_stride[:i]) for i, k in enumerate(cfg.conv_kernel))
        )
        self.layer = layer
        self.normalize = normalize
        self.chunk_samples = int(chunk_seconds * self.sample_rate)
        self.dim = int(cfg.hidden_size)

    @torch.inference_mode()
    def embed_waveform(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native features [M, D] of a 16 kHz waveform and each frame's centre time in seconds.

        Long audio runs in chunks of `chunk_seconds`; each chunk's frames keep their absolute times.
        """
        features, centres = [], []
        for start in range(0, len(samples), self.chunk_samples):
            chunk = np.asarray(samples[start : start + self.chunk_samples], dtype=np.float32)
            if len(chunk) < self.receptive_field:
                if start > 0:
                    break  # a tail shorter than one frame adds nothing
                chunk = np.pad(chunk, (0, self.receptive_field - len(chunk)))
            if self.normalize:
                chunk = (chunk - chunk.mean()) / np.sqrt(chunk.var() + 1e-7)
            x = torch.from_numpy(chunk).to(self.device)[None]
            with autocast_on(self.device):
                out = self.model(x, output_hidden_states=True)
            hidden = out.hidden_states[self.layer][0].float().cpu().numpy()
            features.append(hidden)
            centres.append(
                start / self.sample_rate
                + native_frame_centres(len(hidden), self.hop, self.receptive_field, self.sample_rate)
            )
        return np.concatenate(features), np.concatenate(centres)


def autocast_on(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op context on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)
