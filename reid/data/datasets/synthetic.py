"""The built-in synthetic dataset: drawn people in the exact Market-1501 layout and naming.

People are combinations of body proportions, skin and hair, clothing colours and patterns and
accessories, each drawn from a small palette, so every single attribute is shared by many people
and only the combination identifies one. Cameras differ by background, preferred viewpoint
(front / back / side), lighting and colour cast, blur, scale and position of the person, and how
often something occludes them. Everything follows from DATASETS.SYNTHETIC.SEED.

Where it goes: ``<root>/synthetic/<folder named after the parameters>/`` with
``bounding_box_train/``, ``query/``, ``bounding_box_test/`` (names like ``0002_c3s1_000123_01.jpg``,
distractors ``0000_...`` and junk ``-1_...`` in the gallery) and a marker ``synthetic.json`` holding
the parameters. It is generated into a temporary folder that is renamed into place when complete,
so a concurrent or interrupted run never sees half a dataset, and a second run reuses it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, ConfigError, Key, configurable

from reid.utils.file_io import current_umask

from .bases import DatasetFormatError, DatasetNotFoundError, Layout
from .build import DATASET_REGISTRY
from .market1501 import MARKET_SPLIT_DIRS, Market1501

SYNTHETIC_CONFIG = ConfigBlock(
    "DATASETS.SYNTHETIC",
    'The built-in synthetic dataset ("Synthetic"): generated once into '
    "<root>/synthetic/<folder named after these values>/ in the Market-1501 layout; changing any "
    "value generates a new folder.",
    {
        "SEED": Key(0, "Seed of the generator (the same seed gives the same images)."),
        "NUM_TRAIN_IDS": Key(150, "Identities in bounding_box_train/."),
        "NUM_TEST_IDS": Key(
            150,
            "Identities in query/ (two images each, from two cameras) and bounding_box_test/ "
            "(the rest).",
        ),
        "IMGS_PER_ID": Key(
            10,
            "Images per identity (at least 4), spread over 2..NUM_CAMERAS cameras with 2 or more "
            "each.",
        ),
        "NUM_CAMERAS": Key(
            6,
            "Number of cameras (2..9), each with its own background, viewpoint, lighting, blur, "
            "scale and occlusion.",
        ),
        "IMAGE_SIZE": Key([128, 64], "[height, width] of the generated images."),
        "NUM_DISTRACTORS": Key(
            100, "Gallery distractors: pid 0000, people who are in no query and never match one."
        ),
        "NUM_JUNK": Key(
            50,
            "Junk boxes (pid -1) in the gallery folder, dropped by the reader as in Market-1501.",
        ),
    },
)


GENERATOR_VERSION = 1
MARKER = "synthetic.json"
SUPERSAMPLE = 2
QUERIES_PER_ID = 2

Color = tuple[float, float, float]


def _rgb(*values: tuple[int, int, int]) -> tuple[Color, ...]:
    return tuple((r / 255.0, g / 255.0, b / 255.0) for r, g, b in values)


# Small palettes: every value is shared by many people.
TOP_COLORS = _rgb(
    (190, 30, 35),
    (35, 65, 165),
    (40, 125, 60),
    (225, 195, 45),
    (230, 230, 225),
    (30, 30, 32),
    (125, 125, 130),
    (225, 115, 35),
    (115, 50, 135),
    (105, 70, 45),
)
BOTTOM_COLORS = _rgb(
    (45, 65, 115), (28, 28, 32), (110, 110, 115), (185, 165, 120), (220, 220, 215), (95, 60, 40)
)
SKIN_COLORS = _rgb((235, 200, 175), (210, 165, 125), (165, 115, 80), (105, 72, 50))
HAIR_COLORS = _rgb((22, 18, 14), (85, 55, 30), (195, 165, 95), (145, 145, 145))
SHOE_COLORS = _rgb((25, 25, 25), (235, 235, 235), (115, 75, 45))
ACCESSORY_COLORS = _rgb((25, 25, 25), (170, 35, 35), (40, 80, 155), (195, 175, 60), (70, 105, 60))
HEIGHTS = (0.86, 0.92, 0.98)
BUILDS = (0.22, 0.26, 0.30)
LEG_RATIOS = (0.45, 0.49, 0.53)
PATTERNS = ("solid", "hstripes", "vstripes", "split", "checker", "logo")
BOTTOM_TYPES = ("trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "long", "cropped")
ACCESSORIES = ("none", "backpack", "shoulder_bag", "hat")
VIEWS = ("front", "back", "side")
# Ranges the cameras draw from: colour cast per channel, gain, gamma, blur sigma (pixels at 128 px
# height), person height as a share of the image, chance of an occluder; MUTE greys the backgrounds.
CAST = (0.85, 1.15)
GAIN = (0.7, 1.2)
GAMMA = (0.85, 1.2)
BLUR = (0.2, 1.0)
SCALE = (0.8, 0.95)
OCCLUSION = (0.05, 0.3)
MUTE = 0.5


@dataclass(frozen=True)
class SyntheticSpec:
    """What determines a synthetic dataset; equal specs give byte-identical folders.

    The fields are the keys of DATASETS.SYNTHETIC (IMAGE_SIZE = [height, width]); a value out of
    range is an error naming its key.
    """

    seed: int = 0
    num_train_ids: int = 150
    num_test_ids: int = 150
    imgs_per_id: int = 10
    num_cameras: int = 6
    height: int = 128
    width: int = 64
    num_distractors: int = 100
    num_junk: int = 50

    @classmethod
    def from_config(cls, cfg: CfgNode) -> SyntheticSpec:
        """The spec of DATASETS.SYNTHETIC."""
        c = SYNTHETIC_CONFIG.read(cfg)
        if len(c.IMAGE_SIZE) != 2:
            raise ConfigError(
                f"{SYNTHETIC_CONFIG.full_key('IMAGE_SIZE')} must be [height, width], got "
                f"{list(c.IMAGE_SIZE)}"
            )
        return cls(
            c.SEED,
            c.NUM_TRAIN_IDS,
            c.NUM_TEST_IDS,
            c.IMGS_PER_ID,
            c.NUM_CAMERAS,
            int(c.IMAGE_SIZE[0]),
            int(c.IMAGE_SIZE[1]),
            c.NUM_DISTRACTORS,
            c.NUM_JUNK,
        )

    def __post_init__(self) -> None:
        checks = [
            (self.num_train_ids >= 1, "NUM_TRAIN_IDS", self.num_train_ids, ">= 1"),
            (self.num_test_ids >= 1, "NUM_TEST_IDS", self.num_test_ids, ">= 1"),
            (
                self.num_train_ids + self.num_test_ids <= 9999,
                "NUM_TRAIN_IDS + NUM_TEST_IDS",
                self.num_train_ids + self.num_test_ids,
                "<= 9999 (4-digit Market pids)",
            ),
            (
                self.imgs_per_id >= 2 * QUERIES_PER_ID,
                "IMGS_PER_ID",
                self.imgs_per_id,
                f">= {2 * QUERIES_PER_ID}",
            ),
            (
                2 <= self.num_cameras <= 9,
                "NUM_CAMERAS",
                self.num_cameras,
                "in 2..9 (one digit in Market names)",
            ),
            (
                self.height >= 32 and self.width >= 16,
                "IMAGE_SIZE",
                [self.height, self.width],
                "at least [32, 16]",
            ),
            (self.num_distractors >= 0, "NUM_DISTRACTORS", self.num_distractors, ">= 0"),
            (self.num_junk >= 0, "NUM_JUNK", self.num_junk, ">= 0"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"DATASETS.SYNTHETIC.{key} must be {expected}, got {value}")

    def params(self) -> dict[str, Any]:
        """The spec and the generator version, as the marker file stores them."""
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}

    def folder_name(self) -> str:
        """The dataset's folder name: the main values, readable, and a hash of all of them."""
        digest = hashlib.sha1(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:8]
        return (
            f"market_seed{self.seed}_ids{self.num_train_ids}-{self.num_test_ids}_k{self.imgs_per_id}"
            f"_cam{self.num_cameras}_{self.height}x{self.width}_{digest}"
        )

    def counts(self) -> dict[str, tuple[int, int]]:
        """(ids, images) per split as the Market reader sees them.

        Junk is dropped; the distractors are one more gallery identity (pid 0000).
        """
        gallery_ids = self.num_test_ids + (1 if self.num_distractors else 0)
        return {
            "train": (self.num_train_ids, self.num_train_ids * self.imgs_per_id),
            "query": (self.num_test_ids, self.num_test_ids * QUERIES_PER_ID),
            "gallery": (
                gallery_ids,
                self.num_test_ids * (self.imgs_per_id - QUERIES_PER_ID) + self.num_distractors,
            ),
        }


