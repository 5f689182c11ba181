"""The anatomy judge's statistics: pure functions on label maps and images (numpy in, numbers out).

`hipgen_utils.judge` runs the judge (a segmenter labels test slices, samples, train slices and
unigram images; these functions score them); docs/judge.md says what each number reads.

* **Anatomy statistics** (`anatomy_stats`): per trusted class the area fraction, the left-right
  symmetry (Dice of the mask with its mirror about the body's midline), the number of connected
  components, and for the bones the femoral-head pairs and the cortex contrast.
* `anatomy_gap`: for each trusted foreground class and each statistic (area, symmetry,
  components), d = 1-D Wasserstein distance between a set's values and the test slices';
  the term is (d_samples - d_floor) / (d_ceiling - d_floor), clipped below at 0, where the
  floor compares train slices with test slices and the ceiling unigram images with test
  slices. Terms whose ceiling is not clearly above the floor (MIN_SEPARATION) are left out.
  The gap is the mean of the terms: 0 = as far from the test slices as other real slices
  are, 1 = as far as unigram images.
* **Paired round bones** (`round_pairs`, `bone_pairs`, `paired_areas`,
  `level_matched_area_ratio`): the two femoral heads at their levels, how often and how big.
* **Bone cortex** (`cortex_contrast`, `bone_cortex`): real bone is a dark cortex around
  brighter marrow; a blurred blob labelled bone is not.
* **Completion helpers** (`kept_region`, `masked_ssim`, `mirror_completion`) and the seeded
  choice of the compared sets (`anatomy_index`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance
from skimage.metrics import structural_similarity

from hipgen_utils.layout import LABEL_NAMES

STATS = ("area", "symmetry", "components")  # the statistics `anatomy_gap` folds
MIN_SEPARATION = {"area": 0.02, "symmetry": 0.02, "components": 0.5, "cortex": 0.02}
MIN_COMPONENT_PX = 8  # smaller specks are not counted as components
# `round_pairs`: a component counts when it covers at least PAIR_MIN_FRACTION of the slice
# (164 of 256x128 px; a phantom femoral head is 400-700 px) and its circularity
# 4*pi*area/perimeter**2 is at least PAIR_MIN_CIRCULARITY (a disc 1; the phantom's femoral
# heads 0.75-0.97 in their true labels, an iliac wing or the pubic arch below 0.4); two
# such components pair when one mirrors the other across the midline to within PAIR_TOL of
# the slice's long side (10 px of 256) and their areas differ by at most 2x. On the demo's
# test slices (segmenter labels) 28 % of slices have a pair, true labels 25 %, images
# decoded from unigram codes 1 % (0.001 of the slice let chance pairs of small blobs
# through: 12 %)
PAIR_MIN_FRACTION = 0.005
PAIR_MIN_CIRCULARITY = 0.7
PAIR_TOL = 0.04
# `cortex_contrast`: the rim is the outer CORTEX_RIM px of the bone mask (the phantom's cortex
# is 1.6-3 px thick), the marrow core what is left after eroding CORTEX_CORE px; images whose
# bone mask (components of at least CORTEX_MIN_PX px) leaves no core of CORTEX_MIN_CORE px
# score NaN (no bone to judge). On the demo's test slices (segmenter labels) the median is
# 0.41, the VQ-VAE's reconstructions of them 0.39, images decoded from unigram codes 0.24
CORTEX_RIM = 2
CORTEX_CORE = 3
CORTEX_MIN_PX = 40
CORTEX_MIN_CORE = 10
# `empty_fraction`: an image is empty (a failed sample: no body drawn, or a sliver of one)
# when its foreground -- every non-background label -- covers less than EMPTY_OF_SMALLEST of
# the smallest foreground among the test slices (on the demo phantom about 0.57 of a slice).
# Averages hardly see such samples (one in a hundred moves the body-area term by 0.01), the
# eye sees nothing else
EMPTY_OF_SMALLEST = 0.5


# ----------------------------------------------------------------------------- symmetry


def body_midline(foreground: np.ndarray) -> float | None:
    """Midpoint along axis 0 (left-right) of a (H, W) foreground mask's extent; None if empty."""
    rows = np.flatnonzero(foreground.any(axis=1))
    return None if rows.size == 0 else (rows[0] + rows[-1]) / 2.0


def mirror_lr(a: np.ndarray, centre: float) -> np.ndarray:
    """(H, W) array reflected along axis 0 (left-right) about row `centre`; rows that fall
    outside are zero."""
    H = a.shape[0]
    src = int(round(2 * centre)) - np.arange(H)
    ok = (src >= 0) & (src < H)
    out = np.zeros_like(a)
    out[ok] = a[src[ok]]
    return out


