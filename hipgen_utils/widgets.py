"""Interactive sampling panel for the notebooks (ipywidgets).

`SamplerPanel` draws samples from a PixelCNN prior over VQ-VAE codes and decodes them, with
sliders for temperature, top-k, seed, number of samples and (for a conditional prior) the
slice position; a "completion" mode keeps the first rows of a test image's codes and
samples the rest.

Notebook use::

    panel = SamplerPanel(prior, lambda c: decode_codes(vqvae, c, device=dev), device=dev,
                         test_codes=test_codes, test_images=test_images, test_slices=test_slices)
    panel.render()
    display(panel.widget)
    panel.temperature.value = 0.7  # re-renders; raises if sampling fails
"""

from __future__ import annotations

import base64
import io
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from hipgen_utils import plotting, sampling
from hipgen_utils.config import CODE_GRID

MODES = ("samples", "completion")


def _png_output(fig) -> dict:
    """A matplotlib figure as one Jupyter display_data output (PNG), as the inline backend
    would show it; made here so it does not need a running IPython shell."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": repr(fig)},
        "metadata": {},
    }


def _to_images(x, name: str) -> np.ndarray:
    """decode() output -> (N, H, W) float32 numpy."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{name} should return (N, H, W) images, got shape {a.shape}")
    return a


