"""Each kind of bad input gets a one-line error naming the file, or a skip recorded with its reason."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest
import torch
from conftest import REPO, mini_dataset_config, write_labels, write_video

from vapipe.config import ConfigError, check_config
from vapipe.data.affwild2 import DatasetError
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.audio import extract_audio
from vapipe.features.extract import embed_face_trial

CLIP = "clipA-60-64x48"


def manifest_of(root, **kwargs):
    return build_manifest(DatasetLayout.from_config(mini_dataset_config(root)), **kwargs)


def assert_fails_then_skips(root, file_part: str, message: str, trial: str):
    """`fail` raises one line naming the file; `skip` drops only that trial and says why."""
    with pytest.raises(DatasetError, match=message) as error:
        manifest_of(root)
    assert file_part in str(error.value) and "\n" not in str(error.value)
    manifest, skipped = manifest_of(root, on_bad_trial="skip")
    assert trial not in set(manifest["trial"]) and len(manifest) >= 2
    assert skipped["trial"].tolist() == [trial] and re.search(message, skipped["reason"][0])


def test_corrupt_video(mini_dataset):
    path = mini_dataset / "videos/batch1" / f"{CLIP}.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    assert_fails_then_skips(mini_dataset, f"{CLIP}.mp4", "unreadable video", CLIP)


def test_truncated_video(mini_dataset):
    path = mini_dataset / "videos/batch1" / f"{CLIP}.mp4"
    path.write_bytes(path.read_bytes()[:300])
    assert_fails_then_skips(mini_dataset, f"{CLIP}.mp4", "unreadable video", CLIP)


def test_video_without_audio_stream(mini_dataset):
    write_video(mini_dataset / "videos/batch1" / f"{CLIP}.mp4", Fraction(30000, 1001), 12, audio_seconds=None)
    assert_fails_then_skips(mini_dataset, f"{CLIP}.mp4", "no audio stream", CLIP)
    manifest, skipped = manifest_of(mini_dataset, require_audio=False)  # a visual-only config is fine
    assert CLIP in set(manifest["trial"]) and skipped.empty
    with pytest.raises(DatasetError, match=f"{CLIP}.mp4: no audio stream"):
        extract_audio(mini_dataset / "videos/batch1" / f"{CLIP}.mp4", mini_dataset / "out.wav")


def test_video_with_zero_frames(mini_dataset):
    write_video(mini_dataset / "videos/batch1" / f"{CLIP}.mp4", Fraction(25), 0, audio_seconds=0.5)
    assert_fails_then_skips(mini_dataset, f"{CLIP}.mp4", "(zero frames|unreadable video|no video stream)", CLIP)


@pytest.mark.parametrize(
    "rows, message",
    [
        (["x,y"], "expected header"),  # becomes the header line below
        (["0.1,abc"], "non-numeric value"),
        (["0.1,1.7"], r"outside \[-1, 1\]"),
        (["0.1,0.1"] * 40, "40 rows for trial"),  # far more rows than the 12 frames
    ],
)
def test_bad_annotation_files(mini_dataset, rows, message):
    path = mini_dataset / "annotations/VA_Estimation_Challenge/Train_Set" / f"{CLIP}.txt"
    if rows == ["x,y"]:
        path.write_text("x,y\n0.1,0.1\n")
    else:
        write_labels(path, rows)
    assert_fails_then_skips(mini_dataset, f"{CLIP}.txt", message, CLIP)


def test_trial_folder_without_images(mini_dataset):
    folder = mini_dataset / "cropped_aligned/duo_left"
    shutil.rmtree(folder)
    folder.mkdir()
    assert_fails_then_skips(mini_dataset, "cropped_aligned/duo_left", "no face crops", "duo_left")


def test_test_list_trial_that_does_not_exist(mini_dataset):
    (mini_dataset / "names_of_videos_in_each_test_set/test.txt").write_text("testvid\nghost\n")
    with (mini_dataset / "example.txt").open("a") as handle:
        handle.write("ghost/00001.jpg,0,0\n")
    assert_fails_then_skips(mini_dataset, "test.txt", "no raw video 'ghost.mp4/.avi'", "ghost")


def test_example_rows_for_a_trial_not_in_the_test_list(mini_dataset):
    with (mini_dataset / "example.txt").open("a") as handle:
        handle.write("stranger/00001.jpg,0,0\n")
    with pytest.raises(DatasetError, match="example.txt: trial 'stranger' is not in"):
        manifest_of(mini_dataset)


class PixelFace:
    modality, dim, device = "face", 1, torch.device("cpu")

    def embed(self, images):
        return images[:, 0, 0, :1].float().numpy()


def test_a_jpg_that_is_not_an_image(mini_dataset):
    folder = mini_dataset / "cropped_aligned/duo_left"
    (folder / "00004.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DatasetError, match=r"duo_left/00004.jpg: not a readable image"):
        embed_face_trial(PixelFace(), folder, n_rows=10, batch_size=4)


def test_unknown_backbone_kind_and_model_name_name_the_key():
    import yaml

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["backbones"]["voice_wavlm"]["kind"] = "wav2vec9"
    with pytest.raises(ConfigError, match="backbones.voice_wavlm.kind 'wav2vec9' is unknown"):
        check_config(config)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["systems"]["tcn_av"]["model"] = "tcn_fusionn"
    with pytest.raises(ConfigError, match="systems.tcn_av.model 'tcn_fusionn' is unknown"):
        check_config(config)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["systems"]["tcn_av"]["features"] = ["face_nope"]
    with pytest.raises(ConfigError, match="systems.tcn_av.features names unknown backbone 'face_nope'"):
        check_config(config)


def dry_run_with(workdir, override) -> subprocess.CompletedProcess:
    """`snakemake -n` of the default config with one more config file on top."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--cores",
        "1",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(override),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_config_failing_the_schema_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("folds: {k: two}\n")
    result = dry_run_with(tmp_path, bad)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'two' is not of type 'integer'" in output and "'k'" in output


