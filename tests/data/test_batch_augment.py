"""The batched augmentations against the per-image torchvision transforms: the same pixels for the
same parameters, the same parameter distributions (two-sample tests over thousands of draws),
determinism under the seed, and the translation of a per-image pipeline."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from reid.data.batch_augment import (
    BatchAugment,
    BatchHorizontalFlip,
    BatchRandomCrop,
    BatchRandomErasing,
    BatchRandomResizedCrop,
    BatchToFloat,
    UnsupportedAugmentation,
)
from reid.data.transforms import TrainTransform

H, W = 24, 12
N = 3000  # draws per distribution test
P_MIN = 1e-3  # a two-sample test below this fails: the distributions differ


def _coordinates(h: int = H, w: int = W) -> torch.Tensor:
    """A 3 x h x w uint8 image whose pixel (r, c) holds (r + 1, c + 1, 7): every source pixel of
    an output is readable, 0 marks constant padding."""
    rows = torch.arange(1, h + 1).view(h, 1).expand(h, w)
    cols = torch.arange(1, w + 1).view(1, w).expand(h, w)
    return torch.stack([rows, cols, torch.full((h, w), 7)]).to(torch.uint8)


def _batch(n: int) -> torch.Tensor:
    return _coordinates().unsqueeze(0).repeat(n, 1, 1, 1)


def _per_image(transform, n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    image = _coordinates()
    return torch.stack([transform(image) for _ in range(n)])


def _same_distribution(a, b) -> float:
    """p-value of a chi-square test that two samples of small integers share a distribution."""
    a, b = np.asarray(a), np.asarray(b)
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    return stats.chi2_contingency(table)[1] if len(values) > 1 else 1.0


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _offsets(out: torch.Tensor, pad: int, left: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crop offsets in the padded image (``pad`` on top, ``left`` on the left, default ``pad``),
    read from the centre pixel of coordinate crops."""
    cy, cx = out.shape[2] // 2, out.shape[3] // 2
    rows = out[:, 0, cy, cx].long() - 1 - cy + pad
    cols = out[:, 1, cy, cx].long() - 1 - cx + (pad if left is None else left)
    return rows.numpy(), cols.numpy()


@pytest.mark.parametrize(
    ("mode", "padding", "fill"),
    [
        ("constant", (3, 3, 3, 3), 0),
        ("constant", (1, 3, 4, 2), 5),
        ("constant", (3, 2, 1, 3), (9, 8, 6)),
        ("edge", (3, 3, 3, 3), 0),
        ("reflect", (2, 3, 3, 1), 0),
        ("symmetric", (3, 3, 3, 3), 0),
    ],
)
def test_pad_and_crop_give_torchvisions_pixels_for_each_offset(mode, padding, fill):
    left, top, right, bottom = padding
    op = BatchRandomCrop((H, W), padding=padding, padding_mode=mode, fill=fill)
    out = op(_batch(300), _generator())
    fill_arg = list(fill) if isinstance(fill, tuple) else fill
    padded = TF.pad(_coordinates(), list(padding), fill=fill_arg, padding_mode=mode)
    tops, lefts = _offsets(out, top, left)
    drawn = set(zip(tops.tolist(), lefts.tolist()))
    assert drawn == {(i, j) for i in range(top + bottom + 1) for j in range(left + right + 1)}
    for image, i, j in zip(out, tops, lefts):
        assert torch.equal(image, TF.crop(padded, int(i), int(j), H, W))


def test_pad_and_crop_offsets_follow_the_per_image_distribution():
    pad = 4
    batched = BatchRandomCrop((H, W), padding=(pad,) * 4)(_batch(N), _generator())
    per_image = _per_image(v2.Compose([v2.Pad(pad), v2.RandomCrop((H, W))]), N)
    for a, b in zip(_offsets(batched, pad), _offsets(per_image, pad)):
        assert set(a) == set(b) == set(range(2 * pad + 1))  # every offset, uniform
        assert _same_distribution(a, b) > P_MIN
        assert stats.chisquare(np.bincount(a)).pvalue > P_MIN