def symmetry(mask: np.ndarray, centre: float | None = None) -> float:
    """Dice of a (H, W) bool mask with its mirror image about `centre` (default: the mask's own
    extent midpoint). 1 = perfectly left-right symmetric, 0 = one-sided; NaN when empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    if centre is None:
        centre = body_midline(mask)
    m = mirror_lr(mask, centre)
    return float(2 * (mask & m).sum() / (mask.sum() + m.sum()))


def n_components(mask: np.ndarray) -> int:
    """Connected components (8-connectivity) of at least MIN_COMPONENT_PX pixels."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return 0
    sizes = np.bincount(lab.ravel())[1:]
    return int((sizes >= MIN_COMPONENT_PX).sum())


def round_pairs(mask: np.ndarray, centre: float | None) -> int:
    """Left-right pairs of round components of a (H, W) bool mask about row `centre` of axis 0
    (see PAIR_MIN_FRACTION, PAIR_MIN_CIRCULARITY, PAIR_TOL); each component is in at most
    one pair. 0 when the mask is empty or `centre` is None."""
    return len(paired_areas(mask, centre)) // 2


def paired_areas(mask: np.ndarray, centre: float | None) -> list[float]:
    """The areas (pixels) of the components in `round_pairs`' pairs, two per pair: how big the
    femoral heads are drawn, where they are drawn on both sides. [] when there is no pair."""
    from skimage.measure import label, regionprops

    mask = np.asarray(mask, bool)
    if centre is None or not mask.any():
        return []
    min_px, tol = PAIR_MIN_FRACTION * mask.size, PAIR_TOL * max(mask.shape)
    blobs = [
        (p.centroid, p.area)
        for p in regionprops(label(mask, connectivity=2))
        if p.area >= min_px and 4 * np.pi * p.area >= PAIR_MIN_CIRCULARITY * max(p.perimeter, 1.0) ** 2
    ]
    left = [b for b in blobs if b[0][0] < centre]
    right = [b for b in blobs if b[0][0] >= centre]
    areas = []
    for (r, c), area in left:
        for j, ((r2, c2), area2) in enumerate(right):
            if abs(2 * centre - r - r2) <= tol and abs(c - c2) <= tol and 0.5 <= area / area2 <= 2:
                areas += [float(area), float(area2)]
                right.pop(j)
                break
    return areas


def cortex_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """(marrow - rim) / (marrow + rim): the mean intensity of a (H, W) image in the core of a
    bone mask against that in the mask's rim (see CORTEX_RIM ...). About 0.4 for real bone (a
    dark cortex), near 0 for a uniform blob, negative for a bright rim; NaN when the mask,
    without components under CORTEX_MIN_PX px, leaves no core to compare with."""
    mask = np.asarray(mask, bool)
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return float("nan")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    mask = sizes[lab] >= CORTEX_MIN_PX
    cross = ndimage.generate_binary_structure(2, 1)
    core = ndimage.binary_erosion(mask, cross, CORTEX_CORE)
    if core.sum() < CORTEX_MIN_CORE:
        return float("nan")
    rim = mask & ~ndimage.binary_erosion(mask, cross, CORTEX_RIM)
    image = np.asarray(image, np.float64)
    inner, outer = image[core].mean(), image[rim].mean()
    total = inner + outer
    return float((inner - outer) / total) if total > 0 else float("nan")


def anatomy_stats(labels, classes, background: int = 0, images=None) -> dict:
    """{class: {"area": (N,), "symmetry": (N,), "components": (N,), "pairs": (N,), "pair_area":
    (N,)}} for (N, H, W) labels; with the (N, H, W) `images` they label, the bone class (the one
    named "bones") also gets "cortex": (N,).

    area: fraction of the image; symmetry: about the body's midline (all non-background
    pixels), NaN where the class is absent; components: see `n_components`; pairs: see
    `round_pairs`; pair_area: the mean area of the paired components (`paired_areas`) as a
    fraction of the image, NaN without a pair; cortex: see `cortex_contrast` (none of the last
    three is one of the `anatomy_gap` STATS)."""
    labels = np.asarray(labels)
    bones = _bones(classes) if images is not None else None
    if images is not None and len(images) != len(labels):
        raise ValueError(f"anatomy_stats: {len(images)} images for {len(labels)} label images")
    out = {int(k): {s: np.empty(len(labels)) for s in (*STATS, "pairs", "pair_area")} for k in classes}
    if bones is not None:
        out[int(bones)]["cortex"] = np.empty(len(labels))
    for i, lab in enumerate(labels):
        centre = body_midline(lab != background)
        for k in classes:
            m = lab == k
            out[int(k)]["area"][i] = m.mean()
            out[int(k)]["symmetry"][i] = symmetry(m, centre) if centre is not None else np.nan
            out[int(k)]["components"][i] = n_components(m)
            areas = paired_areas(m, centre)
            out[int(k)]["pairs"][i] = len(areas) // 2
            out[int(k)]["pair_area"][i] = np.mean(areas) / m.size if areas else np.nan
            if "cortex" in out[int(k)]:
                out[int(k)]["cortex"][i] = cortex_contrast(images[i], m)
    return out


