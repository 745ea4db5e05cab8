"""Audio features land on the right video rows: checked with a tone burst at a known time.

The signal is exact silence except a 1 kHz burst from 1.50 s to 1.60 s. A native frame or window
that does not reach the burst sees only silence, so its feature equals the silence feature
exactly; one that holds the burst differs. If a kind reported wrong centre times, rows near the
burst would fall on the wrong side of that line.
"""

import numpy as np
import pytest

from vapipe.features.backbones import create_backbone
from vapipe.features.extract import embed_audio_trial

RATE, FPS = 16_000, 25.0
BURST = (1.50, 1.60)
N_ROWS = 75  # 3 s at 25 fps: row i spans [i / 25, (i + 1) / 25)


def burst_signal() -> np.ndarray:
    wave = np.zeros(3 * RATE, np.float32)
    start, end = int(BURST[0] * RATE), int(BURST[1] * RATE)
    wave[start:end] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(end - start) / RATE)
    return wave


def test_logmel_native_frames_and_rows_see_the_burst_exactly_where_it_is():
    backbone = create_backbone("voice_logmel", {"kind": "logmel", "id": "logmel", "input": "mixture"})
    wave = burst_signal()
    native, centres = backbone.embed_waveform(wave)
    energy = native.max(axis=1)  # the loudest band: the tone's
    silence = np.log(1e-6)
    half = 0.0125 + 1.0 / RATE  # a 25 ms window around the reported centre
    outside = (centres + half < BURST[0]) | (centres - half > BURST[1])
    inside = (centres - half > BURST[0]) & (centres + half < BURST[1])
    assert inside.sum() == 7 and outside.sum() > 250  # centres 1.52 .. 1.58 s
    np.testing.assert_allclose(energy[outside], silence, atol=1e-4)
    assert (energy[inside] > silence + 10).all()

    rows, valid = embed_audio_trial(backbone, wave, FPS, N_ROWS, (native, centres))
    row_energy = rows.max(axis=1)
    # Rows 37 .. 40 ([1.48, 1.64)) hold frames that reach the burst; no other row does.
    assert (row_energy[37:41] > silence + 1).all() and (row_energy[[38, 39]] > silence + 10).all()
    np.testing.assert_allclose(row_energy[np.r_[0:37, 41:N_ROWS]], silence, atol=1e-4)
    assert valid.all()


TINY_AST = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_length": 64,
    "num_mel_bins": 32,
    "time_stride": 16,
    "frequency_stride": 16,
}

WINDOWED = {
    "vggish": ({"kind": "vggish", "id": "vggish"}, lambda b: 0.4875),
    "spectrogram_cnn": (
        # timm zero-inits each block's last BN: a random ResNet would be little more than shortcuts.
        {
            "kind": "spectrogram_cnn",
            "id": "resnet18",
            "n_mels": 32,
            "window_seconds": 0.5,
            "model_args": {"zero_init_last": False},
        },
        lambda b: (b.length - 1) / 2 * 0.01 + 0.0125,
    ),
    "ast": ({"kind": "ast", "id": "ast", "config": TINY_AST}, lambda b: b.window / 2 / RATE),
}


@pytest.mark.parametrize("kind", sorted(WINDOWED))
def test_windowed_kinds_put_one_window_on_each_row_and_time_it_by_its_centre(kind):
    spec, half_extent = WINDOWED[kind]
    backbone = create_backbone(f"voice_{kind}", {**spec, "input": "mixture", "hop_seconds": "frame"})
    wave = burst_signal()
    native, centres = backbone.embed_waveform(wave, fps=FPS)
    row_centres = (np.arange(N_ROWS) + 0.5) / FPS
    assert len(native) == N_ROWS
    np.testing.assert_allclose(centres, row_centres, atol=0.005 + 1e-9)  # on the 10 ms grid at worst
    rows, valid = embed_audio_trial(backbone, wave, FPS, N_ROWS, (native, centres))
    np.testing.assert_array_equal(rows, native)  # each row's span holds exactly its own window
    half, margin = half_extent(backbone), 0.011
    clear = (centres + half < BURST[0] - margin) | (centres - half > BURST[1] + margin)
    holds = (centres - half < BURST[0] - margin) & (centres + half > BURST[1] + margin)
    assert clear.sum() >= 10 and holds.sum() >= 5
    silence = rows[0]  # row 0's window is silence (and silent padding)
    assert clear[0]
    np.testing.assert_allclose(rows[clear], np.broadcast_to(silence, rows[clear].shape), atol=1e-6)
    assert (np.abs(rows[holds] - silence).max(axis=1) > 2e-5).all()  # random nets: small but real