def test_a_plain_crop_and_a_plain_pad():
    crop = BatchRandomCrop((10, 6))(_batch(N), _generator())
    per_image = _per_image(v2.RandomCrop((10, 6)), N)
    assert crop.shape == (N, 3, 10, 6)
    for a, b in zip(_offsets(crop, 0), _offsets(per_image, 0)):
        assert _same_distribution(a, b) > P_MIN
    padded = BatchRandomCrop(None, padding=(1, 2, 3, 4), fill=(9, 8, 7))(_batch(2), _generator())
    expected = TF.pad(_coordinates(), [1, 2, 3, 4], fill=[9, 8, 7])
    assert torch.equal(padded[0], expected) and torch.equal(padded[1], expected)


def test_a_crop_larger_than_the_padded_image_is_an_error():
    with pytest.raises(ValueError, match=r"crop size \[30, 12\] is larger than the padded"):
        BatchRandomCrop((30, 12), padding=(0, 1, 0, 1))(_batch(1), _generator())


def test_flip_rate_and_pixels():
    out = BatchHorizontalFlip(0.3)(_batch(N), _generator())
    flipped = out[:, 1, 0, 0] == W  # the first column came from the last
    assert torch.equal(out[flipped], TF.horizontal_flip(_batch(int(flipped.sum()))))
    assert torch.equal(out[~flipped], _batch(int((~flipped).sum())))
    per_image = _per_image(v2.RandomHorizontalFlip(0.3), N)[:, 1, 0, 0] == W
    assert _same_distribution(flipped.numpy(), per_image.numpy()) > P_MIN
    assert stats.binomtest(int(flipped.sum()), N, 0.3).pvalue > P_MIN


def _erased_boxes(out: torch.Tensor, value: float) -> list[tuple[int, int, int, int] | None]:
    """(top, left, height, width) of each image's filled rectangle, None if none."""
    mask = (out == value).all(1)  # N x H x W
    rows, cols = mask.any(2), mask.any(1)
    top, left = rows.int().argmax(1), cols.int().argmax(1)
    h, w = rows.sum(1), cols.sum(1)
    assert torch.equal(mask.sum((1, 2)), h * w)  # one solid rectangle (or nothing)
    return [
        (int(t), int(lf), int(hh), int(ww)) if hh > 0 else None
        for t, lf, hh, ww in zip(top, left, h, w)
    ]


def test_erasing_fills_torchvisions_rectangles_with_its_distributions():
    value = 250.0  # not a coordinate
    op = BatchRandomErasing(p=0.6, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=value)
    batched = op(_batch(N).float(), _generator())
    per_image = _per_image(v2.RandomErasing(0.6, (0.02, 0.33), (0.3, 3.3), value=value), N)
    outside = batched != value
    assert torch.equal(batched[outside], _batch(N).float()[outside])  # the rest is untouched
    a, b = _erased_boxes(batched, value), _erased_boxes(per_image.float(), value)
    assert _same_distribution([x is None for x in a], [x is None for x in b]) > P_MIN
    a, b = [x for x in a if x], [x for x in b if x]
    for k in range(4):  # top, left, height, width
        assert _same_distribution([x[k] for x in a], [x[k] for x in b]) > P_MIN
    areas_a = [x[2] * x[3] for x in a]
    areas_b = [x[2] * x[3] for x in b]
    assert stats.ks_2samp(areas_a, areas_b).pvalue > P_MIN


def test_erasing_that_never_fits_leaves_the_image():
    # Every try is taller or wider than the image: torchvision then erases nothing.
    op = BatchRandomErasing(p=1.0, scale=(0.9, 0.95), ratio=(5.0, 6.0), value=0.0)
    images = _batch(50).float()
    assert torch.equal(op(images, _generator()), images)