def test_a_bad_crop_found_during_extraction_skips_only_that_trial(mini_dataset, tmp_path):
    from vapipe.features.cache import is_complete, store_path
    from vapipe.features.extract import extract_shard
    from vapipe.training.run import skipped_in_shards

    manifest, _ = manifest_of(mini_dataset)
    (mini_dataset / "cropped_aligned/duo_left/00004.jpg").write_bytes(b"this is not a jpeg")
    spec = {"kind": "timm", "id": "mobilenetv3_small_050", "pretrained": False, "input": "face", "batch_size": 4}
    args = ("face", spec, manifest, 0, 1, tmp_path / "features", {})
    with pytest.raises(DatasetError, match="duo_left/00004.jpg: not a readable image"):
        extract_shard(*args)
    summary = extract_shard(*args, on_bad_trial="skip").set_index("trial")
    assert summary.loc["duo_left", "status"] == "skipped" and "00004.jpg" in summary.loc["duo_left", "reason"]
    assert not is_complete(store_path(tmp_path / "features", "face", "duo_left"))
    assert all(is_complete(store_path(tmp_path / "features", "face", t)) for t in ("duo_right", "testvid", CLIP))
    summary.reset_index().to_csv(tmp_path / "shard.tsv", sep="\t", index=False)
    assert skipped_in_shards([tmp_path / "shard.tsv"]) == {"duo_left"}


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("systems: {tcn_av: {train: {learning_rate: 0.1}}}", "systems.tcn_av.train.learning_rate", "lr"),
        ("backbones: {voice_wavlm: {layr: -2}}", "backbones.voice_wavlm.layr", "layer"),
        ("systems: {tcn_av: {params: {hiden: 8}}}", "systems.tcn_av.params.hiden", "hidden"),
        (
            "fusions: {av: {method: dwf, systems: [tcn_av, sage], folds: [official], pool_sise: 3000}}",
            "fusions.av.pool_sise",
            "pool_size",
        ),
    ],
)
def test_a_typo_anywhere_stops_the_dry_run_naming_the_key_and_the_closest_one(tmp_path, override, key, hint):
    typo = tmp_path / "typo.yaml"
    typo.write_text(override + "\n")
    result = dry_run_with(tmp_path, typo)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if key in line]
    assert len(lines) == 1 and f"did you mean '{hint}'?" in lines[0], result.stdout + result.stderr