class SamplerPanel:
    """ipywidgets panel: sample codes from `prior`, decode them, show the figure.

    prior: a PixelCNN prior with ``n_codes`` and ``n_conditions`` (0 = unconditional).
    decode: callable, codes (N, h, w) LongTensor -> images (N, H, W) float32 in [0, 1].
    test_codes: (M, h, w) ints, test_images: (M, H, W) in [0, 1], test_slices: (M,) slice
    positions -- enable completion mode (test_slices is required for a conditional prior;
    without test_images the "original" shown is the decoded test codes).
    sample_fn: defaults to `hipgen_utils.sampling.sample`, same keyword interface.
    temperature: the temperature slider's starting value (notebook 06: the profile's).
    lead_lines: code rows drawn at temperature 1 first (`sampling.sample`; notebook 06: the
    profile's); passed to `sample_fn` only when > 0.
    top_k: the top-k slider's starting value (0 = off; notebook 06: the profile's).
    seed, n_samples: the seed and number-of-samples sliders' starting values.

    Sliders are public attributes (temperature, top_k, seed, n, slice, mode, image_index,
    keep_rows). Changing one re-renders only if it matters in the current mode: n and slice
    drive "samples", image_index and keep_rows drive "completion" (the other mode's sliders
    are disabled). A failing render stores the exception in ``self.error`` and re-raises it,
    so a value set from code fails loudly (ipywidgets hides errors from browser events, so
    the message is also printed in the panel's output area).
    """

    def __init__(
        self,
        prior,
        decode,
        *,
        test_codes=None,
        test_images=None,
        test_slices=None,
        device=None,
        shape=CODE_GRID,
        max_samples=16,
        sample_fn=None,
        temperature=1.0,
        lead_lines=0,
        top_k=0,
        seed=0,
        n_samples=4,
    ):
        for attr in ("n_codes", "n_conditions"):
            if not hasattr(prior, attr):
                raise TypeError(f"prior has no attribute {attr!r}; pass a PixelCNN prior")
        self.prior, self.decode, self.sample_fn = prior, decode, sample_fn or sampling.sample
        self.device, self.shape = device, tuple(int(s) for s in shape)
        self.lead_lines = int(lead_lines)
        self.n_codes = int(prior.n_codes)
        self.n_conditions = int(prior.n_conditions or 0)
        self.conditional = self.n_conditions > 0
        self.test_codes, self.test_images, self.test_slices = self._check_tests(
            test_codes, test_images, test_slices
        )
        self.last_images: np.ndarray | None = None
        self.last_figure = None
        self.n_renders = 0
        self.error: BaseException | None = None

        # completion keeps the first code rows: along image axis 0, left -> right on screen
        self.lines = sampling.kept_lines(self.shape, 1.0)
        n_test = 0 if self.test_codes is None else len(self.test_codes)
        style = {"description_width": "90px"}
        common = dict(continuous_update=False, style=style)
        self.temperature = widgets.FloatSlider(
            value=float(temperature), min=0.1, max=2.0, step=0.05, description="temperature", **common
        )
        self.top_k = widgets.IntSlider(
            value=int(top_k or 0), min=0, max=self.n_codes, description="top-k (0=off)", **common
        )
        # 0..999 in a default-width slider is ~9 seeds per pixel: give it a row of its own
        self.seed = widgets.IntSlider(
            value=int(seed), min=0, max=999, description="seed", layout=widgets.Layout(width="600px"), **common
        )
        self.n = widgets.IntSlider(
            value=min(int(n_samples), max_samples), min=1, max=max_samples, description="samples", **common
        )
        self.slice = widgets.IntSlider(
            value=self.n_conditions // 2 if self.conditional else 0,
            min=0,
            max=max(self.n_conditions - 1, 0),
            description="slice",
            disabled=not self.conditional,
            **common,
        )
        if not self.conditional:
            self.slice.layout.display = "none"
        self.mode = widgets.ToggleButtons(
            options=list(MODES) if n_test else ["samples"],
            value="samples",
            description="mode",
            disabled=not n_test,
            style=style,
        )
        self.image_index = widgets.IntSlider(
            value=0, min=0, max=max(n_test - 1, 0), description="test image", **common
        )
        self.keep_rows = widgets.IntSlider(
            value=self.lines // 2, min=0, max=self.lines,
            description="keep (left)", **common,
        )  # fmt: skip
        self.status = widgets.HTML()
        self.output = widgets.Output()
        self._by_mode = {
            "samples": (self.temperature, self.top_k, self.seed, self.n, self.slice),
            "completion": (
                self.temperature,
                self.top_k,
                self.seed,
                self.image_index,
                self.keep_rows,
            ),
        }
        for w in (
            self.temperature,
            self.top_k,
            self.seed,
            self.n,
            self.slice,
            self.mode,
            self.image_index,
            self.keep_rows,
        ):
            w.observe(self._on_change, names="value")
        self._sync_enabled()
        self.widget = widgets.VBox(
            [
                self.mode,
                widgets.HBox([self.temperature, self.top_k]),
                self.seed,
                widgets.HBox([self.n, self.slice]),
                widgets.HBox([self.image_index, self.keep_rows]),
                self.status,
                self.output,
            ]
        )

    # ------------------------------------------------------------------ setup

    def _check_tests(self, codes, images, slices):
        if codes is None:
            if images is not None or slices is not None:
                raise ValueError("test_images/test_slices need test_codes for completion mode")
            return None, None, None
        codes = torch.as_tensor(np.asarray(codes)).long()
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.shape:
            raise ValueError(
                f"test_codes should be (M, {self.shape[0]}, {self.shape[1]}), got {tuple(codes.shape)}"
            )
        if len(codes) == 0:
            raise ValueError("test_codes is empty; pass at least one test code map or None")
        m = len(codes)
        if images is not None:
            images = _to_images(images, "test_images")
            if len(images) != m:
                raise ValueError(f"test_images has {len(images)} images but test_codes has {m}")
        if slices is not None:
            slices = np.asarray(slices).astype(np.int64).reshape(-1)
            if len(slices) != m:
                raise ValueError(f"test_slices has {len(slices)} entries but test_codes has {m}")
        elif self.conditional:
            raise ValueError(
                "the prior is conditional: pass test_slices (slice position per test image)"
            )
        return codes, images, slices

    def _sync_enabled(self):
        """Enable exactly the sliders that affect the current mode."""
        active = set(map(id, self._by_mode[self.mode.value]))
        for w in (self.n, self.slice, self.image_index, self.keep_rows):
            w.disabled = id(w) not in active or (w is self.slice and not self.conditional)

    # ------------------------------------------------------------------ callbacks

    def _on_change(self, change):
        owner = change["owner"]
        if owner is self.mode:
            self._sync_enabled()
        elif all(owner is not w for w in self._by_mode[self.mode.value]):
            return  # a slider of the other mode: nothing on screen depends on it
        try:
            self.render()
        except Exception as exc:
            self.error = exc
            # Browser-triggered errors are swallowed by ipywidgets: show them in the panel.
            self.output.outputs = (
                {"output_type": "stream", "name": "stderr",
                 "text": f"render failed: {type(exc).__name__}: {exc}\n"},
            )  # fmt: skip
            self.status.value = "<b>render failed</b> (message below)"
            raise
        self.error = None

    # ------------------------------------------------------------------ drawing

    def _common_kwargs(self) -> dict:
        kw = dict(
            temperature=float(self.temperature.value),
            top_k=int(self.top_k.value) or None,
            seed=int(self.seed.value),
            shape=self.shape,
            device=self.device,
        )
        if self.lead_lines:  # only when set: a sample_fn written before it needs no change
            kw["lead_lines"] = self.lead_lines
        return kw

    def _render_samples(self):
        n = int(self.n.value)
        cond = int(self.slice.value) if self.conditional else None
        codes = self.sample_fn(self.prior, n, condition=cond, **self._common_kwargs())
        images = _to_images(self.decode(codes), "decode")
        k = self.top_k.value or "off"
        where = f", slice {cond}" if self.conditional else ""
        fig = plotting.plot_samples(
            images,
            titles=[f"sample {i}" for i in range(len(images))],
            ncols=4,
            suptitle=f"{n} samples: T={self.temperature.value:.2f}, top-k {k}, "
            f"seed {self.seed.value}{where}",
        )
        return images, fig

    def _render_completion(self):
        idx, keep = int(self.image_index.value), int(self.keep_rows.value)
        cond = int(self.test_slices[idx]) if self.conditional else None
        if cond is not None:
            # show the test image's own slice position on the (disabled) slice slider; in
            # this mode the slider is not observed for rendering, so this draws nothing
            self.slice.value = cond
        prefix = sampling.keep_first(self.test_codes[idx : idx + 1], k=keep)
        codes = self.sample_fn(
            self.prior, 1, condition=cond, prefix=prefix, **self._common_kwargs()
        )
        images = _to_images(self.decode(codes), "decode")
        if self.test_images is not None:
            original = self.test_images[idx]
        else:
            original = _to_images(self.decode(self.test_codes[idx : idx + 1]), "decode")[0]
        fig = plotting.plot_completion(original, keep, images[0], code_rows=self.lines)
        where = f", slice {cond}" if self.conditional else ""
        fig.suptitle(f"Completion of test image {idx}{where}: keep the left {keep}/{self.lines} code rows, sample the rest")
        return images, fig

    def render(self) -> np.ndarray:
        """Sample with the current slider values, decode, draw into the output area.

        Returns the decoded images (N, H, W) float32 in [0, 1] (N = 1 in completion mode),
        also kept in ``self.last_images``. Exceptions propagate to the caller.
        """
        t0 = time.perf_counter()
        if self.mode.value == "completion":
            images, fig = self._render_completion()
        else:
            images, fig = self._render_samples()
        # Replace the Output widget's state from the kernel; never `with self.output:` or
        # `self.output.clear_output()`: those ask the front-end to capture, and nbclient's
        # front-end mimic (nbmake, `make demo`, Voila) then sends a comm_msg on the shell
        # socket while it awaits the cell's execute_reply on that socket; about one cell in
        # four the reply's wake-up is lost and, with no cell timeout, the runner waits forever.
        self.output.outputs = (_png_output(fig),)
        # Close so the inline backend does not show the figure a second time at cell end.
        plt.close(fig)
        self.last_figure = fig
        self.last_images = images
        self.n_renders += 1
        self.status.value = (
            f"<small>render {self.n_renders}: {len(images)} image(s) in "
            f"{time.perf_counter() - t0:.1f} s</small>"
        )
        return images