def test_random_resized_crop_boxes_follow_torchvisions_distribution():
    op = BatchRandomResizedCrop((H, W), scale=(0.08, 1.0), ratio=(0.3, 0.7))
    top, left, h, w = (t.numpy() for t in op.boxes(N, H, W, _generator()))
    reference = v2.RandomResizedCrop((H, W), scale=(0.08, 1.0), ratio=(0.3, 0.7))
    torch.manual_seed(0)
    params = [reference.make_params([_coordinates()]) for _ in range(N)]
    for ours, key in ((top, "top"), (left, "left"), (h, "height"), (w, "width")):
        assert _same_distribution(ours, [p[key] for p in params]) > P_MIN, key
    assert ((h >= 1) & (h <= H) & (w >= 1) & (w <= W) & (top + h <= H) & (left + w <= W)).all()


def test_random_resized_crop_falls_back_to_torchvisions_central_crop():
    # A 24 x 12 image has ratio 0.5: boxes of ratio 2..3 never fit with area 90 %.
    op = BatchRandomResizedCrop((8, 8), scale=(0.9, 1.0), ratio=(2.0, 3.0))
    top, left, h, w = op.boxes(20, H, W, _generator())
    assert (h == round(W / 2.0)).all() and (w == W).all()
    assert (top == (H - round(W / 2.0)) // 2).all() and (left == 0).all()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_random_resized_crop_resamples_the_box(interpolation):
    image = torch.randint(0, 256, (3, 32, 16), generator=_generator(1), dtype=torch.uint8)
    op = BatchRandomResizedCrop((32, 16), scale=(0.3, 0.6), interpolation=interpolation)
    out = op(image.unsqueeze(0).repeat(8, 1, 1, 1), _generator())
    top, left, h, w = op.boxes(8, 32, 16, _generator())
    mode = getattr(v2.InterpolationMode, interpolation.upper())
    reach = 2 if interpolation == "bicubic" else 1  # source pixels each side of a sample

    def inside(size: int, box: int) -> torch.Tensor:
        """Output pixels whose interpolation reads only pixels of the box."""
        source = (torch.arange(size) + 0.5) * box / size - 0.5
        return (source.floor() - reach + 1 >= 0) & (source.floor() + reach <= box - 1)

    for k in range(8):
        # torchvision resizes the cut-out box (repeating its edge); both interpolate the same
        # pixels wherever that edge is not reached. Reference: torchvision's float path (its
        # uint8 CPU kernel rounds between the two separable passes; CUDA has no such kernel).
        expected = (
            TF.resized_crop(
                image.float(),
                int(top[k]),
                int(left[k]),
                int(h[k]),
                int(w[k]),
                [32, 16],
                mode,
                antialias=False,
            )
            .round()
            .clamp(0, 255)
        )
        mask = inside(32, int(h[k]))[:, None] & inside(16, int(w[k]))[None, :]
        diff = (out[k].int() - expected.int()).abs()[:, mask]
        assert mask.sum() > 100 and out[k].dtype == torch.uint8
        assert diff.max() <= 1, diff.max()


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    augment = BatchAugment(
        [
            BatchHorizontalFlip(0.5),
            BatchRandomCrop((H, W), padding=(2, 2, 2, 2)),
            BatchToFloat(),
            BatchRandomErasing(0.5, value=(1.0, 2.0, 3.0)),
        ]
    )
    a = augment(_batch(16), _generator(5))
    b = augment(_batch(16), _generator(5))
    c = augment(_batch(16), _generator(6))
    assert a.dtype == torch.float32 and a.is_contiguous()
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="takes uint8 images"):
        augment(_batch(1).float(), _generator())


def test_a_per_image_pipeline_translates_step_by_step():
    transform = TrainTransform(
        size=(32, 16),
        resize_then_crop=(36, 18),
        flip_prob=0.4,
        padding=3,
        padding_mode="symmetric",
        erasing_prob=0.7,
        erasing_value=(1.0, 2.0, 3.0),
    )
    resize, augment = BatchAugment.from_transform(transform)
    assert resize.size == (36, 18) and resize.transform is transform.transforms[2]
    kinds = [type(op).__name__ for op in augment.ops]
    assert kinds == [
        "BatchRandomCrop",
        "BatchRandomCrop",
        "BatchHorizontalFlip",
        "BatchToFloat",
        "BatchRandomErasing",
    ]
    crop, pad_crop, flip, _, erase = augment.ops
    assert crop.size == (32, 16) and crop.padding == (0, 0, 0, 0)
    assert flip.p == 0.4
    assert (pad_crop.size, pad_crop.padding, pad_crop.padding_mode) == (
        (32, 16),
        (3, 3, 3, 3),
        "symmetric",
    )
    assert (erase.p, erase.scale, erase.ratio, erase.value) == (
        0.7,
        (0.02, 0.33),
        (0.3, 3.3),
        [1.0, 2.0, 3.0],
    )
    out = augment(torch.zeros(4, 3, 36, 18, dtype=torch.uint8), _generator())
    assert out.shape == (4, 3, 32, 16)