@dataclass(frozen=True)
class Person:
    """One identity's appearance: indices into the palettes and option lists above."""

    height: float
    build: float
    leg_ratio: float
    skin: int
    hair_color: int
    hair_style: int
    top_color: int
    top_color2: int
    pattern: int
    long_sleeves: bool
    bottom_color: int
    bottom_type: int
    shoes: int
    accessory: int
    accessory_color: int
    bag_side: int


@dataclass(frozen=True)
class Camera:
    """One camera's conditions (means; each image jitters around them)."""

    wall: Color
    floor: Color
    panel: Color
    horizon: float
    panel_period: float
    clutter: tuple[tuple[float, float, float, float, Color], ...]
    view_probs: tuple[float, float, float]
    gain: float
    cast: Color
    gamma: float
    blur: float
    scale: float
    offset_x: float
    occlusion: float
    noise: float
    quality: int


def _pick(rng: np.random.Generator, n: int) -> int:
    return int(rng.integers(n))


def random_person(rng: np.random.Generator) -> Person:
    """A person with every attribute drawn uniformly from its palette or option list."""
    top = _pick(rng, len(TOP_COLORS))
    top2 = (top + 1 + _pick(rng, len(TOP_COLORS) - 1)) % len(TOP_COLORS)
    return Person(
        height=HEIGHTS[_pick(rng, len(HEIGHTS))],
        build=BUILDS[_pick(rng, len(BUILDS))],
        leg_ratio=LEG_RATIOS[_pick(rng, len(LEG_RATIOS))],
        skin=_pick(rng, len(SKIN_COLORS)),
        hair_color=_pick(rng, len(HAIR_COLORS)),
        hair_style=_pick(rng, len(HAIR_STYLES)),
        top_color=top,
        top_color2=top2,
        pattern=_pick(rng, len(PATTERNS)),
        long_sleeves=bool(rng.random() < 0.5),
        bottom_color=_pick(rng, len(BOTTOM_COLORS)),
        bottom_type=_pick(rng, len(BOTTOM_TYPES)),
        shoes=_pick(rng, len(SHOE_COLORS)),
        accessory=_pick(rng, len(ACCESSORIES)),
        accessory_color=_pick(rng, len(ACCESSORY_COLORS)),
        bag_side=1 if rng.random() < 0.5 else -1,
    )


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    first, second, third = (float(v) for v in values)
    return first, second, third


