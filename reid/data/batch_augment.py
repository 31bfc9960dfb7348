"""Augmentations of whole batches on the model's device (the batched input backend).

Each operation draws its parameters for every image of the batch at once from one
``torch.Generator`` and applies them without a host read, so a batch is augmented by a handful
of kernels on the GPU (or vectorised CPU passes). The parameters follow the same distributions
as the per-image transforms of :mod:`reid.data.transforms` (torchvision's algorithms, vectorised):

- :class:`BatchRandomCrop`: uniform offsets of a ``size`` crop of the image padded by
  ``padding`` (constant, edge, reflect or symmetric); with a crop as large as the padded image
  it is a plain pad.
- :class:`BatchHorizontalFlip`: each image flipped with probability ``p``.
- :class:`BatchRandomResizedCrop`: torchvision's box (area fraction uniform in ``scale``, log
  aspect ratio uniform in ``log(ratio)``, ten tries then the central crop), resampled to ``size``
  (bilinear or bicubic, rounded to whole values as on uint8 images). The pixels are those of
  torchvision's float resize of the box without antialiasing (its uint8 CPU kernel rounds between
  its two passes and differs by a few levels where bicubic overshoots); pixels next to the box's
  edge read the image beyond it where torchvision repeats the edge.
- :class:`BatchRandomErasing`: with probability ``p`` a rectangle (torchvision's ten tries)
  filled with ``value``.
- :class:`BatchToFloat`: uint8 -> float32, values kept in 0..255.

:meth:`BatchAugment.from_transform` translates a per-image training pipeline (a torchvision
``Compose`` as :class:`~reid.data.transforms.TrainTransform` builds) into the cache's resize and
the batched steps; a step it cannot translate is an error naming it, never skipped.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

__all__ = [
    "BatchAugment",
    "BatchHorizontalFlip",
    "BatchOp",
    "BatchRandomCrop",
    "BatchRandomErasing",
    "BatchRandomResizedCrop",
    "BatchToFloat",
    "CacheResize",
    "UnsupportedAugmentation",
]

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")
RESAMPLING = {"bilinear": "bilinear", "bicubic": "bicubic"}
ATTEMPTS = 10  # torchvision's tries of a random box before its fallback


class UnsupportedAugmentation(ValueError):
    """The per-image pipeline has a step the batched backend does not implement."""


def _uniform(
    n: int, low: float, high: float, g: torch.Generator, shape: tuple[int, ...] = ()
) -> torch.Tensor:
    return torch.empty((n, *shape), device=g.device).uniform_(low, high, generator=g)


def _randint_below(upper: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One uniform integer in ``[0, upper)`` per element (``upper`` >= 1, int64)."""
    u = torch.rand(upper.shape, device=upper.device, generator=g, dtype=torch.float64)
    return torch.minimum((u * upper).long(), upper - 1)