def test_the_whole_pipeline_matches_the_per_image_one_in_distribution():
    transform = TrainTransform(size=(H, W), flip_prob=0.5, padding=2)
    _, augment = BatchAugment.from_transform(transform)
    n = N // 2
    batched = augment(_batch(n), _generator())
    torch.manual_seed(0)
    image = TF.to_pil_image(_coordinates())
    per_image = torch.stack([transform(image) for _ in range(n)])
    for out in (batched, per_image):
        assert out.dtype == torch.float32 and out.shape == (n, 3, H, W)
    # The flip shows in which way the columns run; the offsets in the centre pixel.
    flips = [
        (out[:, 1, H // 2, W // 2 + 1] < out[:, 1, H // 2, W // 2]).numpy()
        for out in (batched, per_image)
    ]
    assert _same_distribution(*flips) > P_MIN
    rows = [out[:, 0, H // 2, W // 2].numpy() for out in (batched, per_image)]
    assert _same_distribution(*rows) > P_MIN


def test_an_augmentation_without_a_batched_version_is_an_error_naming_it():
    transform = v2.Compose([v2.ToImage(), v2.Resize([8, 4]), v2.ColorJitter(brightness=0.2)])
    with pytest.raises(
        UnsupportedAugmentation, match=r"does not implement the augmentation ColorJitter"
    ):
        BatchAugment.from_transform(transform)
    with pytest.raises(UnsupportedAugmentation, match="starts with"):
        BatchAugment.from_transform(v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip()]))
    with pytest.raises(UnsupportedAugmentation, match=r"\[height, width\] resize"):
        BatchAugment.from_transform(v2.Compose([v2.Resize(8), v2.ToDtype(torch.float32)]))


def test_rounding_matches_torchvisions_for_box_sides():
    # torch.round and Python's round both round half to even.
    values = torch.tensor([0.5, 1.5, 2.5, 3.49, 3.51])
    assert torch.round(values).tolist() == [float(round(v)) for v in values.tolist()]
    assert math.isclose(float(torch.exp(torch.tensor(math.log(2.0)))), 2.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("mode", "fill", "padding"),
    [
        ("constant", 0.0, (3, 3, 3, 3)),
        ("constant", 9.0, (1, 4, 2, 0)),
        ("constant", (9.0, 8.0, 7.0), (2, 2, 2, 2)),
        ("reflect", 0.0, (3, 1, 2, 3)),
        ("symmetric", 0.0, (2, 2, 2, 2)),
    ],
)
def test_the_pipeline_runs_a_flip_and_a_crop_in_one_gather_with_the_same_result(
    mode, fill, padding
):
    flip = BatchHorizontalFlip(0.5)
    crop = BatchRandomCrop((H, W), padding=padding, padding_mode=mode, fill=fill)
    erase = BatchRandomErasing(0.7, value=(1.0, 2.0, 3.0))
    fused = BatchAugment([flip, crop, BatchToFloat(), erase])
    assert [type(op).__name__ for op in fused._plan] == [
        "_FlipThenCrop",
        "BatchToFloat",
        "BatchRandomErasing",
    ]
    images = torch.randint(0, 256, (64, 3, H, W), generator=_generator(3), dtype=torch.uint8)
    g = _generator(11)
    expected = erase(crop(flip(images, g), g).float(), g)  # one op at a time
    assert torch.equal(fused(images, _generator(11)), expected)