def random_camera(rng: np.random.Generator) -> Camera:
    """A camera: its scene, preferred view, lighting, optics and image quality, drawn at random."""

    def color(low: float, high: float, muted: float = 0.0) -> Color:
        c = rng.uniform(low, high, 3)
        return _triple((1 - muted) * c + muted * c.mean())

    clutter = tuple(
        (
            float(rng.uniform(0, 1)),
            float(rng.uniform(0.1, 0.7)),
            float(rng.uniform(0.1, 0.35)),
            float(rng.uniform(0.1, 0.4)),
            color(0.1, 0.9, 0.4),
        )
        for _ in range(int(rng.integers(1, 4)))
    )
    views = np.full(3, 0.15)
    views[_pick(rng, 3)] = 0.7
    cast = rng.uniform(CAST[0], CAST[1], 3)
    return Camera(
        wall=color(0.2, 0.8, MUTE),
        floor=color(0.15, 0.65, MUTE),
        panel=color(0.15, 0.85, MUTE),
        horizon=float(rng.uniform(0.45, 0.8)),
        panel_period=float(rng.uniform(0.2, 0.6)),
        clutter=clutter,
        view_probs=_triple(views),
        gain=float(rng.uniform(*GAIN)),
        cast=_triple(cast / cast.mean()),
        gamma=float(rng.uniform(*GAMMA)),
        blur=float(rng.uniform(*BLUR)),
        scale=float(rng.uniform(*SCALE)),
        offset_x=float(rng.uniform(-0.08, 0.08)),
        occlusion=float(rng.uniform(*OCCLUSION)),
        noise=float(rng.uniform(0.005, 0.03)),
        quality=int(rng.integers(70, 96)),
    )