def _constant(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a 1 x C x 1 x 1 tensor of ``like``'s dtype on its device, copied without
    blocking (a blocking copy would wait for the device)."""
    host = torch.tensor(list(values), dtype=like.dtype).view(1, -1, 1, 1)
    return host.to(like.device, non_blocking=True)


def _first_true(ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the first True of each row, whether the row has one) of a B x T bool tensor."""
    return ok.int().argmax(dim=1), ok.any(dim=1)


class BatchOp(ABC):
    """One augmentation of a B x C x H x W batch; random parameters come from ``generator``."""

    @abstractmethod
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The augmented batch (a new tensor; the input is not modified)."""


def _source_index(coords: torch.Tensor, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(source index, inside the image) of padded coordinates ``coords`` (may be < 0 or >= size)
    for torchvision's padding modes; "constant" positions outside get index 0, masked later."""
    inside = (coords >= 0) & (coords < size)
    if mode == "constant":
        return coords.clamp(0, size - 1), inside
    if mode == "edge":
        return coords.clamp(0, size - 1), inside
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... size-1 | size-2 ...
        period = 2 * (size - 1)
        c = coords.remainder(period) if period > 0 else torch.zeros_like(coords)
        return torch.where(c < size, c, period - c), inside
    # symmetric: ... 1 0 | 0 1 ... size-1 | size-1 size-2 ...
    c = coords.remainder(2 * size)
    return torch.where(c < size, c, 2 * size - 1 - c), inside


class BatchRandomCrop(BatchOp):
    """A ``size`` crop at a uniform offset of each image padded by ``padding`` pixels.

    Args:
        size: [height, width] of the crop; None = the whole padded image (a plain pad).
        padding: (left, top, right, bottom) pixels added first.
        padding_mode: "constant", "edge", "reflect" or "symmetric" (torchvision's modes).
        fill: The constant padding's value per channel (or one value for all).
    """

    def __init__(
        self,
        size: Sequence[int] | None,
        padding: Sequence[int] = (0, 0, 0, 0),
        padding_mode: str = "constant",
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if len(padding) != 4 or min(padding) < 0:
            raise ValueError(f"padding must be 4 values >= 0 (l, t, r, b), got {list(padding)}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.padding = tuple(int(p) for p in padding)
        self.padding_mode = padding_mode
        self.fill = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.crop(images, generator)

    def crop(
        self, images: torch.Tensor, generator: torch.Generator, flip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The crops; with ``flip`` (B booleans), of the images flipped where it is True first
        (a flip followed by this crop in one gather)."""
        b, c, h, w = images.shape
        left, top, right, bottom = self.padding
        ph, pw = h + top + bottom, w + left + right
        th, tw = self.size if self.size is not None else (ph, pw)
        if ph < th or pw < tw:
            raise ValueError(
                f"crop size {[th, tw]} is larger than the padded image size {[ph, pw]}"
            )
        if self.padding_mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
            raise ValueError(f"reflect padding {self.padding} must be smaller than the image")
        device = images.device
        y0 = _randint_below(torch.full((b,), ph - th + 1, device=device), generator)
        x0 = _randint_below(torch.full((b,), pw - tw + 1, device=device), generator)
        rows = y0[:, None] + torch.arange(th, device=device) - top  # B x th, unpadded coords
        cols = x0[:, None] + torch.arange(tw, device=device) - left
        mask = None
        constant = self.padding_mode == "constant" and any(self.padding)
        if constant and len(set(self.fill)) == 1:
            # Pad the source by the widest side with the fill: every coordinate lands inside.
            q = max(self.padding)
            source = F.pad(images, (q, q, q, q), value=self.fill[0])
            if flip is not None:
                cols = torch.where(flip[:, None], w - 1 - cols, cols)
            rows, cols, w = rows + q, cols + q, w + 2 * q
        else:
            source = images
            rows, row_in = _source_index(rows, h, self.padding_mode)
            cols, col_in = _source_index(cols, w, self.padding_mode)
            if flip is not None:  # padding modes are symmetric: pad-then-flip = flip-then-pad
                cols = torch.where(flip[:, None], w - 1 - cols, cols)
            if constant:
                mask = (row_in[:, :, None] & col_in[:, None, :])[:, None]
        index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, th * tw)
        out = source.reshape(b, c, -1).gather(2, index.expand(b, c, th * tw))
        out = out.view(b, c, th, tw)
        if mask is not None:
            out = torch.where(mask, out, _constant(self.fill, images))
        return out


class BatchHorizontalFlip(BatchOp):
    """Flip each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def draw(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """Which of ``b`` images flip (B booleans)."""
        return torch.rand(b, device=generator.device, generator=generator) < self.p

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = self.draw(images.shape[0], generator)
        return torch.where(flip[:, None, None, None], images.flip(-1), images)


class _FlipThenCrop(BatchOp):
    """A flip followed by a crop, drawn as the two would be and applied in one gather."""

    def __init__(self, flip: BatchHorizontalFlip, crop: BatchRandomCrop) -> None:
        self.flip, self.crop = flip, crop

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = self.flip.draw(images.shape[0], generator)
        return self.crop.crop(images, generator, flip)


class BatchToFloat(BatchOp):
    """uint8 -> float32 with values kept in 0..255 (``v2.ToDtype(float32, scale=False)``)."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.float()


def _boxes(
    b: int,
    h: int,
    w: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    erasing: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's random box tries for a batch: (box h, box w, whether a try succeeded), the
    first successful of ATTEMPTS tries per image. Erasing wants h < H and w < W with
    h = sqrt(area * r); a resized crop wants 0 < h <= H and 0 < w <= W with w = sqrt(area * r)."""
    area = float(h * w)
    target = area * _uniform(b, scale[0], scale[1], generator, (ATTEMPTS,))
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator, (ATTEMPTS,))
    aspect = torch.exp(log_r)
    long_side = torch.round(torch.sqrt(target * aspect)).long()
    short_side = torch.round(torch.sqrt(target / aspect)).long()
    if erasing:
        bh, bw = long_side, short_side
        ok = (bh < h) & (bw < w)
    else:
        bw, bh = long_side, short_side
        ok = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
    first, found = _first_true(ok)
    pick = first[:, None]
    return bh.gather(1, pick)[:, 0], bw.gather(1, pick)[:, 0], found


class BatchRandomResizedCrop(BatchOp):
    """torchvision's random resized crop of each image, resampled to ``size``.

    Args:
        size: [height, width] of the output.
        scale: Range of the box's area as a fraction of the image's.
        ratio: Range of the box's aspect ratio (width / height), drawn log-uniformly.
        interpolation: "bilinear" or "bicubic".
    """

    def __init__(
        self,
        size: Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
    ) -> None:
        if interpolation not in RESAMPLING:
            raise ValueError(
                f"interpolation must be one of {sorted(RESAMPLING)}, got {interpolation!r}"
            )
        self.size = (int(size[0]), int(size[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.interpolation = interpolation

    def _fallback(self, h: int, w: int) -> tuple[int, int, int, int]:
        """torchvision's central crop when no try fits: (top, left, height, width)."""
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            bw, bh = w, int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            bh, bw = h, int(round(h * max(self.ratio)))
        else:
            bh, bw = h, w
        return (h - bh) // 2, (w - bw) // 2, bh, bw

    def boxes(
        self, b: int, h: int, w: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top, left, height, width) of each image's box, B values each."""
        bh, bw, found = _boxes(b, h, w, self.scale, self.ratio, generator, erasing=False)
        top = _randint_below((h - bh + 1).clamp_min(1), generator)
        left = _randint_below((w - bw + 1).clamp_min(1), generator)
        f_top, f_left, f_h, f_w = self._fallback(h, w)
        top = torch.where(found, top, f_top)
        left = torch.where(found, left, f_left)
        return top, left, torch.where(found, bh, f_h), torch.where(found, bw, f_w)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        top, left, bh, bw = self.boxes(b, h, w, generator)
        oh, ow = self.size
        device = images.device
        # Output pixel centres -> source pixel coordinates -> grid_sample's [-1, 1] coordinates.
        ys = (torch.arange(oh, device=device) + 0.5)[None] / oh * bh[:, None] + top[:, None]
        xs = (torch.arange(ow, device=device) + 0.5)[None] / ow * bw[:, None] + left[:, None]
        gy = (2 * ys / h - 1).float()[:, :, None].expand(b, oh, ow)
        gx = (2 * xs / w - 1).float()[:, None, :].expand(b, oh, ow)
        grid = torch.stack([gx, gy], dim=-1)
        out = F.grid_sample(
            images.float(),
            grid,
            mode=RESAMPLING[self.interpolation],
            padding_mode="border",
            align_corners=False,
        )
        if images.dtype == torch.uint8:
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return out


class BatchRandomErasing(BatchOp):
    """torchvision's random erasing: with probability ``p`` a rectangle of each image is filled.

    Args:
        p: Probability of erasing a rectangle of an image.
        scale: Range of the rectangle's area as a fraction of the image's.
        ratio: Range of its aspect ratio (height / width), drawn log-uniformly.
        value: The fill per channel (or one value for all).
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        value: float | Sequence[float] = 0.0,
    ) -> None:
        self.p = float(p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.value = (
            [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
        )

    def boxes(
        self, b: int, h: int, w: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top, left, height, width, erased) of each image's rectangle, B values each."""
        erase = torch.rand(b, device=generator.device, generator=generator) < self.p
        bh, bw, found = _boxes(b, h, w, self.scale, self.ratio, generator, erasing=True)
        top = _randint_below((h - bh + 1).clamp_min(1), generator)
        left = _randint_below((w - bw + 1).clamp_min(1), generator)
        return top, left, bh, bw, erase & found

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.erase_(images.clone(), generator)

    def erase_(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Erase in place (for a batch the pipeline owns); returns ``images``."""
        b, c, h, w = images.shape
        if len(self.value) not in (1, c):
            raise ValueError(f"erasing value must have 1 or {c} values, got {self.value}")
        top, left, bh, bw, erased = self.boxes(b, h, w, generator)
        device = images.device
        rows = torch.arange(h, device=device)[None]
        cols = torch.arange(w, device=device)[None]
        in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None]) & erased[:, None]
        in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
        mask = in_rows[:, :, None] & in_cols[:, None, :]  # B x H x W
        values = self.value * c if len(self.value) == 1 else self.value
        for channel, value in enumerate(values):
            images[:, channel].masked_fill_(mask, value)
        return images


@dataclass(frozen=True)
class CacheResize:
    """The resize the decoded-image cache applies once: the per-image pipeline's first step."""

    size: tuple[int, int]
    transform: v2.Resize


def _padding_ltrb(padding: Any) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    values = [int(p) for p in padding]
    if len(values) == 1:
        return values[0], values[0], values[0], values[0]
    if len(values) == 2:
        return values[0], values[1], values[0], values[1]
    if len(values) == 4:
        return values[0], values[1], values[2], values[3]
    raise UnsupportedAugmentation(f"padding {padding!r} has not 1, 2 or 4 values")


def _fill(fill: Any, step: object) -> float | list[float]:
    if isinstance(fill, (int, float)):
        return float(fill)
    if isinstance(fill, (list, tuple)) and all(isinstance(v, (int, float)) for v in fill):
        return [float(v) for v in fill]
    raise UnsupportedAugmentation(f"the batched backend takes numeric fills only, got {step!r}")


_NO_OPS = ("ToRGB", "ToImage", "ToPureTensor")


class BatchAugment:
    """The batched steps of a training pipeline: uint8 images at the cache's size in, float32
    0..255 images out, augmented as the per-image pipeline would.

    Args:
        ops: The steps, in order (one of them :class:`BatchToFloat`).
    """

    def __init__(self, ops: Sequence[BatchOp]) -> None:
        if sum(isinstance(op, BatchToFloat) for op in ops) != 1:
            raise ValueError("a batched pipeline converts to float once: one BatchToFloat step")
        self.ops = list(ops)
        # How they run: a flip followed by a crop in one gather (the same draws, the same result).
        self._plan: list[BatchOp] = []
        for op in self.ops:
            last = self._plan[-1] if self._plan else None
            if isinstance(op, BatchRandomCrop) and isinstance(last, BatchHorizontalFlip):
                self._plan[-1] = _FlipThenCrop(last, op)
            else:
                self._plan.append(op)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment ``images`` (B x 3 x H x W uint8) with draws from ``generator``."""
        if images.dtype != torch.uint8:
            raise ValueError(f"the batched pipeline takes uint8 images, got {images.dtype}")
        owned = False  # whether ``images`` is a tensor this call made (free to change in place)
        for op in self._plan:
            if owned and isinstance(op, BatchRandomErasing):
                images = op.erase_(images, generator)
            else:
                images = op(images, generator)
            owned = True
        return images.contiguous()

    def __repr__(self) -> str:
        return f"BatchAugment({[type(op).__name__ for op in self.ops]})"

    @classmethod
    def from_transform(cls, transform: Any) -> tuple[CacheResize, BatchAugment]:
        """The cache's resize and the batched steps equivalent to a per-image pipeline.

        Args:
            transform: A torchvision ``Compose`` (``.transforms``) that converts to an image,
                resizes to a [height, width], then applies random crops, pads, flips,
                random resized crops, the float conversion and random erasing.

        Raises:
            UnsupportedAugmentation: A step has no batched equivalent (named in the message),
                or the pipeline does not start with a [height, width] resize.
        """
        steps = [s for s in getattr(transform, "transforms", []) if type(s).__name__ not in _NO_OPS]
        if not steps or not isinstance(steps[0], v2.Resize):
            raise UnsupportedAugmentation(
                f"the batched input backend caches images at the pipeline's first resize, but "
                f"the pipeline starts with {steps[0] if steps else 'nothing'!r}"
            )
        resize = steps[0]
        if not isinstance(resize.size, (list, tuple)) or len(resize.size) != 2:
            raise UnsupportedAugmentation(
                f"the batched input backend needs a [height, width] resize, got {resize!r}"
            )
        cache = CacheResize((int(resize.size[0]), int(resize.size[1])), resize)
        ops: list[BatchOp] = []
        pending_pad: v2.Pad | None = None
        for step in steps[1:]:
            if pending_pad is not None and not isinstance(step, v2.RandomCrop):
                ops.append(_pad_op(pending_pad, None))
                pending_pad = None
            if isinstance(step, v2.Pad):
                pending_pad = step
            elif isinstance(step, v2.RandomCrop):
                ops.append(_pad_op(pending_pad, step))
                pending_pad = None
            elif isinstance(step, v2.RandomHorizontalFlip):
                ops.append(BatchHorizontalFlip(step.p))
            elif isinstance(step, v2.RandomResizedCrop):
                ops.append(
                    BatchRandomResizedCrop(
                        step.size, step.scale, step.ratio, _interpolation(step.interpolation)
                    )
                )
            elif isinstance(step, v2.ToDtype) and step.dtype == torch.float32 and not step.scale:
                ops.append(BatchToFloat())
            elif isinstance(step, v2.RandomErasing) and step.value is not None:
                ops.append(BatchRandomErasing(step.p, step.scale, step.ratio, step.value))
            else:
                raise UnsupportedAugmentation(
                    f"the batched input backend does not implement the augmentation {step!r}; "
                    f"turn it off or use INPUT.BACKEND per_image"
                )
        if pending_pad is not None:
            ops.append(_pad_op(pending_pad, None))
        return cache, cls(ops)


def _interpolation(mode: Any) -> str:
    name = getattr(mode, "value", mode)
    if name not in RESAMPLING:
        raise UnsupportedAugmentation(
            f"the batched backend resamples bilinear or bicubic, got {mode}"
        )
    return str(name)


def _pad_op(pad: v2.Pad | None, crop: v2.RandomCrop | None) -> BatchRandomCrop:
    """A pad (or none) followed by a random crop (or none: a crop of the whole padded image)."""
    if crop is not None and (crop.padding is not None or crop.pad_if_needed):
        raise UnsupportedAugmentation(
            f"the batched backend takes crops without their own padding, got {crop!r}"
        )
    padding = _padding_ltrb(pad.padding) if pad is not None else (0, 0, 0, 0)
    mode = pad.padding_mode if pad is not None else "constant"
    fill = _fill(pad.fill, pad) if pad is not None else 0.0
    return BatchRandomCrop(crop.size if crop is not None else None, padding, mode, fill)
