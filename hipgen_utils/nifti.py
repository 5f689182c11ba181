"""Read one HipMRI slice file (NIfTI-1, usually gzipped) into a raw 2-D array.

`read_nifti_slice` is the public reader; `_read_nifti` also returns the shape stored in the
header (for ``SliceSet.raw_shapes``). A bad file (unreadable, empty, not gzip, corrupt or
truncated, not NIfTI, a 3-D volume, NaN/Inf voxels, ...) raises a one-line `BadFileError`
naming the file and what is wrong with it.

Why a fast path around nibabel: ``nib.load`` gives the right array but sniffs the format,
builds an image and streams through GzipFile in small reads, ~3x slower per slice, and
decoding ~25k small files is all a cold load does. For single-file NIfTI-1 (the release)
`_open_nifti` reads and gunzips the whole file in one go (`_gunzip`), parses the 348-byte
header with nibabel and lets the header read the voxels from memory: the same array.
Anything else (NIfTI-2, Analyze, other names, unrecognised bytes) goes through
``nib.load`` and its errors.
"""

from __future__ import annotations

import io
import zlib

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from nibabel.wrapstruct import WrapStructError

from .data_types import BadFileError

_NIFTI_SUFFIXES = (".nii", ".nii.gz")  # compared with the name in lower case (`is_nifti_name`)
_HDR348 = (np.int32(348).astype("<i4").tobytes(), np.int32(348).astype(">i4").tobytes())


def is_nifti_name(name: str) -> bool:
    """Whether a file name ends in .nii or .nii.gz, in any letter case (.NII.GZ: some exporters)."""
    return name.lower().endswith(_NIFTI_SUFFIXES)


def _gunzip(blob: bytes) -> bytes:
    """Whole-buffer gzip decode (all members); EOFError when the stream is cut short."""
    out = []
    while blob:
        d = zlib.decompressobj(wbits=31)  # 31: gzip wrapper, CRC checked
        out.append(d.decompress(blob))
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker")
        blob = d.unused_data
    return b"".join(out)


def _open_nifti(path: str):
    """(header, read_data) for `path`; ``read_data()`` gives the scaled voxel array.

    Fast path for single-file NIfTI-1 (the release): read and gunzip the whole file in
    one go, parse the 348-byte header with nibabel and let the header read the voxels
    from memory. ``nib.load`` gives the same array but sniffs the format, builds an image
    and streams through GzipFile in small reads: ~3x slower per slice, and decoding ~25k
    small files is all a cold load does. Anything else (NIfTI-2, Analyze, other names,
    unrecognised bytes) goes through ``nib.load`` and its errors."""
    if is_nifti_name(path):
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:  # permissions, a dangling link: not a corrupt file
            raise BadFileError(
                path, f"cannot read file ({type(e).__name__}: {e.strerror})"
            ) from None
        if not blob:
            raise BadFileError(path, "empty file (0 bytes); re-copy it from the release")
        if path.lower().endswith(".gz"):
            if blob[:2] != b"\x1f\x8b":
                raise BadFileError(path, "not a gzip file although named .gz; re-copy it")
            blob = _gunzip(blob)
        if len(blob) >= 348 and blob[344:348] == b"n+1\0" and blob[:4] in _HDR348:
            hdr = nib.Nifti1Header(blob[:348], check=True)  # validates codes/dims
            return hdr, lambda: hdr.data_from_fileobj(io.BytesIO(blob))
    img = nib.load(path)
    return img.header, lambda: np.asanyarray(img.dataobj)


def _read_nifti(path, allow_nonfinite: bool = False) -> tuple[np.ndarray, tuple]:
    """`read_nifti_slice` plus the shape stored in the header (singleton dims included).
    `allow_nonfinite`: NaN/Inf voxels are returned as they are (the loader repairs a few,
    `preprocess.repair_nonfinite`), not refused."""
    path = str(path)
    try:
        hdr, read_data = _open_nifti(path)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        core = tuple(s for s in shape if s != 1)
        if len(core) > 2:
            raise BadFileError(
                path,
                f"3-D volume ({'x'.join(map(str, shape))}) where one 2-D slice was expected; "
                "is this a scan rather than a keras_slices file?",
            )
        if len(core) < 2:
            raise BadFileError(path, f"not a 2-D slice (shape {shape})")
        arr = np.asarray(read_data())
    except BadFileError:
        raise
    except ImageFileError as e:
        msg = str(e)
        if "Empty file" in msg:
            reason = "empty file (0 bytes); re-copy it from the release"
        elif "not a gzip file" in msg:
            reason = "not a gzip file although named .gz; re-copy it from the release"
        else:
            reason = "not a NIfTI file (unrecognised header)"
        raise BadFileError(path, reason) from None
    except (
        EOFError,
        OSError,
        ValueError,
        KeyError,
        zlib.error,
        HeaderDataError,
        WrapStructError,
    ) as e:
        # EOFError/zlib.error/BadGzipFile: broken gzip; OSError "Expected N bytes": short payload
        detail = " ".join(str(e).split())[:80]
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__
        raise BadFileError(
            path, f"corrupt or truncated file ({kind}: {detail}); re-copy it"
        ) from None
    arr = arr.reshape(core)
    if not arr.flags.writeable:  # parsed from an immutable bytes buffer
        arr = arr.copy()
    if not allow_nonfinite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n = int(arr.size - np.isfinite(arr).sum())
        raise BadFileError(path, f"NaN/Inf voxels ({n} of {arr.size}); re-export the slice")
    if arr.dtype.kind not in "fiub":
        raise BadFileError(path, f"unsupported voxel dtype ({arr.dtype})")
    return arr, shape


def read_nifti_slice(path) -> np.ndarray:
    """One slice as a raw 2-D ``(H, W)`` array in its stored dtype (scl_slope applied if set).

    Singleton dims (e.g. a trailing ``(256, 128, 1)``) are dropped. Raises BadFileError
    for an empty, corrupt or truncated file, a non-NIfTI file, a 3-D volume, or NaN/Inf."""
    return _read_nifti(path)[0]