def _jitter(color: Color, rng: np.random.Generator, amount: float = 0.04) -> Color:
    noise = rng.uniform(-amount, amount, 3).tolist()
    r, g, b = (min(1.0, max(0.0, c + n)) for c, n in zip(color, noise))
    return r, g, b


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return ys, xs


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _draw_background(canvas: np.ndarray, cam: Camera, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    horizon = int(h * np.clip(cam.horizon + rng.uniform(-0.05, 0.05), 0.3, 0.9))
    canvas[:horizon] = _jitter(cam.wall, rng, 0.05)
    canvas[horizon:] = _jitter(cam.floor, rng, 0.05)
    period = max(4, int(w * cam.panel_period))
    shift = int(rng.integers(period))
    for x in range(-shift, w, period):
        cv2.rectangle(
            canvas, _pt(x, 0), _pt(x + period // 6, horizon), _jitter(cam.panel, rng, 0.03), -1
        )
    for y in range(horizon + 4, h, max(3, (h - horizon) // 4)):
        cv2.line(canvas, _pt(0, y), _pt(w, y), _jitter(cam.panel, rng, 0.05), max(1, h // 128))
    for cx, cy, cw, ch, col in cam.clutter:
        x0 = (cx + rng.uniform(-0.1, 0.1)) * w
        y0 = (cy + rng.uniform(-0.05, 0.05)) * h
        cv2.rectangle(
            canvas, _pt(x0, y0), _pt(x0 + cw * w, y0 + ch * h), _jitter(col, rng, 0.05), -1
        )


def _limb(
    canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float, color: Color
) -> None:
    cv2.line(canvas, _pt(*a), _pt(*b), color, max(1, int(round(width))), cv2.LINE_AA)


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


def _pattern_mask(
    shape: tuple[int, int], pattern: str, box: tuple[float, float, float, float], view: str
) -> np.ndarray | None:
    """Where the second clothing colour goes, in the torso's bounding ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    ys, xs = _grid(*shape)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    u, v = (xs - x0) / bw, (ys - y0) / bh
    if pattern == "hstripes":
        return (np.floor(v * 6) % 2) == 1
    if pattern == "vstripes":
        return (np.floor(u * 5) % 2) == 1
    if pattern == "split":
        return v > 0.5
    if pattern == "checker":
        return ((np.floor(u * 4) + np.floor(v * 5)) % 2) == 1
    if pattern == "logo" and view == "front":
        return (np.abs(u - 0.5) < 0.22) & (v > 0.25) & (v < 0.6)
    return None


@dataclass(frozen=True)
class _Outfit:
    """A person's colours in one image, each jittered around its palette value."""

    skin: Color
    hair: Color
    top: Color
    top2: Color
    bottom: Color
    shoe: Color
    accessory: Color

    @classmethod
    def jittered(cls, p: Person, rng: np.random.Generator) -> _Outfit:
        skin = _jitter(SKIN_COLORS[p.skin], rng, 0.02)
        hair = _jitter(HAIR_COLORS[p.hair_color], rng, 0.02)
        top = _jitter(TOP_COLORS[p.top_color], rng)
        top2 = _jitter(TOP_COLORS[p.top_color2], rng)
        bottom = _jitter(BOTTOM_COLORS[p.bottom_color], rng)
        shoe = _jitter(SHOE_COLORS[p.shoes], rng, 0.02)
        accessory = _jitter(ACCESSORY_COLORS[p.accessory_color], rng)
        return cls(skin, hair, top, top2, bottom, shoe, accessory)


@dataclass(frozen=True)
class _Figure:
    """Where a person's parts are on the canvas (pixels) in one pose.

    ``sw`` / ``hw``: shoulder / hip width; ``facing``: which way a side view faces (the bag side);
    ``stride``: the feet's offset at this walking phase.
    """

    person: Person
    view: str
    side: bool
    facing: int
    cx: float
    feet: float
    height: float
    head_r: float
    head_c: tuple[float, float]
    shoulder_y: float
    hip_y: float
    sw: float
    hw: float
    arm_w: float
    leg_w: float
    stride: float

    @classmethod
    def posed(
        cls, p: Person, view: str, cx: float, feet: float, height: float, phase: float
    ) -> _Figure:
        side = view == "side"
        facing = p.bag_side
        top_y = feet - height
        head_r = 0.065 * height
        sw = p.build * height * (0.55 if side else 1.0)
        return cls(
            person=p,
            view=view,
            side=side,
            facing=facing,
            cx=cx,
            feet=feet,
            height=height,
            head_r=head_r,
            head_c=(cx + (0.02 * height * facing if side else 0.0), top_y + head_r),
            shoulder_y=top_y + 2 * head_r + 0.025 * height,
            hip_y=top_y + (1 - p.leg_ratio) * height,
            sw=sw,
            hw=sw * (0.95 if side else 0.8),
            arm_w=0.055 * height,
            leg_w=0.08 * height,
            stride=0.09 * height * phase,
        )

    @property
    def accessory(self) -> str:
        return ACCESSORIES[self.person.accessory]

    @property
    def hair_style(self) -> str:
        return HAIR_STYLES[self.person.hair_style]


def _draw_behind_body(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """Long hair seen from behind or the side, and a backpack seen from the side."""
    height, head_c, head_r = f.height, f.head_c, f.head_r
    if f.hair_style == "long" and f.view != "front":
        cv2.rectangle(
            canvas,
            _pt(head_c[0] - head_r, head_c[1]),
            _pt(head_c[0] + head_r, f.shoulder_y + 0.06 * height),
            colors.hair,
            -1,
        )
    if f.accessory == "backpack" and f.side:
        bx = f.cx - f.facing * (f.sw / 2 + 0.05 * height)
        cv2.rectangle(
            canvas,
            _pt(bx - 0.05 * height, f.shoulder_y + 0.02 * height),
            _pt(bx + 0.05 * height, f.hip_y - 0.04 * height),
            colors.accessory,
            -1,
        )


def _draw_legs(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """Legs (trousers, or bare under shorts and skirts), shoes, then the skirt."""
    cx, hw, height, hip_y = f.cx, f.hw, f.height, f.hip_y
    legs = [(cx - hw / 4, -1.0), (cx + hw / 4, 1.0)] if not f.side else [(cx, -1.0), (cx, 1.0)]
    bottom_type = BOTTOM_TYPES[f.person.bottom_type]
    for hx, sign in legs:
        hip = (hx, hip_y)
        foot = (hx + sign * f.stride * (1.0 if f.side else 0.35), f.feet - 0.03 * height)
        _limb(
            canvas, hip, foot, f.leg_w, colors.bottom if bottom_type == "trousers" else colors.skin
        )
        if bottom_type == "shorts":
            _limb(canvas, hip, _lerp(hip, foot, 0.4), f.leg_w * 1.1, colors.bottom)
        cv2.ellipse(
            canvas,
            _pt(foot[0] + (0.02 * height * f.facing if f.side else 0), foot[1]),
            _pt(0.05 * height, 0.025 * height),
            0,
            0,
            360,
            colors.shoe,
            -1,
            cv2.LINE_AA,
        )
    if bottom_type == "skirt":
        knee_y = hip_y + 0.45 * (f.feet - hip_y)
        poly = np.array(
            [
                _pt(cx - hw / 2, hip_y),
                _pt(cx + hw / 2, hip_y),
                _pt(cx + hw * 0.8, knee_y),
                _pt(cx - hw * 0.8, knee_y),
            ]
        )
        cv2.fillPoly(canvas, [poly], colors.bottom, cv2.LINE_AA)


def _draw_torso(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """The top in its first colour, then its pattern in the second."""
    cx, sw, hw, shoulder_y, hip_y = f.cx, f.sw, f.hw, f.shoulder_y, f.hip_y
    torso = np.array(
        [
            _pt(cx - sw / 2, shoulder_y),
            _pt(cx + sw / 2, shoulder_y),
            _pt(cx + hw / 2, hip_y + 0.02 * f.height),
            _pt(cx - hw / 2, hip_y + 0.02 * f.height),
        ]
    )
    cv2.fillPoly(canvas, [torso], colors.top, cv2.LINE_AA)
    pattern = PATTERNS[f.person.pattern]
    box = (cx - sw / 2, shoulder_y, cx + sw / 2, hip_y)
    mask2 = _pattern_mask(canvas.shape[:2], pattern, box, f.view)
    if mask2 is not None:
        inside = np.zeros(canvas.shape[:2], np.uint8)
        cv2.fillPoly(inside, [torso], 1)
        canvas[(inside == 1) & mask2] = colors.top2


def _draw_straps(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """Over the torso: a backpack from behind, its straps from the front, a shoulder bag's strap."""
    cx, sw, height, shoulder_y, hip_y = f.cx, f.sw, f.height, f.shoulder_y, f.hip_y
    if f.accessory == "backpack" and f.view == "back":
        cv2.rectangle(
            canvas,
            _pt(cx - 0.36 * sw, shoulder_y + 0.03 * height),
            _pt(cx + 0.36 * sw, hip_y - 0.03 * height),
            colors.accessory,
            -1,
        )
    if f.accessory == "backpack" and f.view == "front":
        for sx in (-0.3, 0.3):
            _limb(
                canvas,
                (cx + sx * sw, shoulder_y),
                (cx + sx * sw, shoulder_y + 0.6 * (hip_y - shoulder_y)),
                0.02 * height,
                colors.accessory,
            )
    if f.accessory == "shoulder_bag":
        s = f.person.bag_side if f.view != "back" else -f.person.bag_side
        _limb(
            canvas,
            (cx - s * sw / 2, shoulder_y),
            (cx + s * f.hw / 2, hip_y - 0.02 * height),
            0.018 * height,
            colors.accessory,
        )


def _draw_arms(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """Both arms (the near one from the side): skin, the sleeve over it, the hand."""
    cx, height, arm_w, stride = f.cx, f.height, f.arm_w, f.stride
    arm_sides = (-1.0, 1.0) if not f.side else (float(f.facing),)
    for sign in arm_sides:
        shoulder = (
            cx + sign * (f.sw / 2 - arm_w / 2) if not f.side else cx,
            f.shoulder_y + arm_w / 2,
        )
        swing = -stride * sign * 0.6 if not f.side else -stride * 0.8
        hand = (
            shoulder[0] + sign * 0.03 * height * (0 if f.side else 1) + swing,
            f.hip_y + 0.03 * height,
        )
        _limb(canvas, shoulder, hand, arm_w, colors.skin)
        _limb(
            canvas,
            shoulder,
            _lerp(shoulder, hand, 0.92 if f.person.long_sleeves else 0.4),
            arm_w * 1.05,
            colors.top,
        )
        cv2.circle(canvas, _pt(*hand), max(1, int(arm_w * 0.55)), colors.skin, -1, cv2.LINE_AA)


def _draw_shoulder_bag(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """The shoulder bag at the hip, in front of the arm."""
    if f.accessory != "shoulder_bag":
        return
    height, hip_y = f.height, f.hip_y
    bx = f.cx + f.person.bag_side * (f.hw / 2 + 0.04 * height) * (0.5 if f.side else 1.0)
    cv2.rectangle(
        canvas,
        _pt(bx - 0.05 * height, hip_y - 0.04 * height),
        _pt(bx + 0.05 * height, hip_y + 0.06 * height),
        colors.accessory,
        -1,
    )


def _draw_head(canvas: np.ndarray, f: _Figure, colors: _Outfit) -> None:
    """The head, the hair over it (a cap of hair, or all of it from behind) and a hat."""
    head_c, head_r, height, view = f.head_c, f.head_r, f.height, f.view
    cv2.circle(canvas, _pt(*head_c), max(1, int(head_r)), colors.skin, -1, cv2.LINE_AA)
    style = f.hair_style
    cap = 0.0 if view == "back" else (0.35 if style == "cropped" else 0.5)
    if view == "back":
        cv2.circle(
            canvas,
            _pt(*head_c),
            max(1, int(head_r * (1.05 if style != "cropped" else 0.95))),
            colors.hair,
            -1,
            cv2.LINE_AA,
        )
    else:
        start = 180 if not f.side else (180 if f.facing > 0 else 270)
        span = 180 if not f.side else 270
        cv2.ellipse(
            canvas,
            _pt(*head_c),
            _pt(head_r * 1.05, head_r * (1.0 - cap) + head_r * 0.4),
            0,
            start,
            start + span,
            colors.hair,
            -1,
            cv2.LINE_AA,
        )
        if style == "long":
            for sx in (-1, 1):
                cv2.rectangle(
                    canvas,
                    _pt(head_c[0] + sx * head_r * 0.75, head_c[1]),
                    _pt(head_c[0] + sx * head_r * 1.05, f.shoulder_y + 0.04 * height),
                    colors.hair,
                    -1,
                )
    if f.accessory == "hat":
        cv2.rectangle(
            canvas,
            _pt(head_c[0] - head_r * 1.05, head_c[1] - head_r * 1.15),
            _pt(head_c[0] + head_r * 1.05, head_c[1] - head_r * 0.35),
            colors.accessory,
            -1,
        )
        brim = head_r * 1.5 if view == "front" else head_r * 1.2
        _limb(
            canvas,
            (head_c[0] - brim, head_c[1] - head_r * 0.4),
            (head_c[0] + brim, head_c[1] - head_r * 0.4),
            max(1.0, 0.012 * height),
            colors.accessory,
        )


# Back to front: what a later phase draws covers what an earlier one drew.
_DRAW_PHASES = (
    _draw_behind_body,
    _draw_legs,
    _draw_torso,
    _draw_straps,
    _draw_arms,
    _draw_shoulder_bag,
    _draw_head,
)


def draw_person(
    canvas: np.ndarray,
    p: Person,
    view: str,
    cx: float,
    feet: float,
    height: float,
    phase: float,
    rng: np.random.Generator,
) -> None:
    """Draw a person onto ``canvas`` (H x W x 3 float32 RGB in 0..1), back to front.

    Args:
        canvas: The image to draw on, in place.
        p: The person's appearance.
        view: "front", "back" or "side".
        cx: Horizontal centre of the person, in pixels.
        feet: Row of the feet, in pixels.
        height: The person's height, in pixels.
        phase: Walking phase, -1..1 (how far the legs and arms swing).
        rng: Jitters the person's colours (seven draws, the only randomness here).
    """
    colors = _Outfit.jittered(p, rng)
    figure = _Figure.posed(p, view, cx, feet, height, phase)
    for draw in _DRAW_PHASES:
        draw(canvas, figure, colors)


def _occlude(canvas: np.ndarray, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    color = tuple(float(v) for v in rng.uniform(0.05, 0.95, 3))
    if rng.random() < 0.6:  # something low in front: a car, a bench, a bin
        top = h * rng.uniform(0.65, 0.85)
        x0 = w * rng.uniform(-0.5, 0.4)
        cv2.rectangle(canvas, _pt(x0, top), _pt(x0 + w * rng.uniform(0.5, 1.2), h), color, -1)
    else:  # a pole or a passer-by's edge on one side
        width = w * rng.uniform(0.12, 0.3)
        x0 = 0 if rng.random() < 0.5 else w - width
        cv2.rectangle(canvas, _pt(x0, 0), _pt(x0 + width, h), color, -1)


def _finish(
    canvas: np.ndarray, cam: Camera, rng: np.random.Generator, out_hw: tuple[int, int]
) -> np.ndarray:
    """Downsample, then the camera's lighting, colour cast, gamma, blur and noise; uint8 BGR."""
    img = cv2.resize(canvas, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA)
    cast = np.asarray(cam.cast, np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    img *= cast * np.float32(cam.gain * rng.uniform(0.85, 1.15))
    np.clip(img, 0, 1, out=img)
    img = cv2.pow(img, cam.gamma * rng.uniform(0.92, 1.08))
    sigma = cam.blur * rng.uniform(0.7, 1.3) * out_hw[0] / 128
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cam.noise)
    rgb = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def render(
    person: Person | None,
    cam: Camera,
    rng: np.random.Generator,
    out_hw: tuple[int, int],
    junk: bool = False,
) -> np.ndarray:
    """One image of ``person`` seen by ``cam``.

    Args:
        person: Who is in the picture; None = background (and maybe an occluder) only.
        cam: The camera's conditions.
        rng: The generator's random stream; every draw is taken from it in a fixed order.
        out_hw: (height, width) of the image.
        junk: Place the person badly, mostly outside the box (Market's junk boxes).

    Returns:
        The image, uint8 BGR (as cv2 writes it).
    """
    h, w = out_hw[0] * SUPERSAMPLE, out_hw[1] * SUPERSAMPLE
    canvas = np.empty((h, w, 3), np.float32)
    _draw_background(canvas, cam, rng)
    if person is not None:
        view = VIEWS[int(rng.choice(3, p=np.asarray(cam.view_probs)))]
        height = h * cam.scale * person.height * rng.uniform(0.94, 1.06)
        cx = w * (0.5 + cam.offset_x + rng.uniform(-0.05, 0.05))
        feet = h * rng.uniform(0.95, 1.02)
        if junk:  # a badly placed box: the person mostly outside it
            cx += w * rng.choice([-0.55, 0.55])
            feet += h * rng.uniform(-0.1, 0.4)
        draw_person(canvas, person, view, cx, feet, height, float(rng.uniform(-1, 1)), rng)
    if rng.random() < cam.occlusion:
        _occlude(canvas, rng)
    return _finish(canvas, cam, rng, out_hw)


class _Namer:
    """Market-1501 file names: per camera, a running frame count split into sequence (s1..s9) and
    frame."""

    def __init__(self, rng: np.random.Generator, num_cameras: int) -> None:
        self.rng = rng
        self.counts = {c: int(rng.integers(50, 500)) for c in range(1, num_cameras + 1)}

    def __call__(self, pid: int, cam: int) -> str:
        self.counts[cam] += int(self.rng.integers(1, 40))
        seq, frame = divmod(self.counts[cam], 1_000_000)
        if seq >= 9:
            raise ValueError(
                "Synthetic: too many images for one camera to name them in the Market-1501 format"
            )
        pid_text = "-1" if pid < 0 else f"{pid:04d}"
        return f"{pid_text}_c{cam}s{seq + 1}_{frame:06d}_{int(self.rng.integers(1, 4)):02d}.jpg"


def _identity_cameras(rng: np.random.Generator, spec: SyntheticSpec) -> list[int]:
    """The (1-based) camera of each of the identity's images: 2.. cameras, 2 or more images each."""
    most = min(spec.num_cameras, spec.imgs_per_id // 2)
    least = min(most, max(2, spec.num_cameras - 2))
    k = int(rng.integers(least, most + 1))
    chosen = sorted(int(c) + 1 for c in rng.choice(spec.num_cameras, size=k, replace=False))
    cams = chosen * 2 + [chosen[int(i)] for i in rng.integers(k, size=spec.imgs_per_id - 2 * k)]
    return [cams[int(i)] for i in rng.permutation(len(cams))]


def generate(spec: SyntheticSpec, out_dir: str) -> None:
    """Write the dataset of ``spec`` into ``out_dir`` in the Market-1501 layout.

    Args:
        spec: What to generate; the same spec writes the same bytes.
        out_dir: The folder to write into, empty or absent.
    """
    rng = np.random.default_rng(spec.seed)
    cameras = [random_camera(rng) for _ in range(spec.num_cameras)]
    total = spec.num_train_ids + spec.num_test_ids
    pids = [int(p) + 1 for p in rng.permutation(total)]
    train_pids, test_pids = set(pids[: spec.num_train_ids]), set(pids[spec.num_train_ids :])
    dirs = {split: os.path.join(out_dir, folder) for split, folder in MARKET_SPLIT_DIRS.items()}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    namer = _Namer(rng, spec.num_cameras)
    out_hw = (spec.height, spec.width)

    def write(split: str, pid: int, cam: int, image: np.ndarray) -> None:
        path = os.path.join(dirs[split], namer(pid, cam))
        if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, cameras[cam - 1].quality]):
            raise OSError(f"could not write {path}")

    for pid in range(1, total + 1):
        person = random_person(rng)
        cams = _identity_cameras(rng, spec)
        query_slots: Sequence[int] = ()
        if pid in test_pids:
            first = int(rng.integers(len(cams)))
            others = [i for i in range(len(cams)) if cams[i] != cams[first]]
            query_slots = (first, others[int(rng.integers(len(others)))])
        for i, cam in enumerate(cams):
            split = "train" if pid in train_pids else ("query" if i in query_slots else "gallery")
            write(split, pid, cam, render(person, cameras[cam - 1], rng, out_hw))
    for _ in range(spec.num_distractors):
        cam = int(rng.integers(spec.num_cameras)) + 1
        write("gallery", 0, cam, render(random_person(rng), cameras[cam - 1], rng, out_hw))
    for _ in range(spec.num_junk):
        cam = int(rng.integers(spec.num_cameras)) + 1
        someone = random_person(rng) if rng.random() < 0.7 else None
        write("gallery", -1, cam, render(someone, cameras[cam - 1], rng, out_hw, junk=True))


def _read_marker(folder: str) -> dict[str, Any] | None:
    path = os.path.join(folder, MARKER)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_readable(parent: str, folder: str) -> None:
    """An existing dataset folder (or its parent) that this user cannot read is an error saying
    so, not that the folder is corrupt or missing."""
    paths = [parent, folder, os.path.join(folder, MARKER)]
    paths += [os.path.join(folder, d) for d in MARKET_SPLIT_DIRS.values()]
    for path in paths:
        if not os.path.exists(path):
            continue
        if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            owner = _owner(path)
            raise DatasetNotFoundError(
                f"Synthetic: {path} exists but you cannot read it (owner {owner}, permissions "
                f"{stat.filemode(os.stat(path).st_mode)}): ask {owner} to make it readable "
                f"(chmod -R a+rX {path}), or set DATASETS.ROOT to a folder of your own"
            )


def _owner(path: str) -> str:
    uid = os.stat(path).st_uid
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def ensure_synthetic(spec: SyntheticSpec, parent: str) -> str:
    """The folder of ``spec`` under ``parent``, generated unless a complete one is there.

    The dataset is generated into a temporary folder renamed into place when complete, so that a
    concurrent or an interrupted run never sees half of it.

    Args:
        spec: The dataset's parameters.
        parent: Where its folder goes (``<data root>/synthetic``).

    Returns:
        The dataset folder, ``<parent>/<spec.folder_name()>``.

    Raises:
        DatasetFormatError: The folder exists but its marker does not hold ``spec``'s parameters.
        DatasetNotFoundError: The folder exists but this user cannot read it.
    """
    final = os.path.join(parent, spec.folder_name())
    _check_readable(parent, final)
    if os.path.isdir(final):
        marker = _read_marker(final)
        if marker != spec.params():
            raise DatasetFormatError(
                f"Synthetic: {final} exists but its marker {MARKER} is missing or does not match "
                f"the parameters {spec.params()}; delete the folder to generate it again"
            )
        return final
    os.makedirs(parent, exist_ok=True)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{spec.folder_name()}.tmp-", dir=parent)
    except PermissionError:
        owner = _owner(parent)
        raise DatasetNotFoundError(
            f"Synthetic: {final} is not generated yet and you cannot write into {parent} (owner "
            f"{owner}, permissions {stat.filemode(os.stat(parent).st_mode)}): set DATASETS.ROOT "
            f"to a folder of your own, or ask {owner} to generate it"
        ) from None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
        generate(spec, tmp)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump(spec.params(), f, indent=2, sort_keys=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if _read_marker(final) != spec.params():
                raise
            shutil.rmtree(tmp)  # another process finished the same dataset first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@DATASET_REGISTRY.register()
class Synthetic(Market1501):
    """The generated dataset read by the Market-1501 reader; cameras 1..``spec.num_cameras``.

    From a config, the folder of DATASETS.SYNTHETIC under ``<data root>/synthetic/`` is generated
    on first use (:func:`ensure_synthetic`) and then read.

    Args:
        root: The generated folder (what :func:`ensure_synthetic` returns).
        spec: The parameters it was generated with (its cameras and its official counts).
    """

    config_block = SYNTHETIC_CONFIG

    name = "Synthetic"
    layouts = (Layout(".", tuple(MARKET_SPLIT_DIRS.values())),)
    layout_help = """\
<root>/synthetic/<market_seed..._hash>/     (generated on first use)
    bounding_box_train/  query/  bounding_box_test/  synthetic.json"""

    @configurable
    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.camera_range = (1, spec.num_cameras)
        super().__init__(root)

    @classmethod
    def from_config(cls, cfg: CfgNode, root: str) -> ConfigArgs:
        """The spec of DATASETS.SYNTHETIC and its folder under ``<root>/synthetic/``, generated
        there on first use."""
        spec = SyntheticSpec.from_config(cfg)
        folder = ensure_synthetic(spec, os.path.join(root, "synthetic"))
        return ConfigArgs().set("root", folder).set("spec", spec)

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return dict(self.spec.counts())
