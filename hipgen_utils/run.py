"""A run directory and what the pipeline's steps left in it, behind one object.

Every step after the first reads what an earlier one wrote into the run directory:

    vqvae.pt   (02)  ->  codes.npz (04)  ->  pixelcnn.pt (05)

and each read needs the same care: the VQ-VAE's weight fingerprint ties the code grids and
the prior to the VQ-VAE they came from, the data to load again is the data the VQ-VAE was
trained on (its checkpoint stores that config; ``DATA_DIR`` may point the same release
elsewhere), and the models go to one device. `Run` does this once, so a notebook opens with

    run = Run.open(PROFILE, RUN_DIR, DATA_DIR)
    vq, prior, grids = run.vqvae(), run.prior(), run.codes()

and the CLI, `evaluate.evaluate_run` and the benchmark use the same methods. Each method
loads on first use and keeps the result; a missing file is a one-line `MissingStepError`
naming the notebook (or command) to run first.

`load_vqvae` / `load_prior` are the plain loaders underneath, for a checkpoint outside a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hipgen_utils import config as C
from hipgen_utils.checkpoints import (
    PRIOR_FILE,
    VQVAE_FILE,
    CheckpointError,
    MissingStepError,
    load_checkpoint,
    state_fingerprint,
)
from hipgen_utils.codes import load_codes
from hipgen_utils.devices import as_device
from hipgen_utils.layout import SPLITS
from hipgen_utils.notices import print_data_notices
from hipgen_utils.pipeline import load_splits
from hipgen_utils.pixelcnn import GatedPixelCNN
from hipgen_utils.vqvae import VQVAE


def load_vqvae(run_dir, device="auto"):
    """(model in eval mode on `device`, checkpoint dict) from run_dir/vqvae.pt; "auto" = CUDA,
    then MPS, then the CPU (`devices.as_device`)."""
    path = Path(run_dir) / VQVAE_FILE
    ckpt = load_checkpoint(path, "vqvae")
    model = VQVAE.from_config(C.from_dict(C.VQVAEConfig, ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({str(e).splitlines()[0]})") from None
    return model.to(as_device(device)).eval(), ckpt


def load_prior(run_dir, device="auto", vqvae_id: str | None = None):
    """(prior in eval mode on `device` ("auto": see `devices.as_device`), checkpoint dict)
    from run_dir/pixelcnn.pt; with `vqvae_id`, refuses a prior trained on another VQ-VAE's codes."""
    path = Path(run_dir) / PRIOR_FILE
    ckpt = load_checkpoint(path, "pixelcnn")
    if vqvae_id is not None and ckpt.get("vqvae_id") != vqvae_id:
        raise CheckpointError(
            f"{path}: this prior was trained on another VQ-VAE's codes "
            f"({ckpt.get('vqvae_id')} vs {vqvae_id}); retrain it (notebooks/05_train_pixelcnn)"
        )
    try:
        cfg = C.checkpoint_config(C.PixelCNNConfig, ckpt)
    except C.ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    prior = GatedPixelCNN.from_config(cfg, int(ckpt["n_codes"]))
    prior.load_state_dict(ckpt["model"])
    return prior.to(as_device(device)).eval(), ckpt


