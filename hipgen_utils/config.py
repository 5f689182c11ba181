"""Configuration: one dataclass per concern, three named profiles, one switch.

The switch is the profile name: an argument, else ``$HIPGEN_PROFILE``, else ``demo``.
The CLI (``--key value``) and the notebooks' parameters cell override the same field
names (the seed's flag names: ``batch_size``, ``n_updates``, ``n_hiddens`` ...).

Why one file of about 430 lines: every setting with its default and a comment saying what
it does, and the three profiles that change them, are read together: whoever asks "what
does `demo` change, and why" finds it all here. Most of the lines are those comments.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

PROFILE_ENV = "HIPGEN_PROFILE"
RUN_DIR_ENV = "HIPGEN_RUN_DIR"
CACHE_ENV = "HIPGEN_CACHE"
DATA_ENV = "HIPMRI_DATA"
PROFILE_NAMES = ("full", "demo", "ci")
DEFAULT_PROFILE = "demo"

REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """A bad profile name, override key or value (message is one line)."""


# ---- validation: the dataclasses check themselves on construction (so `override`, the
# CLI flags and the notebooks' parameters cell all refuse a bad value the same way, in one
# line, before any work) instead of failing later with a ZeroDivisionError or a traceback.

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(name) -> str:
    """`name` if it names a device `devices.pick_device` understands, else ConfigError."""
    ok = isinstance(name, str) and (
        name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())
    )
    if not ok:
        raise ConfigError(f"device={name!r} is not a device; use {DEVICES}")
    return name


def _number(obj, name):
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), -float("inf")):
        raise ConfigError(f"{name}={v!r} must be a finite number")
    return v


def _at_least(obj, low, *names):
    for name in names:
        if _number(obj, name) < low:
            raise ConfigError(f"{name}={getattr(obj, name)!r} must be >= {low}")


def _positive(obj, *names):
    for name in names:
        if not _number(obj, name) > 0:
            raise ConfigError(f"{name}={getattr(obj, name)!r} must be > 0")


def _fraction(obj, *names):
    for name in names:
        if not 0 <= _number(obj, name) < 1:
            raise ConfigError(f"{name}={getattr(obj, name)!r} must be in [0, 1)")


def _one_of(obj, name, choices):
    if getattr(obj, name) not in choices:
        raise ConfigError(f"{name}={getattr(obj, name)!r} is not supported; use one of {', '.join(choices)}")


def _multiple_of_4(obj, name, zero_ok=False):
    v = getattr(obj, name)
    if not (zero_ok and v == 0) and (v < 4 or v % 4):
        extra = " (0 = off)" if zero_ok else ""
        raise ConfigError(f"{name}={v!r} must be a multiple of 4, at least 4{extra}: the code grid is 1/4 of it")


@dataclass
class DataConfig:
    """Where the slices come from and how they are prepared."""

    data_dir: str | None = None  # None -> $HIPMRI_DATA -> built-in phantom
    height: int = 256  # axis 0, left-right
    width: int = 128  # axis 1, anterior-posterior
    resize_mode: str = "resize"  # "resize" (anti-aliased) or "crop" (centre crop/pad)
    norm: str = "robust"  # "robust" (0.5-99.5 percentile min-max), "minmax", "zscore"
    skip_bad: bool = False
    # phantom used when no real data is given: case-weeks per split, slices per case-week
    phantom_train: int = 191
    phantom_validate: int = 11
    phantom_test: int = 9
    phantom_slices: int = 60
    phantom_seed: int = 0

    def __post_init__(self):
        _multiple_of_4(self, "height")
        _multiple_of_4(self, "width")
        _one_of(self, "resize_mode", ("resize", "crop"))
        _one_of(self, "norm", ("robust", "minmax", "zscore"))
        _at_least(self, 1, "phantom_train", "phantom_slices")
        _at_least(self, 0, "phantom_validate", "phantom_test", "phantom_seed")


CODE_STRIDE = 4  # the VQ-VAE's two stride-2 stages: one code per 4x4 pixels


def code_grid(data: DataConfig | None = None) -> tuple[int, int]:
    """The code grid (h, w) of the data config's slices: (height / 4, width / 4), 64x32 for
    the default 256x128. The one place that says so."""
    data = data if data is not None else DataConfig()
    return data.height // CODE_STRIDE, data.width // CODE_STRIDE


CODE_GRID = code_grid()  # (64, 32): the default of every function that takes a grid shape


@dataclass
class VQVAEConfig:
    """VQ-VAE model and its training (seed defaults = ``full``)."""

    n_hiddens: int = 128
    n_residual_hiddens: int = 32
    n_residual_layers: int = 2
    embedding_dim: int = 64
    n_embeddings: int = 512
    beta: float = 0.25
    codebook: str = "ema"  # "ema" (decay + Laplace smoothing) or "loss" (plain codebook loss)
    ema_decay: float = 0.99
    restart_dead: bool = True  # re-seed codes unused for `dead_after` updates
    dead_after: int = 100
    batch_size: int = 32
    n_updates: int = 5000
    learning_rate: float = 3e-4
    log_interval: int = 50
    lr_schedule: str = "cosine"  # "cosine" (decay to 0 over n_updates) or "constant"
    crop: int = 0  # train on random crop x crop patches (0 = whole slices); the model is convolutional
    val_images: int = 128  # validation images scored at each log step
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        _at_least(self, 2, "n_hiddens", "n_embeddings")
        if self.n_hiddens % 2:
            raise ConfigError(f"n_hiddens={self.n_hiddens!r} must be even (the encoder halves it)")
        _at_least(self, 1, "n_residual_hiddens", "embedding_dim", "dead_after", "batch_size", "n_updates",
                  "log_interval", "val_images")  # fmt: skip
        _at_least(self, 0, "n_residual_layers", "beta", "seed")
        _positive(self, "learning_rate")
        _fraction(self, "ema_decay")
        _one_of(self, "codebook", ("ema", "loss"))
        _one_of(self, "lr_schedule", ("cosine", "constant"))
        _multiple_of_4(self, "crop", zero_ok=True)
        check_device(self.device)


@dataclass
class PixelCNNConfig:
    """Gated PixelCNN prior over code grids, and its training (defaults = the shipped model at
    the ``full`` profile's size; `demo` and `ci` change only sizes and budgets).

    The model: a conditional gated PixelCNN (van den Oord et al. 2016) whose vertical stack is
    dilated, whose second half sees its mirror rows, and whose logits get code tables (see
    `hipgen_utils.pixelcnn`). Each of the three can be switched off for an ablation
    (`hipgen bench prior --compare`); every profile ships with all three on."""

    n_channels: int = 128
    n_layers: int = 15
    kernel_size: int = 5
    conditional: bool = True  # condition on slice position (0..n_slices-1)
    positional: bool = True  # gate biases from the (row, col) position in the grid
    n_slices: int = 60  # replaced in training by the data's max slice index + 1 (kept in the checkpoint)
    v_dilation: int = 8  # vertical stack row dilations cycle 1, 2, 4, .., v_dilation (a power of 2; 1 = off)
    mirror: bool = True  # rows of the second half also see their mirror rows across the midline
    tables: bool = True  # full-rank logit tables looked up from the codes left, up, up-left, up-right (and around the mirror position)
    # the budget is counted in updates, like the VQ-VAE's, so it does not grow with the data
    # set: 40 epochs of the release's 11,460 training slices in batches of 32
    n_updates: int = 14320
    max_seconds: float = 0.0  # also stop after this many seconds, the cosine schedule fitted to it (0 = no limit)
    batch_size: int = 32
    cpu_bf16: bool = True  # train in bf16 autocast on CPUs with native bf16 (~2x); CUDA always uses bf16
    learning_rate: float = 1e-3
    log_interval: int = 358  # validate and checkpoint every this many updates (and at the last)
    val_grids: int = 0  # validation grids scored at each log step, evenly spaced (0 = all)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        _at_least(self, 1, "n_channels", "n_layers", "n_slices", "batch_size", "n_updates", "log_interval",
                  "v_dilation")  # fmt: skip
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size={self.kernel_size!r} must be an odd number >= 3")
        if self.v_dilation & (self.v_dilation - 1):
            raise ConfigError(f"v_dilation={self.v_dilation!r} must be a power of 2 (1 = off)")
        _positive(self, "learning_rate")
        _at_least(self, 0, "seed", "max_seconds", "val_grids")
        check_device(self.device)


# What a prior checkpoint's config meant by a field it does not have (written before the field
# existed): the model of that time. Filled in by `from_dict`, so old checkpoints still load.
PRIOR_LEGACY = {"positional": False, "v_dilation": 1, "mirror": False, "tables": False, "max_seconds": 0.0}
# Variants that lost their ablations and left the package (docs/experiments.md has their
# results): a checkpoint that switched one on says so in one line; off, the field is dropped.
PRIOR_REMOVED = {
    "order": "lr", "dropout": 0.0, "attn_layers": 0, "top_codes": 0, "table_decay": 0.0,
    "attn_heads": None, "attn_dim": None, "attn_pool": None, "top_factor": None, "top_channels": None,
    "top_layers": None, "top_dilation": None, "top_updates": None,
}  # fmt: skip
REMOVED_IN = "78c3881"  # the last commit that had them


def upgrade_prior_config(d: dict, history: dict | None = None) -> dict:
    """A prior checkpoint's config dict in today's fields: removed variants dropped (refused
    in one line when one was on), fields it predates filled with their old values, and an
    epoch budget (`epochs`, before budgets were counted in updates) turned into `n_updates`
    with the updates per epoch its `history` recorded."""
    d = dict(d)
    for key, off in PRIOR_REMOVED.items():
        value = d.pop(key, off)
        if off is not None and value != off:
            raise ConfigError(
                f"this prior was trained with {key}={value!r}, a variant removed from hipgen (its results are in "
                f"docs/experiments.md); `git checkout {REMOVED_IN}` to use it, or retrain the prior"
            )
    for key, old in PRIOR_LEGACY.items():
        d.setdefault(key, old)
    epochs = d.pop("epochs", None)
    if "n_updates" not in d and epochs is not None:
        steps, done = (history or {}).get("step") or [], (history or {}).get("epoch") or []
        per_epoch = steps[-1] / done[-1] if steps and done and done[-1] else 1
        d["n_updates"] = max(1, round(epochs * per_epoch))
    return d


@dataclass
class SampleConfig:
    """Sampling and sample-quality evaluation."""

    n_samples: int = 16
    # 0.7 (the `full` prior's; `demo` samples at 1 among the 8 likeliest codes, see its profile): on a GPU the `full`
    # prior's samples at 0.7 hold both femoral heads as often as the test slices
    # (bone_pairs_ratio 1.03 against 0.68 at 1.0) and fewer are empty than at 0.5 (0.8 % against
    # 2.7 %), with no near-copies of training slices
    temperature: float = 0.7
    # the first lines (code rows in sampling order) are drawn at temperature 1: below 1 the
    # likeliest code at the slice's left edge is air, row after row, and some samples drew
    # their body late or not at all (see sampling.sample)
    lead_lines: int = 8
    top_k: int = 0  # sample among the k likeliest codes at each position (0 = all)
    seed: int = 0
    n_eval_samples: int = 256  # samples scored against train/test images
    n_sweep_samples: int = 128  # samples per temperature in 06_sample's temperature sweep

    def __post_init__(self):
        _at_least(self, 1, "n_samples", "n_sweep_samples")
        _at_least(self, 2, "n_eval_samples")  # a Fréchet distance needs a covariance
        _positive(self, "temperature")
        _at_least(self, 0, "top_k", "seed", "lead_lines")


@dataclass
class JudgeConfig:
    """The anatomy judge: a small U-Net segmenter trained on the data's labels, and how much
    it scores (see hipgen_utils.segmenter and hipgen_utils.judge)."""

    seg_base_channels: int = 16  # U-Net width at full resolution (x2 per level)
    seg_levels: int = 3  # downsamplings (the slice sides must divide by 2**levels)
    seg_scale: int = 2  # the U-Net sees slices block-averaged by this factor (logits upsampled back)
    seg_patch: int = 96  # square training patches, in full-size pixels (0 = whole slices)
    seg_batch_size: int = 8
    seg_n_updates: int = 600
    seg_learning_rate: float = 3e-3
    seg_bf16: bool = True  # train under bf16 autocast on CPUs with native bf16 (~2x); CUDA always
    trust_dice: float = 0.85  # a class is trusted where the segmenter's test Dice reaches this
    n_completion: int = 64  # test slices completed (seeded subset; all when fewer)
    completion_seeds: int = 2  # completions per slice
    n_anatomy: int = 256  # at most this many images per compared set (samples, train, unigram, test)
    seed: int = 0

    def __post_init__(self):
        _at_least(self, 1, "seg_base_channels", "seg_levels", "seg_scale", "seg_batch_size", "seg_n_updates",
                  "n_completion", "completion_seeds")  # fmt: skip
        _at_least(self, 0, "seg_patch", "seed")
        _at_least(self, 2, "n_anatomy")
        _positive(self, "seg_learning_rate")
        if not 0 < _number(self, "trust_dice") <= 1:
            raise ConfigError(f"trust_dice={self.trust_dice!r} must be in (0, 1]")


@dataclass
class Config:
    profile: str
    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    pixelcnn: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _profiles() -> dict[str, Config]:
    # every profile ships the same prior (PixelCNNConfig's defaults: dilated vertical stack,
    # mirror context, code tables, chosen by `hipgen bench prior --compare`); they differ in
    # size and budget. Why each number: docs/experiments.md
    full = Config("full")
    demo = Config(
        "demo",
        data=DataConfig(phantom_train=24, phantom_validate=2, phantom_test=2),
        vqvae=VQVAEConfig(
            n_hiddens=64,
            n_residual_hiddens=32,
            n_embeddings=512,
            batch_size=32,
            crop=64,  # 64x64 patches: ~8x more updates per CPU second than whole slices
            learning_rate=1e-3,
            n_updates=1800,
            log_interval=100,
            val_images=64,
        ),
        # small batches: on a CPU, updates (not grids per update) are what the prior lacks
        # (135 updates of 32 grids: ~0.77x the unigram bits; 1800 of 8: ~0.56x). 2880 updates
        # whatever the data (16 epochs of the demo phantom's 1,440 slices), about 25 minutes
        # on a 2-core CPU with native bf16
        pixelcnn=PixelCNNConfig(
            n_channels=32, n_layers=8, kernel_size=5, batch_size=8, n_updates=2880, log_interval=180,
            learning_rate=2e-3, val_grids=128,  # 16 validations of at most 128 grids, whatever the data
        ),  # fmt: skip
        # among the 8 likeliest codes at T = 1: a darker bone cortex, both femoral heads as often
        # as real slices, completions as good as at any temperature alone (chosen with the judge)
        sample=SampleConfig(temperature=1.0, top_k=8),
    )
    ci = Config(
        "ci",
        data=DataConfig(phantom_train=2, phantom_validate=1, phantom_test=1, phantom_slices=12),
        vqvae=VQVAEConfig(
            n_hiddens=16,
            n_residual_hiddens=8,
            n_residual_layers=1,
            embedding_dim=8,
            n_embeddings=32,
            batch_size=8,
            # a few hundred updates on 64x64 patches (seconds): enough for visible
            # reconstructions and samples, so the ci figures and sliders show something
            crop=64,
            learning_rate=2e-3,
            n_updates=300,
            log_interval=50,
            val_images=8,
            dead_after=5,
        ),
        pixelcnn=PixelCNNConfig(
            n_channels=16, n_layers=3, kernel_size=3, n_slices=12, n_updates=15, batch_size=8,
            log_interval=3,
        ),
        sample=SampleConfig(n_samples=4, n_eval_samples=8, n_sweep_samples=8),
        judge=JudgeConfig(
            seg_base_channels=8, seg_patch=64, seg_batch_size=4, seg_n_updates=40,
            n_completion=8, n_anatomy=12,
        ),
    )
    return {"full": full, "demo": demo, "ci": ci}


def profile_name(name: str | None = None) -> str:
    """The active profile: `name`, else $HIPGEN_PROFILE, else 'demo'."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILE_NAMES:
        raise ConfigError(
            f"unknown profile {name!r} (from argument or ${PROFILE_ENV}); choose one of {', '.join(PROFILE_NAMES)}"
        )
    return name


def get_profile(name: str | None = None) -> Config:
    """A fresh copy of the named profile (see `profile_name`)."""
    return _profiles()[profile_name(name)]


def _coerce(value, typ, key):
    """Convert a CLI string (or a Python value) to the field's declared type."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        typ = args[0]
    if isinstance(value, str):
        if typ is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}={value!r} is not a boolean; use true or false")
        try:
            return typ(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a valid {typ.__name__}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} should be {typ.__name__}, got {type(value).__name__}")
    return value


def override(section, **overrides):
    """A copy of dataclass `section` with fields replaced, values type-checked/coerced.

    Unknown keys raise ConfigError naming the valid ones."""
    hints = typing.get_type_hints(type(section))
    names = {f.name for f in fields(section)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(
                f"unknown setting {key!r} for {type(section).__name__}; valid: {', '.join(sorted(names))}"
            )
        changes[key] = _coerce(value, hints[key], key)
    return replace(section, **changes)


def from_dict(cls, d: dict):
    """Rebuild a (possibly nested) config dataclass from `asdict` output (e.g. a checkpoint)."""
    hints = typing.get_type_hints(cls)
    if cls is PixelCNNConfig:
        d = upgrade_prior_config(d)
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        t = hints[f.name]
        if dataclasses.is_dataclass(t) and isinstance(v, dict):
            v = from_dict(t, v)
        kwargs[f.name] = v
    return cls(**kwargs)


def checkpoint_config(cls, ckpt: dict):
    """The config a checkpoint dict was trained with, as today's `cls` (a prior's upgraded by
    `upgrade_prior_config` with the checkpoint's history, so an epoch budget becomes updates)."""
    d = ckpt["config"]
    if cls is PixelCNNConfig:
        d = upgrade_prior_config(d, ckpt.get("history"))
    return from_dict(cls, d)


def cache_dir() -> Path:
    """Where decoded-array caches and the generated phantom live: $HIPGEN_CACHE or ~/.cache/hipgen."""
    p = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hipgen")
    p.mkdir(parents=True, exist_ok=True)
    return p


def run_dir(profile: str | None = None, run_dir: str | os.PathLike | None = None) -> Path:
    """A run's folder: `run_dir`, else $HIPGEN_RUN_DIR, else <repo>/runs/<profile>."""
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV) or REPO_ROOT / "runs" / profile_name(profile)
    p = Path(run_dir)
    p.mkdir(parents=True, exist_ok=True)
    return p


def figures_dir(run: Path) -> Path:
    """Where a run's notebooks write their figures: <run>/figures, whatever the profile. The
    committed <repo>/figures change only on request (`make figures` copies a run's there),
    so a run leaves the clone as it found it."""
    p = Path(run) / "figures"
    p.mkdir(parents=True, exist_ok=True)
    return p


def apply_given(section, **values):
    """`override` with the values that are not None (the notebooks' parameters cell: None = keep)."""
    return override(section, **{k: v for k, v in values.items() if v is not None})
