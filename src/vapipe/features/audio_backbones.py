"""Audio backbones: a 16 kHz mono waveform in, native frames [M, D] and their centre times out.

``embed_waveform(samples, fps=None, progress=None)`` is the one interface; `fps` is the video's
frame rate (needed only by ``hop_seconds: frame``), `progress` a `vapipe.features.progress.Progress`
counting seconds of audio. See `vapipe.features.backbones` for the table of kinds.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from vapipe.features.alignment import native_frame_centres
from vapipe.features.audio_windows import (
    frame_window_starts,
    gather_windows,
    pad_frames,
    pad_samples,
    sample_window_starts,
    window_centres,
)
from vapipe.features.backbones import Backbone, register_backbone
from vapipe.features.progress import Progress
from vapipe.runtime import autocast_on

SAMPLE_RATE = 16_000


def _advance(progress: Progress | None, seconds: float) -> None:
    """Count `seconds` of audio as done."""
    if progress is not None:
        progress.advance(seconds)


def _no_weights(name: str, kind: str, pretrained: bool, weights: str | None) -> None:
    """Hand-crafted features have no weights: say so instead of silently ignoring them."""
    if pretrained or weights:
        raise ValueError(f"backbone '{name}': kind {kind} has no weights; set pretrained: false, weights: null")


@register_backbone("hf_audio")
class HFAudioBackbone(Backbone):
    """A transformers speech encoder (WavLM, wav2vec2, HuBERT) read at one hidden layer.

    PDEM (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim) declares a custom head class in
    its config; ``AutoModel`` maps its model_type to ``Wav2Vec2Model`` and loads the encoder
    weights, leaving the head out. The conv front end's stride and receptive field give each
    native frame's centre time, which `vapipe.features.alignment.pool_to_frames` maps onto video
    frames.
    """

    modality = "audio"
    sample_rate = SAMPLE_RATE

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
    def embed_waveform(
        self, samples: np.ndarray, fps: float | None = None, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
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
            _advance(progress, len(chunk) / self.sample_rate)
        return np.concatenate(features), np.concatenate(centres)


class WindowedAudioBackbone(Backbone):
    """Shared part of the kinds that embed one window at a time, centred on a grid of times."""

    modality = "audio"
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, device: str, hop_seconds: float | str, batch_windows: int):
        super().__init__(name, device)
        window_centres(1.0, hop_seconds, 1.0)  # reject a bad hop at build time, not mid-run
        self.hop_seconds = hop_seconds
        self.batch_windows = int(batch_windows)

    def embed_waveform(
        self, samples: np.ndarray, fps: float | None = None, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One feature per window and the window's centre time in seconds."""
        centres = window_centres(len(samples) / self.sample_rate, self.hop_seconds, fps)
        return self.embed_at(np.asarray(samples, dtype=np.float32), centres, progress)

    def embed_at(
        self, samples: np.ndarray, centres: np.ndarray, progress: Progress | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features [len(centres), D] of windows centred near `centres`, and their true centres."""
        raise NotImplementedError


def fft_size(win: int, n_mels: int) -> int:
    """Smallest power of two >= win whose bins leave no mel band empty (128 bands need 1024)."""
    import torchaudio

    n_fft = 1 << (win - 1).bit_length()
    while True:
        with warnings.catch_warnings():  # torchaudio warns about the very empty bands probed for here
            warnings.simplefilter("ignore", UserWarning)
            bands = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE)
        if (bands.max(dim=0).values > 0).all():
            return n_fft
        n_fft *= 2


class LogMelFrontEnd:
    """torchaudio log mel spectrogram with centred frames: frame j is centred at j * hop.

    The FFT is zero-padded beyond the window (`fft_size`) so that every mel band holds a bin;
    the window itself, and so each frame's time span, stays `win_ms` long.
    """

    def __init__(self, n_mels: int, win_ms: float, hop_ms: float, log_offset: float, device: torch.device):
        import torchaudio

        self.win = int(round(win_ms * SAMPLE_RATE / 1000))
        self.hop = int(round(hop_ms * SAMPLE_RATE / 1000))
        self.device = device
        self.log_offset = log_offset
        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=fft_size(self.win, n_mels),
            win_length=self.win,
            hop_length=self.hop,
            n_mels=n_mels,
            center=True,
            power=2.0,
        ).to(device)

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log mel frames [N, n_mels] and their centre times in seconds."""
        x = torch.from_numpy(np.asarray(samples, dtype=np.float32)).to(self.device)
        if len(x) <= self.win // 2:  # reflect padding needs more samples than half a window
            x = torch.nn.functional.pad(x, (0, self.win // 2 + 1 - len(x)))
        mel = torch.log(self.transform(x) + self.log_offset).T.cpu().numpy()
        return mel, np.arange(len(mel)) * self.hop / SAMPLE_RATE


@register_backbone("logmel")
class LogMelBackbone(Backbone):
    """Log mel spectrogram frames as features (USTC's LogMel stream, 128 bins)."""

    modality = "audio"
    sample_rate = SAMPLE_RATE
    has_weights = False

    def __init__(
        self,
        name: str,
        id: str = "logmel",
        pretrained: bool = False,
        weights: str | None = None,
        n_mels: int = 128,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        log_offset: float = 1e-6,
        device: str = "cpu",
    ):
        super().__init__(name, device)
        _no_weights(name, "logmel", pretrained, weights)
        self.front_end = LogMelFrontEnd(n_mels, win_ms, hop_ms, log_offset, self.device)
        self.dim = int(n_mels)

    def embed_waveform(
        self, samples: np.ndarray, fps: float | None = None, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log mel frames [N, n_mels] and centre times j * hop."""
        features, centres = self.front_end(samples)
        _advance(progress, len(samples) / SAMPLE_RATE)
        return features, centres


@register_backbone("spectrogram_cnn")
class SpectrogramCNNBackbone(WindowedAudioBackbone):
    """A timm CNN with one input channel on log mel windows (IACA: ResNet-18 on spectrograms).

    The track's log mel spectrogram is standardised with its own mean and std (so loudness
    differences within a track remain), cut into ``window_seconds`` windows and fed as a
    [1, n_mels, frames] image; the feature is the CNN's pooled vector. ``pretrained: true`` loads
    timm's ImageNet weights with the first convolution summed over RGB (timm's ``in_chans=1``).
    """

    def __init__(
        self,
        name: str,
        id: str = "resnet18",
        pretrained: bool = False,
        weights: str | None = None,
        model_args: dict | None = None,
        n_mels: int = 64,
        hop_ms: float = 10.0,
        window_seconds: float = 1.0,
        hop_seconds: float | str = "frame",
        batch_windows: int = 64,
        device: str = "cpu",
    ):
        import timm

        super().__init__(name, device, hop_seconds, batch_windows)
        overlay = {"file": str(weights)} if weights else None
        self.model = timm.create_model(
            id,
            pretrained=bool(pretrained or weights),
            pretrained_cfg_overlay=overlay,
            num_classes=0,
            in_chans=1,
            **(model_args or {}),
        )
        self.model.eval().requires_grad_(False).to(self.device)
        self.front_end = LogMelFrontEnd(n_mels, 25.0, hop_ms, 1e-6, self.device)
        self.length = max(1, int(round(window_seconds * 1000 / hop_ms)))
        with torch.inference_mode():
            self.dim = int(self.model(torch.zeros(1, 1, n_mels, self.length, device=self.device)).shape[-1])

    @torch.inference_mode()
    def embed_at(
        self, samples: np.ndarray, centres: np.ndarray, progress: Progress | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pooled CNN features of log mel windows centred near `centres`."""
        mel, _ = self.front_end(samples)
        mel = (mel - mel.mean()) / (mel.std() + 1e-6)
        frame_hop = self.front_end.hop / SAMPLE_RATE
        starts, true_centres = frame_window_starts(len(mel), 0.0, frame_hop, self.length, centres)
        padded = pad_frames(mel, self.length, float(mel.min()))  # silence: the track's floor
        features = []
        for i in range(0, len(starts), self.batch_windows):
            windows = gather_windows(padded, starts[i : i + self.batch_windows], self.length)
            x = torch.from_numpy(windows).to(self.device).transpose(1, 2)[:, None]  # [B, 1, mels, frames]
            with autocast_on(self.device):
                features.append(self.model(x).float().cpu().numpy())
            _advance(progress, len(windows) * len(samples) / SAMPLE_RATE / len(starts))
        return np.concatenate(features), true_centres


@register_backbone("vggish")
class VGGishBackbone(WindowedAudioBackbone):
    """VGGish (USTC: 128-d) from the ``torchvggish`` package, on 0.96 s log mel windows.

    The log mel front end is torchvggish's port of the original ``mel_features`` (25 ms window,
    10 ms hop, 64 bands, 125-7500 Hz, log offset 0.01): frame j is centred at 12.5 ms + j * 10 ms,
    and a 96-frame window at the mean of its first and last frame centres. The feature is the
    network's 128-d embedding before the PCA/quantisation post-processor. ``pretrained: true``
    loads the package's ported AudioSet weights (``torchvggish.vggish``, downloaded by torch.hub);
    ``weights:`` is a local copy of that state_dict.
    """

    def __init__(
        self,
        name: str,
        id: str = "vggish",
        pretrained: bool = False,
        weights: str | None = None,
        hop_seconds: float | str = "frame",
        batch_windows: int = 64,
        device: str = "cpu",
    ):
        from torchvggish import torchvggish as tv
        from torchvggish import vggish_params

        super().__init__(name, device, hop_seconds, batch_windows)
        if pretrained and not weights:
            self.model = tv.vggish(postprocess=False)
        else:
            self.model = tv.VGG(tv.make_layers(), postprocess=False)
            if weights:
                self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval().requires_grad_(False).to(self.device)
        self.params = vggish_params
        self.frame_hop = vggish_params.STFT_HOP_LENGTH_SECONDS
        self.window_length = vggish_params.STFT_WINDOW_LENGTH_SECONDS
        self.length = int(round(vggish_params.EXAMPLE_WINDOW_SECONDS / self.frame_hop))  # 96 frames
        self.dim = int(vggish_params.EMBEDDING_SIZE)

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """VGGish's log mel frames [N, 64] (torchvggish.mel_features)."""
        from torchvggish import mel_features

        p = self.params
        minimum = int(round(self.window_length * SAMPLE_RATE))
        if len(samples) < minimum:
            samples = np.pad(samples, (0, minimum - len(samples)))
        return mel_features.log_mel_spectrogram(
            samples,
            audio_sample_rate=SAMPLE_RATE,
            log_offset=p.LOG_OFFSET,
            window_length_secs=p.STFT_WINDOW_LENGTH_SECONDS,
            hop_length_secs=p.STFT_HOP_LENGTH_SECONDS,
            num_mel_bins=p.NUM_MEL_BINS,
            lower_edge_hertz=p.MEL_MIN_HZ,
            upper_edge_hertz=p.MEL_MAX_HZ,
        ).astype(np.float32)

    @torch.inference_mode()
    def embed_at(
        self, samples: np.ndarray, centres: np.ndarray, progress: Progress | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """128-d embeddings of 0.96 s windows centred near `centres`."""
        mel = self.log_mel(samples)
        first_centre = self.window_length / 2.0
        starts, true_centres = frame_window_starts(len(mel), first_centre, self.frame_hop, self.length, centres)
        padded = pad_frames(mel, self.length, float(np.log(self.params.LOG_OFFSET)))  # log of silence
        features = []
        for i in range(0, len(starts), self.batch_windows):
            windows = gather_windows(padded, starts[i : i + self.batch_windows], self.length)
            x = torch.from_numpy(windows).to(self.device)[:, None]  # [B, 1, 96, 64]
            with autocast_on(self.device):
                features.append(self.model(x).float().cpu().numpy())
            _advance(progress, len(windows) * len(samples) / SAMPLE_RATE / len(starts))
        return np.concatenate(features), true_centres


@register_backbone("ast")
class ASTBackbone(WindowedAudioBackbone):
    """Audio Spectrogram Transformer (DASP: MIT/ast-finetuned-audioset-10-10-0.4593).

    Each window is exactly ``max_length`` fbank frames of the checkpoint's ASTFeatureExtractor
    (1024 frames of 25 ms every 10 ms: 10.25 s), cut from the waveform padded with silence; the
    extractor makes the normalised 128-bin fbanks, ``ASTModel`` the pooled output (mean of the CLS
    and distillation tokens, 768-d). The window's centre is the feature's time.
    """

    def __init__(
        self,
        name: str,
        id: str,
        pretrained: bool = False,
        weights: str | None = None,
        config: dict | None = None,
        hop_seconds: float | str = 1.0,
        batch_windows: int = 8,
        device: str = "cpu",
    ):
        from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

        super().__init__(name, device, hop_seconds, batch_windows)
        if pretrained or weights:
            source = str(weights or id)
            self.model = ASTModel.from_pretrained(source)
            self.extractor = ASTFeatureExtractor.from_pretrained(source)
        else:
            self.model = ASTModel(ASTConfig(**(config or {})))
            cfg = self.model.config
            self.extractor = ASTFeatureExtractor(max_length=cfg.max_length, num_mel_bins=cfg.num_mel_bins)
        self.model.eval().requires_grad_(False).to(self.device)
        # Kaldi fbank framing (25 ms window, 10 ms shift, snip_edges): max_length frames exactly.
        self.window = int(0.025 * SAMPLE_RATE) + int(0.010 * SAMPLE_RATE) * (self.extractor.max_length - 1)
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def embed_at(
        self, samples: np.ndarray, centres: np.ndarray, progress: Progress | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pooled AST outputs of windows centred near `centres`."""
        padded = pad_samples(samples, self.window)
        starts, true_centres = sample_window_starts(centres, self.window, SAMPLE_RATE, len(samples))
        features = []
        for i in range(0, len(starts), self.batch_windows):
            windows = [padded[s : s + self.window] for s in starts[i : i + self.batch_windows]]
            inputs = self.extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with autocast_on(self.device):
                out = self.model(input_values=inputs["input_values"].to(self.device))
            features.append(out.pooler_output.float().cpu().numpy())
            _advance(progress, len(windows) * len(samples) / SAMPLE_RATE / len(starts))
        return np.concatenate(features), true_centres


@register_backbone("opensmile")
class OpenSmileBackbone(Backbone):
    """openSMILE low-level descriptors (``id``: a FeatureSet name; eGeMAPSv02 gives 25 LLDs).

    Needs the optional extra: ``pip install 'vapipe[egemaps]'``. openSMILE emits a frame every
    10 ms and names each frame's (start, end); the centre is their mean.
    """

    modality = "audio"
    sample_rate = SAMPLE_RATE
    has_weights = False

    def __init__(
        self,
        name: str,
        id: str = "eGeMAPSv02",
        pretrained: bool = False,
        weights: str | None = None,
        device: str = "cpu",
    ):
        try:
            import opensmile
        except ImportError:
            raise ImportError(
                f"backbone '{name}': kind opensmile needs the optional extra: pip install 'vapipe[egemaps]'"
            ) from None
        super().__init__(name, device)
        _no_weights(name, "opensmile", pretrained, weights)
        if not hasattr(opensmile.FeatureSet, id):
            known = ", ".join(m.name for m in opensmile.FeatureSet)
            raise ValueError(f"backbone '{name}': '{id}' is not an openSMILE feature set; known: {known}")
        self.smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, id),
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        self.dim = len(self.smile.feature_names)

    def embed_waveform(
        self, samples: np.ndarray, fps: float | None = None, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """LLD frames [N, D] and the centre of each frame's (start, end)."""
        table = self.smile.process_signal(np.asarray(samples, dtype=np.float32), SAMPLE_RATE)
        starts = table.index.get_level_values("start").total_seconds().to_numpy()
        ends = table.index.get_level_values("end").total_seconds().to_numpy()
        _advance(progress, len(samples) / SAMPLE_RATE)
        return table.to_numpy(dtype=np.float32), (starts + ends) / 2.0
