import numpy as np

from vapipe.features.alignment import frame_spans, native_frame_centres, pool_to_frames


def test_native_centres_of_wav2vec2_front_end():
    centres = native_frame_centres(3, hop=320, receptive_field=400, sample_rate=16000)
    np.testing.assert_allclose(centres, [0.0125, 0.0325, 0.0525])


def test_pooling_averages_the_native_frames_inside_each_video_frame():
    # Native frames every 20 ms whose value is their own centre time: the pooled value of a video
    # frame must be the mean centre of the native frames falling in its span.
    centres = native_frame_centres(500, 320, 400, 16000)  # 10 s
    native = centres[:, None]
    fps = 30000 / 1001
    pooled, valid = pool_to_frames(native, centres, n_rows=301, fps=fps, audio_seconds=10.0)
    # row 300 starts at 10.01 s (29.97 fps), after the audio: the only invalid row
    starts, ends = frame_spans(301, fps)
    assert valid[:300].all() and not valid[300]
    for i in (0, 7, 150, 299):
        inside = centres[(centres >= starts[i]) & (centres < ends[i])]
        assert abs(pooled[i, 0] - inside.mean()) < 1e-9
        assert starts[i] <= pooled[i, 0] < ends[i]  # the right time, not shifted by 30 vs 29.97


def test_rows_beyond_the_audio_repeat_the_last_frame_and_are_invalid():
    centres = native_frame_centres(50, 320, 400, 16000)  # 1 s of audio
    native = np.arange(50, dtype=float)[:, None]
    pooled, valid = pool_to_frames(native, centres, n_rows=32, fps=30.0, audio_seconds=1.0)
    assert valid[:30].all() and not valid[30:].any()
    assert pooled[31, 0] == 49.0


def test_frames_faster_than_the_hop_take_the_nearest_native_frame():
    centres = native_frame_centres(10, 320, 400, 16000)
    native = np.arange(10, dtype=float)[:, None]
    pooled, _ = pool_to_frames(native, centres, n_rows=20, fps=100.0, audio_seconds=0.2)
    assert set(np.unique(pooled)) <= set(range(10))
    assert pooled[1, 0] == 0.0  # span [10, 20) ms, midpoint 15 ms: nearest centre 12.5 ms
