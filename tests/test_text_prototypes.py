"""CLIP text prototypes of DASP's nine VA regions, from tiny random CLIP towers saved locally."""

import json

import numpy as np
import pytest
import torch

from vapipe import va_regions
from vapipe.features import text_prototypes as tp


def test_regions_follow_the_paper_grid_and_templates():
    centres = va_regions.region_centres()
    assert centres.shape == (9, 2)
    np.testing.assert_allclose(np.unique(centres[:, 0]), [-0.66, 0.0, 0.66])
    np.testing.assert_allclose(np.unique(centres[:, 1]), [-0.66, 0.0, 0.66])
    assert len({tuple(c) for c in centres.tolist()}) == 9  # every grid cell once
    np.testing.assert_allclose(centres[[0, 3, 5, 8]], [[-0.66, -0.66], [0, -0.66], [0, 0.66], [0.66, 0.66]])
    descriptions = va_regions.region_descriptions()
    assert len(descriptions) == len(set(descriptions)) == 9
    # the three states the paper names sit in the cells they describe
    assert descriptions[3] == "low-energy" and descriptions[1] == "uncomfortable"
    assert descriptions[5] == "highly-aroused" and descriptions[4] == "neutral"
    assert tp.TEMPLATES == ("a photo of a person who looks {}", "a face showing {}", "a facial expression of {}")
    prompts = tp.region_prompts()
    assert len(prompts) == 9 and all(len(p) == 3 for p in prompts)
    assert prompts[3][1] == "a face showing low-energy"


def _tiny_tokenizer():
    """A CLIP BPE tokenizer written from a byte-symbol vocab (no merges), like vocab.json + merges.txt."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[]), vocab


def _text_config(vocab):
    return {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": len(vocab),
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
        "max_position_embeddings": 64,
    }


@pytest.fixture(scope="module")
def whole_clip(tmp_path_factory):
    """A tiny whole-CLIP checkpoint (text + vision, projection 16) and its tokenizer, saved together."""
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("clip")
    tokenizer, vocab = _tiny_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=_text_config(vocab),
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def _reference(model, tokenizer):
    """Mean over templates of the unit CLIP text features, computed through CLIPModel itself."""
    rows = []
    with torch.inference_mode():
        for prompts in tp.region_prompts():
            feats = []
            for p in prompts:
                out = model.get_text_features(**tokenizer(p, return_tensors="pt"))
                feats.append(getattr(out, "pooler_output", out)[0])
            feats = torch.stack(feats)
            rows.append((feats / feats.norm(dim=-1, keepdim=True)).mean(0))
    return torch.stack(rows).numpy()


def test_prototypes_from_a_saved_whole_clip_checkpoint(whole_clip):
    folder, model, tokenizer = whole_clip
    prototypes = tp.compute_prototypes("openai/clip-vit-base-patch16", pretrained=True, weights=str(folder))
    assert prototypes.shape == (9, 16)  # the checkpoint's projection width, not the text config default
    assert prototypes.dtype == np.float32
    norms = np.linalg.norm(prototypes, axis=1)
    assert (norms <= 1.0 + 1e-6).all() and (norms < 1.0 - 1e-4).any()  # means of distinct unit vectors
    np.testing.assert_allclose(prototypes, _reference(model, tokenizer), rtol=1e-5, atol=1e-6)
    again = tp.compute_prototypes(str(folder), pretrained=True)
    np.testing.assert_array_equal(prototypes, again)  # deterministic; the id is the folder here


def test_prototypes_from_a_saved_text_tower(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer, vocab = _tiny_tokenizer()
    torch.manual_seed(1)
    tower = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(vocab), projection_dim=8)).eval()
    tower.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    prototypes = tp.compute_prototypes(str(tmp_path), pretrained=True)
    assert prototypes.shape == (9, 8)
    with torch.inference_mode():
        unit = [
            torch.nn.functional.normalize(tower(**tokenizer(p, return_tensors="pt")).text_embeds[0], dim=0)
            for p in tp.region_prompts()[4]
        ]
    np.testing.assert_allclose(prototypes[4], torch.stack(unit).mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_random_text_tower_needs_no_files_and_is_seeded():
    config = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "projection_dim": 12,
    }
    a = tp.compute_prototypes("openai/clip-vit-base-patch16", pretrained=False, config=config, seed=3)
    b = tp.compute_prototypes("openai/clip-vit-base-patch16", pretrained=False, config=config, seed=3)
    c = tp.compute_prototypes("openai/clip-vit-base-patch16", pretrained=False, config=config, seed=4)
    assert a.shape == (9, 12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert (np.linalg.norm(a, axis=1) <= 1.0 + 1e-6).all()


def test_save_prototypes_writes_npy_and_meta_atomically(tmp_path):
    array = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
    path = tp.save_prototypes(tmp_path / "sub" / "prototypes.npy", array, {"model": "tiny"})
    np.testing.assert_array_equal(np.load(path), array)
    meta = json.loads((tmp_path / "sub" / "prototypes.json").read_text())
    assert meta["model"] == "tiny" and meta["shape"] == [9, 5]
    assert [r["description"] for r in meta["regions"]] == va_regions.region_descriptions()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["prototypes.json", "prototypes.npy"]
    with pytest.raises(ValueError, match=r"\[9, D\]"):
        tp.save_prototypes(tmp_path / "bad.npy", np.zeros((8, 5)))