def foreground_area(labels, background: int = 0) -> np.ndarray:
    """(N,) fraction of each (H, W) label image that is not `background`."""
    return (np.asarray(labels) != background).mean(axis=(-2, -1))


def empty_fraction(labels, reference, background: int = 0) -> float:
    """Fraction of `labels` images whose foreground covers less than EMPTY_OF_SMALLEST of the
    smallest foreground among the `reference` (real slices') label images."""
    least = float(foreground_area(reference, background).min())
    return float(np.mean(foreground_area(labels, background) < EMPTY_OF_SMALLEST * least))


def _w1(a, b, absent: float) -> float:
    """Wasserstein-1 between the finite values of a and b; `absent` when either has none."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return absent if (a.size or b.size) else 0.0
    return float(wasserstein_distance(a, b))


def anatomy_gap(stats: dict, classes) -> tuple[float, dict]:
    """One number from `anatomy_stats` of four equal-sized sets.

    stats: {"test": ..., "samples": ..., "train": ..., "unigram": ...}; classes: the trusted
    foreground classes. Returns (gap, terms) with terms {"<class>/<stat>": {"samples",
    "floor", "ceiling", "term"}} (term None when the statistic cannot separate floor and
    ceiling). See the module docstring. NaN when no term is usable."""
    terms, used = {}, []
    for k in classes:
        for s in STATS:
            terms[f"{k}/{s}"] = _term(stats, k, s)
            if terms[f"{k}/{s}"]["term"] is not None:
                used.append(terms[f"{k}/{s}"]["term"])
    return (float(np.mean(used)) if used else float("nan")), terms


def _term(stats: dict, k, s: str) -> dict:
    """{"samples", "floor", "ceiling", "term"} of statistic `s` of class `k` (see `anatomy_gap`).
    A set with no finite value where the test slices have some (symmetry of an absent class,
    the cortex of bones never drawn) is 1.0 from them: past any ceiling, never "like real"."""
    absent = 1.0 if s in ("symmetry", "cortex") else 0.0
    d = {name: _w1(stats[name][k][s], stats["test"][k][s], absent) for name in ("samples", "train", "unigram")}
    floor, ceil = d["train"], d["unigram"]
    term = max(0.0, (d["samples"] - floor) / (ceil - floor)) if ceil - floor >= MIN_SEPARATION[s] else None
    return {"samples": d["samples"], "floor": floor, "ceiling": ceil, "term": term}


def anatomy_table(stats: dict, classes) -> dict:
    """{set: {class: {"area_median", "symmetry_median", "components_median", "pairs_rate",
    "pair_area_median"}}} for reports (pairs_rate: the fraction of slices with at least one
    `round_pairs` pair; pair_area_median: the median size of a paired component over the
    slices with a pair, NaN when none has one)."""
    out = {}
    for name, per_class in stats.items():
        out[name] = {}
        for k in classes:
            v = per_class[k]
            sym = v["symmetry"][np.isfinite(v["symmetry"])]
            out[name][str(k)] = {
                "area_median": float(np.median(v["area"])),
                "symmetry_median": float(np.median(sym)) if sym.size else float("nan"),
                "components_median": float(np.median(v["components"])),
                "pairs_rate": float(np.mean(v["pairs"] > 0)),
            }
            if "pair_area" in v:
                out[name][str(k)]["pair_area_median"] = _median(v["pair_area"])
            if "cortex" in v:
                out[name][str(k)]["cortex_median"] = _median(v["cortex"])
    return out


def _median(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _bones(classes) -> str | None:
    """The class named "bones" (`layout.LABEL_NAMES`) among `classes`, as a table key; or None."""
    return next((str(c) for c in classes if c < len(LABEL_NAMES) and LABEL_NAMES[c] == "bones"), None)


def bone_pairs(table: dict, classes) -> dict:
    """{"bone_pairs": {set: pairs_rate}, "bone_pairs_ratio": samples / test} of the bone
    class (the segmenter's class named "bones") from an `anatomy_table`; {} when bones are
    not among its classes (not trusted) and a NaN ratio when no test slice has a pair. With
    the table's pair sizes also {"bone_pair_area": {set: pair_area_median},
    "bone_pair_area_ratio": samples / test}: how big the paired femoral heads are drawn
    against the test slices' (1 = as big; NaN when either set has no pair)."""
    bones = _bones(classes)
    if bones is None or bones not in table.get("test", {}):
        return {}
    rates = {name: per_class[bones]["pairs_rate"] for name, per_class in table.items()}
    test = rates.get("test", 0.0)
    out = {"bone_pairs": rates, "bone_pairs_ratio": rates["samples"] / test if test > 0 else float("nan")}
    if "pair_area_median" in table["test"][bones]:
        sizes = {name: per_class[bones]["pair_area_median"] for name, per_class in table.items()}
        out["bone_pair_area"] = sizes
        out["bone_pair_area_ratio"] = float(sizes["samples"] / sizes["test"])  # NaN propagates
    return out


