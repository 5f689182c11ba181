"""Built-in synthetic pelvic MRI phantom, written in the HipMRI 2D-slice release layout.

Each case-week is a stack of axial T2-weighted-looking male pelvis slices (inferior ->
superior) drawn from a few dozen analytic shapes: skin, subcutaneous fat, muscle with
fascial fat planes, pelvic fat, femora, acetabula, pubis, ischia, ilium, sacrum/coccyx,
bladder, prostate (peripheral/transition zones), seminal vesicles, rectum, bowel loops and
vessels, with a fine texture, a smooth surface-coil bias field and Rician noise for the MR
look. It is written in the release's folders and file names, with the release's quirks.

Which file holds what:

- ``anatomy.py``: constants (slice orientation, spacing, shapes), the tissues and their
  T2 signal, and the random per-case and per-week parameters (`sample_case`,
  `sample_week`).
- ``canvas.py``: the drawing kit: signed distances, z profiles, smooth noise, the
  on-disk orientation, and `_Canvas` (per-case-week textures and bias field, painting).
- ``pelvis.py``: body wall, fat, muscles, bones and vessels (`_Pelvis`).
- ``organs.py``: bowel loops, bladder, prostate and seminal vesicles, rectum (`_Organs`).
- ``render.py``: `_Renderer` (one slice: the drawing order, then the MR look) and the
  public `phantom_slice` and `tissue_slice`.
- ``release.py``: writing the release (`write_phantom`, `ensure_phantom`,
  `phantom_meta`, `image_dir`, `label_dir`) and PHANTOM_VERSION.

The public names are re-exported here, so ``from hipgen_utils.phantom import X`` keeps
working. Private helpers live in their submodule only; patch them there (a test that
replaces ``_write_case_week`` patches ``hipgen_utils.phantom.release``).
"""

from hipgen_utils.layout import (
    IMAGE_RE,
    LABEL_NAMES,
    LABEL_RE,
    SPLITS,
    image_folder,
    image_name,
    label_folder,
    label_name,
)
from hipgen_utils.phantom.anatomy import (
    DEFAULT_SHAPE,
    PIXEL_MM,
    PX_Z,
    SLICE_AXES,
    SLICE_MM,
    TISSUE_NAMES,
    TISSUES,
    WIDE_SHAPE,
    sample_case,
    sample_week,
)
from hipgen_utils.phantom.release import (
    AFFINE,
    META_NAME,
    PHANTOM_VERSION,
    ensure_phantom,
    image_dir,
    label_dir,
    phantom_meta,
    write_phantom,
)
from hipgen_utils.phantom.render import phantom_slice, tissue_slice

__all__ = [
    # anatomy
    "SLICE_AXES",
    "PIXEL_MM",
    "SLICE_MM",
    "DEFAULT_SHAPE",
    "WIDE_SHAPE",
    "PX_Z",
    "TISSUES",
    "TISSUE_NAMES",
    "sample_case",
    "sample_week",
    # render
    "phantom_slice",
    "tissue_slice",
    # release
    "AFFINE",
    "PHANTOM_VERSION",
    "META_NAME",
    "image_dir",
    "label_dir",
    "write_phantom",
    "phantom_meta",
    "ensure_phantom",
    # the release layout (hipgen_utils.layout), as before the split
    "IMAGE_RE",
    "LABEL_NAMES",
    "LABEL_RE",
    "SPLITS",
    "image_folder",
    "image_name",
    "label_folder",
    "label_name",
]