@dataclass
class Run:
    """A run directory with its profile's config, figure folder and device.

    ``cfg``: the profile's `Config` (what a training step would use); ``dir``: the run
    directory; ``figures`` (a property): where `figure(name)` puts PNGs (<run dir>/figures;
    `make figures` copies them into the committed figures/); ``data_dir``: DATA_DIR, replacing the folder of the data the
    VQ-VAE was trained on (None keeps it); ``device``: where the models are loaded; ``skip_bad``:
    True skips (and counts) bad slice files even if the VQ-VAE's data did not (``--skip_bad``).
    """

    cfg: C.Config
    dir: Path
    data_dir: str | None = None
    device: torch.device = field(default_factory=lambda: as_device("auto"))
    skip_bad: bool = False
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, profile=None, run_dir=None, data_dir=None, device="auto", quiet=False) -> Run:
        """The notebooks' first line: resolve the profile ($HIPGEN_PROFILE, else demo), the run
        directory ($HIPGEN_RUN_DIR, else runs/<profile>) and the figure folder, and print them.
        `data_dir` also becomes the profile's data folder (notebooks 01 and 02 read it).
        Unless `quiet`, what the data loader reports from then on prints as one plain line
        (`notices.print_data_notices`), not as a warning box naming a source file."""
        cfg = C.get_profile(profile)
        if data_dir is not None:
            cfg.data.data_dir = str(data_dir)
        rd = C.run_dir(cfg.profile, run_dir)
        run = cls(cfg, rd, None if data_dir is None else str(data_dir), as_device(device))
        if not quiet:
            print_data_notices()
            source = cfg.data.data_dir or os.environ.get(C.DATA_ENV) or "built-in phantom"
            print(f"profile: {cfg.profile}  |  data: {source}  |  run dir: {rd}  |  figures: {run.figures}")
        return run

    @classmethod
    def at(cls, run_dir, data_dir=None, device="auto", profile=None, skip_bad: bool = False) -> Run:
        """An existing run directory, quietly (the CLI and the benchmark): it must exist."""
        rd = Path(run_dir)
        if not rd.is_dir():
            raise MissingStepError(
                f"run directory {rd} does not exist; train first (hipgen train --mode vq_vae --run_dir {rd})"
            )
        run = cls.open(profile, rd, data_dir, device, quiet=True)
        run.skip_bad = bool(skip_bad)
        return run

    @property
    def figures(self) -> Path:
        return C.figures_dir(self.dir)

    def figure(self, name: str) -> Path:
        """Where the figure `name` is written: <figures>/<name>.png."""
        return self.figures / f"{name}.png"

    # ------------------------------------------------------------------ what earlier steps wrote

    def vqvae(self):
        """The VQ-VAE of notebook 02 (eval mode, on `device`)."""
        if "vqvae" not in self._cache:
            model, ckpt = load_vqvae(self.dir, self.device)
            self._cache.update(vqvae=model, vqvae_ckpt=ckpt, vqvae_id=state_fingerprint(model.state_dict()))
        return self._cache["vqvae"]

    @property
    def vqvae_checkpoint(self) -> dict:
        """The VQ-VAE's checkpoint dict (config, history, extra={"data", "profile"})."""
        self.vqvae()
        return self._cache["vqvae_ckpt"]

    @property
    def vqvae_id(self) -> str:
        """The VQ-VAE's weight fingerprint: code grids and priors carry it."""
        self.vqvae()
        return self._cache["vqvae_id"]

    def codes(self) -> dict:
        """The code grids of notebook 04 (`codes.load_codes`), checked to come from this VQ-VAE."""
        if "codes" not in self._cache:
            self._cache["codes"] = load_codes(self.dir, self.vqvae_id)
        return self._cache["codes"]

    def prior(self):
        """The PixelCNN prior of notebook 05 (eval mode, on `device`), checked against this VQ-VAE."""
        if "prior" not in self._cache:
            self._cache["prior"], self._cache["prior_checkpoint"] = load_prior(self.dir, self.device, self.vqvae_id)
        return self._cache["prior"]

    @property
    def prior_checkpoint(self) -> dict:
        """The prior's checkpoint dict (config, training history, ...), loaded with the prior."""
        self.prior()
        return self._cache["prior_checkpoint"]

    def has_prior(self) -> bool:
        """Whether notebook 05 has written a prior here (nothing is loaded)."""
        return (self.dir / PRIOR_FILE).exists()

    def data_config(self) -> C.DataConfig:
        """The data the VQ-VAE was trained on, from its checkpoint; `data_dir` replaces its folder."""
        data = C.from_dict(C.DataConfig, self.vqvae_checkpoint.get("extra", {}).get("data", {}))
        if self.data_dir is not None:
            data.data_dir = self.data_dir
        if self.skip_bad:
            data.skip_bad = True
        return data

    def splits(self, *names: str, progress: bool = True) -> dict:
        """{split: SliceSet} of that data (every split, `layout.SPLITS`, when no name is given)."""
        return load_splits(self.data_config(), names or SPLITS, progress=progress)

    def code_grid(self) -> tuple[int, int]:
        """(h, w) of this run's code grids (`config.code_grid` of its data)."""
        return C.code_grid(self.data_config())