def _bin_edges(slices, n_bins: int) -> np.ndarray:
    slices = np.asarray(slices)
    return np.linspace(slices.min(), slices.max() + 1, min(n_bins, len(np.unique(slices))) + 1)


def _bin_of(positions, edges) -> np.ndarray:
    return np.clip(np.digitize(np.asarray(positions), edges) - 1, 0, len(edges) - 2)


def slice_bins(slices, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(which (N,), mids (n,)): the bin of each of the (N,) slice positions, cut into
    `n_bins` equal bins from the lowest to the highest position (fewer when there are fewer
    distinct positions), and each bin's middle position."""
    edges = _bin_edges(slices, n_bins)
    return _bin_of(slices, edges), (edges[:-1] + edges[1:] - 1) / 2


def level_matched_area_ratio(samples, test, slices, n_bins: int = 10, sample_slices=None) -> float:
    """`bone_pair_area_ratio` level by level: (N,) paired-head sizes of samples and test slices
    (`anatomy_stats`' "pair_area", NaN without a pair) drawn at the same (N,) slice positions
    `slices` (or the samples at their own (M,) positions `sample_slices`: another real set as
    a reference). The test positions are cut into `n_bins` bins (`slice_bins`, as the
    figure's); in each bin where both sets have a pair, the samples' median size over the
    test slices'; the mean of those ratios weighted by the test slices' pairs in the bin.
    1 = heads as big as real ones at their own levels, however often each level draws a
    pair (the pooled ratio also falls when samples miss the levels whose pairs are large);
    NaN when no bin has a pair in both sets."""
    samples, test, slices = (np.asarray(a, float) for a in (samples, test, slices))
    at = slices if sample_slices is None else np.asarray(sample_slices, float)
    if not (len(test) == len(slices) and len(samples) == len(at)):
        raise ValueError(
            f"level_matched_area_ratio: {len(samples)} samples at {len(at)} positions, "
            f"{len(test)} test at {len(slices)} positions"
        )
    if not len(slices) or not len(at):
        return float("nan")
    edges = _bin_edges(slices, n_bins)
    which = _bin_of(slices, edges)
    s_which = np.where((at >= edges[0]) & (at < edges[-1]), _bin_of(at, edges), -1)  # outside: no bin
    ratios, weights = [], []
    for b in np.unique(which):
        s, t = samples[s_which == b], test[which == b]
        s, t = s[np.isfinite(s)], t[np.isfinite(t)]
        if s.size and t.size:
            ratios.append(np.median(s) / np.median(t))
            weights.append(t.size)
    return float(np.average(ratios, weights=weights)) if ratios else float("nan")


def bone_cortex(stats: dict, classes) -> dict:
    """{"bone_cortex": {set: median `cortex_contrast`}, "bone_cortex_gap": term} of the bone
    class from `anatomy_stats` computed with images: the term as in `anatomy_gap` (0 = the
    samples' bone rims as dark against their marrow as other real slices', 1 = as far off as
    unigram images'; NaN when those two are not MIN_SEPARATION["cortex"] apart). {} when bones
    are not among `classes` or no cortex was measured."""
    bones = _bones(classes)
    if bones is None or "cortex" not in stats.get("test", {}).get(int(bones), {}):
        return {}
    term = _term(stats, int(bones), "cortex")["term"]
    return {
        "bone_cortex": {name: _median(per_class[int(bones)]["cortex"]) for name, per_class in stats.items()},
        "bone_cortex_gap": float("nan") if term is None else term,
    }


def sweep_row(temperature: float, stats: dict, trusted, classes, slices=None) -> dict:
    """One temperature's anatomy: `anatomy_gap`, `bone_pairs_ratio`, the bones' median
    left-right symmetry in samples and test slices and, when the stats hold it,
    `bone_cortex_gap` (`anatomy_stats` of the four sets); with the samples' and test
    slices' shared positions `slices`, also `bone_pair_area_ratio_by_level`."""
    table = anatomy_table(stats, trusted)
    row = {"temperature": temperature, "anatomy_gap": anatomy_gap(stats, trusted)[0], **bone_pairs(table, classes)}
    row.pop("bone_pairs", None)
    row.pop("bone_pair_area", None)
    if "bone_pairs_ratio" in row:
        bones = _bones(classes)
        if slices is not None and "bone_pair_area_ratio" in row:
            row["bone_pair_area_ratio_by_level"] = level_matched_area_ratio(
                stats["samples"][int(bones)]["pair_area"], stats["test"][int(bones)]["pair_area"], slices
            )
        row["bone_symmetry"] = table["samples"][bones]["symmetry_median"]
        row["bone_symmetry_test"] = table["test"][bones]["symmetry_median"]
        cortex = bone_cortex(stats, classes)
        if cortex:
            row["bone_cortex_gap"] = cortex["bone_cortex_gap"]
    return row


# ----------------------------------------------------------------------------- completion


def kept_region(grid_shape, image_shape) -> tuple[np.ndarray, np.ndarray, str]:
    """(kept codes (h, w) bool, completed pixels (H, W) bool, which half) for a completion that
    keeps the first half of the code rows (`sampling.keep_first(codes, 0.5)`)."""
    h, w = grid_shape
    kept = np.zeros((h, w), bool)
    kept[: int(round(0.5 * h))] = True
    fy, fx = image_shape[0] // h, image_shape[1] // w
    completed = ~np.kron(kept, np.ones((fy, fx), bool))
    if kept[: h // 2].all() and not kept[h // 2 :].any():
        side = "left"  # axis 0 runs left-right: the kept half is one side of the body
    else:
        side = "other"
    return kept, completed.astype(bool), side


def masked_ssim(x: np.ndarray, y: np.ndarray, region: np.ndarray) -> float:
    """Mean of the SSIM map (data_range 1) of two (H, W) images over a bool region."""
    _, smap = structural_similarity(
        np.asarray(x, np.float64), np.asarray(y, np.float64), data_range=1.0, full=True
    )
    return float(smap[region].mean())


def mirror_completion(image: np.ndarray, completed: np.ndarray) -> np.ndarray:
    """The image with its completed region replaced by the kept side reflected across the split
    line (kept = left half along axis 0): no model, what bilateral symmetry alone gives."""
    out = np.array(image, copy=True)
    out[completed] = image[::-1][completed]
    return out


# ----------------------------------------------------------------------------- the compared sets


def _subset(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[: min(n, k)])


def _matched_train(train_slices, wanted_slices, seed: int, exclude=()) -> np.ndarray:
    """One train index per wanted slice position (random among that position's train slices
    not in `exclude`; among all of that position's, then any train slice, when none is left)."""
    rng = np.random.default_rng([seed, 1])
    train_slices = np.asarray(train_slices)
    free = np.ones(len(train_slices), bool)
    free[np.asarray(exclude, dtype=np.int64)] = False
    out = []
    for s in wanted_slices:
        at = train_slices == s
        pool = np.flatnonzero(at & free)
        if not pool.size:
            pool = np.flatnonzero(at) if at.any() else np.arange(len(train_slices))
        out.append(rng.choice(pool))
    return np.asarray(out)


def anatomy_index(test_slices, train_slices, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test index, train index) of the anatomy sets: `n` test slices (a seeded subset) and,
    for each, a train slice at its position, in the same order: train slice i sits where test
    slice i (and sample i) does, so per-position figures and numbers (`plot_bone_pairs`,
    `level_matched_area_ratio`) read every set at the same positions."""
    t_idx = _subset(len(test_slices), n, seed + 1)
    return t_idx, _matched_train(train_slices, np.asarray(test_slices)[t_idx], seed)
