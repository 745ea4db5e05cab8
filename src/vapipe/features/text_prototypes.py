"""CLIP text prototypes of the nine valence-arousal regions of DASP (paper 004, sec. 3.3).

The VA plane is split into a 3 x 3 grid with centres {-0.66, 0, 0.66}^2 (sec. 4.4, Table 3). Each
region has a short description; its prototype is the mean, over the paper's three templates, of
the L2-normalised CLIP text embeddings (the projected ``text_embeds``, the space CLIP compares
with ``image_embeds``). The mean is not re-normalised here, so a prototype's norm is at most 1;
the DASP model normalises it again before the cosine similarity.

Region order everywhere (prototype rows, `region_centres`, DASP's soft labels): valence outer,
arousal inner, both ascending, i.e. row ``3 * i_valence + i_arousal``.

The paper names only three of the nine states ("low-energy", "uncomfortable", "highly-aroused");
the other six are Russell's circumplex terms for the remaining cells (see `REGIONS`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from vapipe.errors import InputError
from vapipe.features.weights import hubs_offline, missing_weights
from vapipe.va_regions import REGIONS, region_descriptions

TEMPLATES = (
    "a photo of a person who looks {}",
    "a face showing {}",
    "a facial expression of {}",
)
"""The three prompt templates of DASP sec. 3.3, verbatim."""


def region_prompts(templates: tuple[str, ...] = TEMPLATES) -> list[list[str]]:
    """[9][len(templates)] prompt strings: every template filled with every description."""
    return [[t.format(text) for t in templates] for text in region_descriptions()]


def byte_level_clip_tokenizer():
    """A CLIP BPE tokenizer with no merges over the 256 byte symbols (no files, no download).

    Only for ``pretrained: false`` (a random text tower for the demo and offline tests): every
    word is split into single bytes, which is all a random tower can use anyway.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def load_text_tower(
    model_id_or_dir: str, pretrained: bool, weights: str | None = None, config: dict | None = None, seed: int = 0
):
    """(CLIPTextModelWithProjection, tokenizer), the ecosystem's way.

    ``weights`` (a local folder) replaces the hub id; a whole-CLIP checkpoint keeps its top-level
    ``projection_dim`` (the text config inside it carries a default). With ``pretrained=False``
    and no ``weights`` the tower is built with seeded random weights from ``config`` (keys of
    CLIPTextConfig) and paired with `byte_level_clip_tokenizer`.
    """
    from transformers import AutoConfig, AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    if pretrained or weights:
        source = str(weights or model_id_or_dir)
        try:
            text_config = AutoConfig.from_pretrained(source)
        except OSError as error:
            if weights or not hubs_offline():
                raise
            raise InputError(missing_weights(f"text tower '{model_id_or_dir}'", source, error)) from None
        if text_config.model_type == "clip":  # a whole CLIP checkpoint
            projection_dim = text_config.projection_dim
            text_config = text_config.text_config
            text_config.projection_dim = projection_dim
        model = CLIPTextModelWithProjection.from_pretrained(source, config=text_config)
        tokenizer = AutoTokenizer.from_pretrained(source)
    else:
        tokenizer = byte_level_clip_tokenizer()
        specials = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "vocab_size": len(tokenizer),
        }
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(seed)
            model = CLIPTextModelWithProjection(CLIPTextConfig(**{**(config or {}), **specials}))
    eos = model.config.eos_token_id
    if eos != 2 and eos != tokenizer.eos_token_id:  # 2: legacy configs pool at argmax(input_ids)
        raise ValueError(
            f"text tower '{model_id_or_dir}': config eos_token_id {eos} differs from the tokenizer's "
            f"{tokenizer.eos_token_id}; the pooled (EOS) embedding would be read at the wrong position"
        )
    return model.eval().requires_grad_(False), tokenizer


@torch.inference_mode()
def compute_prototypes(
    model_id_or_dir: str,
    pretrained: bool,
    weights: str | None = None,
    device: str = "cpu",
    templates: tuple[str, ...] = TEMPLATES,
    config: dict | None = None,
    seed: int = 0,
) -> np.ndarray:
    """[9, D] region prototypes: mean over templates of L2-normalised CLIP ``text_embeds``.

    Each prompt is encoded on its own (no padding), so the pooled EOS token is never a pad.
    """
    model, tokenizer = load_text_tower(model_id_or_dir, pretrained, weights, config, seed)
    model.to(device)
    rows = []
    for prompts in region_prompts(templates):
        embeddings = []
        for prompt in prompts:
            ids = tokenizer(
                prompt, return_tensors="pt", truncation=True, max_length=model.config.max_position_embeddings
            ).to(device)
            embeddings.append(model(**ids).text_embeds[0].float())
        unit = torch.nn.functional.normalize(torch.stack(embeddings), dim=-1)
        rows.append(unit.mean(dim=0))
    return torch.stack(rows).cpu().numpy().astype(np.float32)


def save_prototypes(path: str | Path, array: np.ndarray, meta: dict | None = None) -> Path:
    """Write prototypes [9, D] to ``path`` (.npy) and ``meta`` plus the regions to a .json beside it.

    Both files are written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != len(REGIONS):
        raise ValueError(f"prototypes must be [{len(REGIONS)}, D], got {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:  # a handle: np.save would append .npy to a bare name
        np.save(handle, array)
    os.replace(tmp, path)
    info = {
        "regions": [{"valence": v, "arousal": a, "description": d} for v, a, d in REGIONS],
        "templates": list(TEMPLATES),
        "shape": list(array.shape),
        **(meta or {}),
    }
    meta_path = path.with_suffix(".json")
    tmp = meta_path.with_name(f".{meta_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, meta_path)
    return path
