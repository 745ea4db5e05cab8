"""Face backbones: uint8 crops [B, H, W, 3] in, one embedding per crop (or per clip) out.

Every kind resizes the whole crop to its input size: Aff-Wild2 crops are already tight aligned
faces, so the centre crop of ImageNet evaluation (timm's ``crop_pct``) would cut off the chin and
brows. See `vapipe.features.backbones` for the table of kinds and the papers that use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vapipe.features.backbones import Backbone, register_backbone
from vapipe.runtime import autocast_on


def resize_crops(images: torch.Tensor, size: int, device: torch.device, mode: str = "bilinear") -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, size, size] in [0, 1] on `device`."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode=mode, antialias=True)
        if mode == "bicubic":  # bicubic overshoots; PIL's uint8 resize clips the same way
            x = x.clamp_(0.0, 1.0)
    return x


def channel_stats(values, device: torch.device) -> torch.Tensor:
    """A scalar or 3 per-channel values as a [1, 3, 1, 1] tensor."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).reshape(-1, 1, 1).expand(3, 1, 1)[None]


@register_backbone("timm")
class TimmFaceBackbone(Backbone):
    """A timm image model with its classifier removed; one pooled embedding per face crop.

    Input size, interpolation and mean/std follow timm's data config of the model
    (``resolve_model_data_config``); ``image_size`` overrides the size for models that accept any
    (CNNs), ``model_args`` are passed to ``timm.create_model`` (e.g. a smaller random ViT).
    """

    modality = "face"

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | None = None,
        model_args: dict | None = None,
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
            **(model_args or {}),
        )
        # channels_last: faster convolutions on CPU (oneDNN) and on GPU tensor cores.
        self.model.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)
        data_config = timm.data.resolve_model_data_config(self.model)
        self.image_size = int(image_size or data_config["input_size"][-1])
        self.interpolation = data_config.get("interpolation", "bilinear")
        if self.interpolation not in ("bilinear", "bicubic"):
            self.interpolation = "bilinear"
        self.mean = channel_stats(data_config["mean"], self.device)
        self.std = channel_stats(data_config["std"], self.device)
        try:  # the pooled width; num_features misses e.g. MobileNetV3's head
            with torch.inference_mode():
                probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
                self.dim = int(self.model(probe).shape[-1])
        except (RuntimeError, AssertionError) as error:
            raise ValueError(
                f"backbone '{name}': timm model '{id}' does not take {self.image_size}-px input "
                f"(its data config says {data_config['input_size'][-1]}); drop image_size: {error}"
            ) from None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, S, S] on the model's device."""
        x = resize_crops(images, self.image_size, self.device, self.interpolation)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """Embeddings [B, D] of a batch of uint8 crops [B, H, W, 3]."""
        x = self.preprocess(images)
        with autocast_on(self.device):
            out = self.model(x)
        return out.float().cpu().numpy()


