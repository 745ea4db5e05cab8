"""Frozen pretrained backbones, built by registry name from a config entry.

A config entry looks like ``{kind: timm, id: resnet50, pretrained: true, weights: null, ...}``.
Weights are loaded the ecosystem's way (``timm.create_model(..., pretrained=True)``,
``AutoModel.from_pretrained(id_or_dir)``, torchvision's weights API); ``weights:`` points at a
local file or folder instead of the hub; ``pretrained: false`` builds the same architecture with
seeded random weights (the demo, and the offline tests).

Face kinds take uint8 face crops ``[B, H, W, 3]`` (112 px in Aff-Wild2) and give one embedding per
crop; every kind resizes the whole crop to its own input size (a 112-px crop feeds a 224-px ViT).

- ``timm``: pooled embedding of a timm image model; size, interpolation and mean/std from timm's
  data config. ResNet-50 (SAGE, 2048-d), EfficientNet-B1 (Dresvyanskiy et al., 1280-d),
  ViT-B/16 (Dresvyanskiy et al., 768-d). One row per crop.
- ``hf_clip_vision``: CLIP image tower via transformers (DASP: openai/clip-vit-base-patch16);
  ``image_embeds`` (512-d projection) or ``pooler_output`` (768-d); CLIPImageProcessor's size and
  mean/std. One row per crop.
- ``onnx``: a user's ``.onnx`` face model run by onnxruntime, e.g. IResNet-50 / ArcFace (USTC,
  512-d); input size, mean/std (pixel units), layout and channel order from the spec.
- ``torchvision_video``: a torchvision video network on a clip of crops centred on each frame
  (IACA: R3D-18, Kinetics-400, 512-d); ``clip_length`` crops ``clip_stride`` frames apart
  (`vapipe.features.clips`); a row is valid only when its own crop exists.

Audio kinds take a 16 kHz mono waveform and return native frames ``[M, D]`` with each frame's
**centre time** in seconds; `vapipe.features.alignment.pool_to_frames` averages the native frames
whose centres fall in a video row's span [i / fps, (i + 1) / fps). How each kind times its frames:

- ``hf_audio``: hidden states of a transformers speech encoder: WavLM-base (SAGE, 768-d),
  wav2vec2-large-robust PDEM (Dresvyanskiy et al., 1024-d). Frame j of the conv front end (stride
  320, receptive field 400 samples) is centred at (320 j + 200) / 16000 s.
- ``ast``: Audio Spectrogram Transformer pooled output of a ~10.24 s window of 128-bin fbanks
  (DASP: MIT/ast-finetuned-audioset-10-10-0.4593, 768-d). Time: the window's centre.
- ``vggish``: VGGish embedding of a 0.96 s log mel window (USTC, 128-d), network and front end
  from the ``torchvggish`` package. Time: the window's centre; ``hop_seconds: frame`` puts one
  window on every video frame, as USTC does.
- ``logmel``: log mel spectrogram, 128 bins, torchaudio (USTC's LogMel stream). Frame j is
  centred at j * hop (centred STFT).
- ``spectrogram_cnn``: a timm CNN with one input channel on log mel windows (IACA: ResNet-18,
  512-d). Time: the window's centre.
- ``opensmile``: openSMILE low-level descriptors, eGeMAPSv02 by default (25-d; optional extra
  ``vapipe[egemaps]``). Time: the middle of the (start, end) openSMILE gives each frame.

Windowed kinds (``ast``, ``vggish``, ``spectrogram_cnn``) centre a window on every ``hop_seconds``
(a number) or on every video frame's centre (``hop_seconds: frame``); the signal is padded with
silence so the first and last windows are full (`vapipe.features.audio_windows`).

Extraction-only keys (``input``, ``batch_size``, ``num_workers``, ``flip``, ``seed``,
``progress_seconds``) are read by `vapipe.features.extract`; every other key is the kind's own
keyword argument, and a key the kind does not take is reported by name.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import torch

from vapipe.errors import InputError
from vapipe.features.weights import hubs_offline, missing_weights
from vapipe.specs import BACKBONE_FIELDS, BackboneSpec, check_keys

# Spec keys the extractor uses; the rest are the kind's constructor arguments.
EXTRACTION_KEYS = ("kind", "input", "batch_size", "num_workers", "seed", "flip", "progress_seconds")

log = logging.getLogger(__name__)

BACKBONE_KINDS: dict[str, Callable[..., Backbone]] = {}


def register_backbone(kind: str):
    """Class decorator: make a backbone kind constructible by name from config."""

    def add(cls):
        BACKBONE_KINDS[kind] = cls
        return cls

    return add


class Backbone:
    """A frozen feature extractor; `modality` is 'face' (crops), 'face_clip' (clips) or 'audio'."""

    modality: str
    dim: int
    has_weights = True  # False for hand-crafted features (log-mel, eGeMAPS)

    def __init__(self, name: str, device: str = "cpu"):
        self.name = name
        self.device = torch.device(device)

    def describe_weights(self, spec: BackboneSpec) -> str:
        """One plain sentence for the log saying which weights are in use."""
        if not self.has_weights:
            return f"{self.name}: hand-crafted features '{spec.id}' (no weights)"
        if spec.weights:
            return f"{self.name}: weights loaded from local path {spec.weights}"
        if spec.pretrained:
            return f"{self.name}: pretrained weights of '{spec.id}'"
        return (
            f"{self.name}: RANDOM weights (pretrained: false) for architecture '{spec.id}': "
            "features carry no pretrained knowledge"
        )


def backbone_options(name: str, spec: dict) -> dict:
    """The kind's constructor arguments in `spec`; a kind or setting it does not know is named."""
    kind = spec.get("kind")
    if kind not in BACKBONE_KINDS:
        raise ValueError(f"backbone '{name}': unknown kind '{kind}'; known kinds: {', '.join(sorted(BACKBONE_KINDS))}")
    options = {k: v for k, v in spec.items() if k not in EXTRACTION_KEYS}
    accepted = set(inspect.signature(BACKBONE_KINDS[kind].__init__).parameters) - {"self", "name", "device"}
    check_keys(f"backbones.{name}", options, accepted | set(BACKBONE_FIELDS))
    return options


def create_backbone(name: str, spec: dict, device: str = "cpu") -> Backbone:
    """Build the backbone that config entry `spec` (under backbones.<name>) declares."""
    settings = BackboneSpec.from_dict(spec, f"backbones.{name}")
    options = backbone_options(name, settings.to_dict())
    cls = BACKBONE_KINDS[settings.kind]
    # Random-init weights come from torch's global generator: seed it so a run is reproducible.
    torch.manual_seed(settings.seed)
    try:
        backbone = cls(name=name, device=device, **options)
    except OSError as error:
        if settings.pretrained and not settings.weights and hubs_offline():
            raise InputError(missing_weights(f"backbone '{name}'", settings.id, error)) from None
        raise
    log.info(backbone.describe_weights(settings))
    return backbone


# The kinds register themselves on import; imported last because they subclass Backbone.
from vapipe.features import audio_backbones, face_backbones  # noqa: E402,F401