@register_backbone("hf_clip_vision")
class CLIPVisionBackbone(Backbone):
    """The image tower of a transformers CLIP model (DASP: openai/clip-vit-base-patch16).

    ``output: image_embeds`` is the projected embedding that CLIP compares with text (512-d for
    ViT-B/16); ``output: pooler_output`` the tower's pooled CLS token (768-d). Resize, centre crop
    and mean/std are the checkpoint's CLIPImageProcessor settings.
    """

    modality = "face"
    OUTPUTS = ("image_embeds", "pooler_output")

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = False,
        weights: str | None = None,
        config: dict | None = None,
        output: str = "image_embeds",
        device: str = "cpu",
    ):
        from transformers import AutoConfig, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        super().__init__(name, device)
        if output not in self.OUTPUTS:
            raise ValueError(f"backbone '{name}': output '{output}' is not one of {', '.join(self.OUTPUTS)}")
        if pretrained or weights:
            source = str(weights or id)
            vision_config = AutoConfig.from_pretrained(source)
            if vision_config.model_type == "clip":  # a whole CLIP checkpoint: keep its projection width
                projection_dim = vision_config.projection_dim
                vision_config = vision_config.vision_config
                vision_config.projection_dim = projection_dim
            self.model = CLIPVisionModelWithProjection.from_pretrained(source, config=vision_config)
            processor = CLIPImageProcessor.from_pretrained(source)
        else:
            self.model = CLIPVisionModelWithProjection(CLIPVisionConfig(**(config or {})))
            size = self.model.config.image_size  # the processor's defaults, sized to this model
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.model.eval().requires_grad_(False).to(self.device)
        self.output = output
        self.resize_to = int(processor.size.get("shortest_edge") or processor.size["height"])
        self.crop = int(processor.crop_size["height"])
        self.mean = channel_stats(processor.image_mean, self.device)
        self.std = channel_stats(processor.image_std, self.device)
        cfg = self.model.config
        self.dim = int(cfg.projection_dim if output == "image_embeds" else cfg.hidden_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> CLIP pixel_values [B, 3, crop, crop]."""
        x = resize_crops(images, self.resize_to, self.device, "bicubic")
        offset = (self.resize_to - self.crop) // 2
        x = x[..., offset : offset + self.crop, offset : offset + self.crop]
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """Embeddings [B, D] of a batch of uint8 crops [B, H, W, 3]."""
        x = self.preprocess(images)
        with autocast_on(self.device):
            if self.output == "image_embeds":
                out = self.model(pixel_values=x).image_embeds
            else:  # the tower's pooled (post-layernorm CLS) output, before the projection
                out = self.model.vision_model(pixel_values=x).pooler_output
        return out.float().cpu().numpy()


@register_backbone("onnx")
class OnnxFaceBackbone(Backbone):
    """A user's ONNX face model run by onnxruntime (IResNet-50 / ArcFace are shipped this way).

    The spec says how the model wants its input: ``input_size`` (square, px), ``mean`` and ``std``
    in pixel units (ArcFace: 127.5 and 127.5, i.e. (x - 127.5) / 127.5), ``layout`` NCHW or NHWC,
    ``channel_order`` RGB or BGR. The embedding is the first output (or ``output_name``), flattened.
    """

    modality = "face"

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = True,
        weights: str | None = None,
        input_size: int = 112,
        mean: float | list[float] = 127.5,
        std: float | list[float] = 127.5,
        layout: str = "NCHW",
        channel_order: str = "RGB",
        output_name: str | None = None,
        device: str = "cpu",
    ):
        import onnxruntime as ort

        super().__init__(name, device)
        if not weights or not Path(weights).is_file():
            raise ValueError(f"backbone '{name}': kind onnx needs weights: a local .onnx file (got {weights!r})")
        if layout not in ("NCHW", "NHWC") or channel_order not in ("RGB", "BGR"):
            raise ValueError(f"backbone '{name}': layout must be NCHW/NHWC and channel_order RGB/BGR")
        wanted = ["CUDAExecutionProvider"] if self.device.type == "cuda" else []
        providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the rule's threads, set by the script
        self.session = ort.InferenceSession(str(weights), options, providers=providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch = model_input.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.output_name = output_name or self.session.get_outputs()[0].name
        self.image_size = int(input_size)
        self.layout, self.bgr = layout, channel_order == "BGR"
        self.mean = channel_stats(mean, torch.device("cpu")) / 255.0
        self.std = channel_stats(std, torch.device("cpu")) / 255.0
        self.dim = int(self.embed(torch.zeros(1, self.image_size, self.image_size, 3, dtype=torch.uint8)).shape[1])

    def preprocess(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [B, H, W, 3] -> the model's float32 input array."""
        x = (resize_crops(images, self.image_size, torch.device("cpu")) - self.mean) / self.std
        if self.bgr:
            x = x.flip(1)
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        """Embeddings [B, D] of a batch of uint8 crops [B, H, W, 3]."""
        x = self.preprocess(images)
        step = self.fixed_batch or len(x)  # models exported with batch 1 run one crop at a time
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            if len(chunk) < step:  # a fixed batch: pad the last chunk, drop the padding after
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
            out = self.session.run([self.output_name], {self.input_name: chunk})[0]
            outputs.append(out.reshape(len(out), -1)[: len(x) - start])
        return np.concatenate(outputs).astype(np.float32)


@register_backbone("torchvision_video")
class VideoClipBackbone(Backbone):
    """A torchvision video network (IACA: R3D-18 on Kinetics-400) over a clip of face crops.

    The clip of frame i is ``clip_length`` crops ``clip_stride`` frames apart, centred on i (see
    `vapipe.features.clips`); the feature is the network's pooled 512-d vector before its
    classifier. Pretrained weights come from torchvision's weights API (``weights="DEFAULT"``:
    KINETICS400_V1 for r3d_18); mean/std and input size are those weights' transforms. A local
    ``weights:`` file is a state_dict of the same torchvision model.
    """

    modality = "face_clip"

    def __init__(
        self,
        name: str,
        id: str = "r3d_18",
        pretrained: bool = False,
        weights: str | None = None,
        clip_length: int = 16,
        clip_stride: int = 1,
        image_size: int | None = None,
        device: str = "cpu",
    ):
        from torchvision.models import get_model, get_model_weights

        super().__init__(name, device)
        if clip_length < 1 or clip_stride < 1:
            raise ValueError(f"backbone '{name}': clip_length and clip_stride must be >= 1")
        self.model = get_model(id, weights="DEFAULT" if pretrained and not weights else None)
        if weights:
            self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.dim = int(self.model.fc.in_features)
        self.model.fc = torch.nn.Identity()
        self.model.eval().requires_grad_(False).to(self.device)
        transforms = get_model_weights(id).DEFAULT.transforms()  # constants only: nothing is fetched
        self.image_size = int(image_size or transforms.crop_size[0])
        self.mean = channel_stats(transforms.mean, self.device)
        self.std = channel_stats(transforms.std, self.device)
        self.clip_length, self.clip_stride = int(clip_length), int(clip_stride)

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, L, H, W, 3] -> normalised float [B, 3, L, S, S]."""
        b, length = clips.shape[:2]
        x = resize_crops(clips.reshape(b * length, *clips.shape[2:]), self.image_size, self.device)
        x = (x - self.mean) / self.std
        return x.reshape(b, length, 3, self.image_size, self.image_size).transpose(1, 2)

    @torch.inference_mode()
    def embed_clips(self, clips: torch.Tensor) -> np.ndarray:
        """Embeddings [B, D] of a batch of uint8 clips [B, L, H, W, 3]."""
        with autocast_on(self.device):
            out = self.model(self.preprocess(clips))
        return out.float().cpu().numpy()
