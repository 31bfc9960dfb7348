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
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from yacs.config import CfgNode

from .bases import DatasetFormatError, Layout
from .build import DATASET_REGISTRY
from .market1501 import MARKET_SPLIT_DIRS, Market1501
from reid.config.schema import ConfigBlock, Key


SYNTHETIC_CONFIG = ConfigBlock(
    "DATASETS.SYNTHETIC",
    (
        'The built-in synthetic dataset ("Synthetic"): generated once into '
        "<root>/synthetic/<folder named after these values>/ in the Market-1501 "
        "layout; changing any value generates a new folder."
    ),
    {
        "SEED": Key(
            0,
            "Seed of the generator (the same seed gives the same images).",
        ),
        "NUM_TRAIN_IDS": Key(
            150,
            "Identities in bounding_box_train/.",
        ),
        "NUM_TEST_IDS": Key(
            150,
            (
                "Identities in query/ (two images each, from two cameras) and "
                "bounding_box_test/ (the rest)."
            ),
        ),
        "IMGS_PER_ID": Key(
            10,
            (
                "Images per identity (at least 4), spread over 2..NUM_CAMERAS cameras with 2 "
                "or more each."
            ),
        ),
        "NUM_CAMERAS": Key(
            6,
            (
                "Number of cameras (2..9), each with its own background, viewpoint, lighting,"
                " blur, scale and occlusion."
            ),
        ),
        "IMAGE_SIZE": Key(
            [128, 64],
            "[height, width] of the generated images.",
        ),
        "NUM_DISTRACTORS": Key(
            100,
            (
                "Gallery distractors (pid 0000, people not in any query) and junk boxes (pid "
                "-1, dropped by the reader)."
            ),
        ),
        "NUM_JUNK": Key(
            50,
            (
                "Junk boxes (pid -1) in the gallery folder, dropped by the reader as in "
                "Market-1501."
            ),
        ),
    },
)


GENERATOR_VERSION = 1
MARKER = "synthetic.json"
SUPERSAMPLE = 2
QUERIES_PER_ID = 2

Color = Tuple[float, float, float]


def _rgb(*values: Tuple[int, int, int]) -> Tuple[Color, ...]:
    return tuple((r / 255.0, g / 255.0, b / 255.0) for r, g, b in values)


# Small palettes: every value is shared by many people.
TOP_COLORS = _rgb((190, 30, 35), (35, 65, 165), (40, 125, 60), (225, 195, 45), (230, 230, 225), (30, 30, 32),
                  (125, 125, 130), (225, 115, 35), (115, 50, 135), (105, 70, 45))
BOTTOM_COLORS = _rgb((45, 65, 115), (28, 28, 32), (110, 110, 115), (185, 165, 120), (220, 220, 215), (95, 60, 40))
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
    """What determines a synthetic dataset; equal specs give byte-identical folders."""

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
    def from_config(cls, cfg: CfgNode) -> "SyntheticSpec":
        c = cfg.DATASETS.SYNTHETIC
        if len(c.IMAGE_SIZE) != 2:
            raise ValueError(f"DATASETS.SYNTHETIC.IMAGE_SIZE must be [height, width], got {list(c.IMAGE_SIZE)}")
        return cls(c.SEED, c.NUM_TRAIN_IDS, c.NUM_TEST_IDS, c.IMGS_PER_ID, c.NUM_CAMERAS,
                   int(c.IMAGE_SIZE[0]), int(c.IMAGE_SIZE[1]), c.NUM_DISTRACTORS, c.NUM_JUNK)

    def __post_init__(self) -> None:
        checks = [
            (self.num_train_ids >= 1, "NUM_TRAIN_IDS", self.num_train_ids, ">= 1"),
            (self.num_test_ids >= 1, "NUM_TEST_IDS", self.num_test_ids, ">= 1"),
            (self.num_train_ids + self.num_test_ids <= 9999, "NUM_TRAIN_IDS + NUM_TEST_IDS",
             self.num_train_ids + self.num_test_ids, "<= 9999 (4-digit Market pids)"),
            (self.imgs_per_id >= 2 * QUERIES_PER_ID, "IMGS_PER_ID", self.imgs_per_id, f">= {2 * QUERIES_PER_ID}"),
            (2 <= self.num_cameras <= 9, "NUM_CAMERAS", self.num_cameras, "in 2..9 (one digit in Market names)"),
            (self.height >= 32 and self.width >= 16, "IMAGE_SIZE", [self.height, self.width], "at least [32, 16]"),
            (self.num_distractors >= 0, "NUM_DISTRACTORS", self.num_distractors, ">= 0"),
            (self.num_junk >= 0, "NUM_JUNK", self.num_junk, ">= 0"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"DATASETS.SYNTHETIC.{key} must be {expected}, got {value}")

    def params(self) -> Dict[str, Any]:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}

    def folder_name(self) -> str:
        digest = hashlib.sha1(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:8]
        return (f"market_seed{self.seed}_ids{self.num_train_ids}-{self.num_test_ids}_k{self.imgs_per_id}"
                f"_cam{self.num_cameras}_{self.height}x{self.width}_{digest}")

    def counts(self) -> Dict[str, Tuple[int, int]]:
        """(ids, images) per split as the Market reader sees them (junk dropped, distractors in the gallery)."""
        gallery_ids = self.num_test_ids + (1 if self.num_distractors else 0)
        return {
            "train": (self.num_train_ids, self.num_train_ids * self.imgs_per_id),
            "query": (self.num_test_ids, self.num_test_ids * QUERIES_PER_ID),
            "gallery": (gallery_ids, self.num_test_ids * (self.imgs_per_id - QUERIES_PER_ID) + self.num_distractors),
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
    clutter: Tuple[Tuple[float, float, float, float, Color], ...]
    view_probs: Tuple[float, float, float]
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


def random_camera(rng: np.random.Generator) -> Camera:
    def color(low: float, high: float, muted: float = 0.0) -> Color:
        c = rng.uniform(low, high, 3)
        return tuple(float(v) for v in (1 - muted) * c + muted * c.mean())  # type: ignore[return-value]

    clutter = tuple(
        (float(rng.uniform(0, 1)), float(rng.uniform(0.1, 0.7)), float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.1, 0.4)),
         color(0.1, 0.9, 0.4))
        for _ in range(int(rng.integers(1, 4)))
    )
    views = np.full(3, 0.15)
    views[_pick(rng, 3)] = 0.7
    cast = rng.uniform(CAST[0], CAST[1], 3)
    return Camera(
        wall=color(0.2, 0.8, MUTE), floor=color(0.15, 0.65, MUTE), panel=color(0.15, 0.85, MUTE),
        horizon=float(rng.uniform(0.45, 0.8)), panel_period=float(rng.uniform(0.2, 0.6)), clutter=clutter,
        view_probs=tuple(float(v) for v in views),  # type: ignore[arg-type]
        gain=float(rng.uniform(*GAIN)), cast=tuple(float(v) for v in cast / cast.mean()),  # type: ignore[arg-type]
        gamma=float(rng.uniform(*GAMMA)), blur=float(rng.uniform(*BLUR)), scale=float(rng.uniform(*SCALE)),
        offset_x=float(rng.uniform(-0.08, 0.08)), occlusion=float(rng.uniform(*OCCLUSION)),
        noise=float(rng.uniform(0.005, 0.03)), quality=int(rng.integers(70, 96)),
    )


def _jitter(color: Color, rng: np.random.Generator, amount: float = 0.04) -> Color:
    noise = rng.uniform(-amount, amount, 3).tolist()
    return tuple(min(1.0, max(0.0, c + n)) for c, n in zip(color, noise))  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return ys, xs


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x)), int(round(y))


def _draw_background(canvas: np.ndarray, cam: Camera, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    horizon = int(h * np.clip(cam.horizon + rng.uniform(-0.05, 0.05), 0.3, 0.9))
    canvas[:horizon] = _jitter(cam.wall, rng, 0.05)
    canvas[horizon:] = _jitter(cam.floor, rng, 0.05)
    period = max(4, int(w * cam.panel_period))
    shift = int(rng.integers(period))
    for x in range(-shift, w, period):
        cv2.rectangle(canvas, _pt(x, 0), _pt(x + period // 6, horizon), _jitter(cam.panel, rng, 0.03), -1)
    for y in range(horizon + 4, h, max(3, (h - horizon) // 4)):
        cv2.line(canvas, _pt(0, y), _pt(w, y), _jitter(cam.panel, rng, 0.05), max(1, h // 128))
    for cx, cy, cw, ch, col in cam.clutter:
        x0 = (cx + rng.uniform(-0.1, 0.1)) * w
        y0 = (cy + rng.uniform(-0.05, 0.05)) * h
        cv2.rectangle(canvas, _pt(x0, y0), _pt(x0 + cw * w, y0 + ch * h), _jitter(col, rng, 0.05), -1)


def _limb(canvas: np.ndarray, a: Tuple[float, float], b: Tuple[float, float], width: float, color: Color) -> None:
    cv2.line(canvas, _pt(*a), _pt(*b), color, max(1, int(round(width))), cv2.LINE_AA)


def _lerp(a: Tuple[float, float], b: Tuple[float, float], t: float) -> Tuple[float, float]:
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


def _pattern_mask(shape: Tuple[int, int], pattern: str, box: Tuple[float, float, float, float], view: str) -> Optional[np.ndarray]:
    """Where the second clothing colour goes, inside the torso's bounding ``box`` (x0, y0, x1, y1)."""
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


def draw_person(canvas: np.ndarray, p: Person, view: str, cx: float, feet: float, height: float,
                phase: float, rng: np.random.Generator) -> None:
    """Draw ``p`` seen from ``view`` standing at (cx, feet), ``height`` pixels tall, walking at ``phase`` (-1..1)."""
    skin = _jitter(SKIN_COLORS[p.skin], rng, 0.02)
    hair = _jitter(HAIR_COLORS[p.hair_color], rng, 0.02)
    top = _jitter(TOP_COLORS[p.top_color], rng)
    top2 = _jitter(TOP_COLORS[p.top_color2], rng)
    bottom = _jitter(BOTTOM_COLORS[p.bottom_color], rng)
    shoe = _jitter(SHOE_COLORS[p.shoes], rng, 0.02)
    acc = _jitter(ACCESSORY_COLORS[p.accessory_color], rng)
    accessory, pattern = ACCESSORIES[p.accessory], PATTERNS[p.pattern]
    side = view == "side"
    facing = p.bag_side  # which way a side view faces

    top_y = feet - height
    head_r = 0.065 * height
    head_c = (cx + (0.02 * height * facing if side else 0.0), top_y + head_r)
    shoulder_y = top_y + 2 * head_r + 0.025 * height
    hip_y = top_y + (1 - p.leg_ratio) * height
    sw = p.build * height * (0.55 if side else 1.0)
    hw = sw * (0.95 if side else 0.8)
    arm_w, leg_w = 0.055 * height, 0.08 * height
    stride = 0.09 * height * phase

    # Behind the body: long hair and, seen from the front, nothing of the backpack but its straps.
    if HAIR_STYLES[p.hair_style] == "long" and view != "front":
        cv2.rectangle(canvas, _pt(head_c[0] - head_r, head_c[1]), _pt(head_c[0] + head_r, shoulder_y + 0.06 * height), hair, -1)
    if accessory == "backpack" and side:
        bx = cx - facing * (sw / 2 + 0.05 * height)
        cv2.rectangle(canvas, _pt(bx - 0.05 * height, shoulder_y + 0.02 * height), _pt(bx + 0.05 * height, hip_y - 0.04 * height), acc, -1)

    # Legs and shoes.
    legs = [(cx - hw / 4, -1.0), (cx + hw / 4, 1.0)] if not side else [(cx, -1.0), (cx, 1.0)]
    bottom_type = BOTTOM_TYPES[p.bottom_type]
    for hx, sign in legs:
        hip = (hx, hip_y)
        foot = (hx + sign * stride * (1.0 if side else 0.35), feet - 0.03 * height)
        _limb(canvas, hip, foot, leg_w, bottom if bottom_type == "trousers" else skin)
        if bottom_type == "shorts":
            _limb(canvas, hip, _lerp(hip, foot, 0.4), leg_w * 1.1, bottom)
        cv2.ellipse(canvas, _pt(foot[0] + (0.02 * height * facing if side else 0), foot[1]),
                    _pt(0.05 * height, 0.025 * height), 0, 0, 360, shoe, -1, cv2.LINE_AA)
    if bottom_type == "skirt":
        knee_y = hip_y + 0.45 * (feet - hip_y)
        poly = np.array([_pt(cx - hw / 2, hip_y), _pt(cx + hw / 2, hip_y), _pt(cx + hw * 0.8, knee_y), _pt(cx - hw * 0.8, knee_y)])
        cv2.fillPoly(canvas, [poly], bottom, cv2.LINE_AA)

    # Torso with its pattern.
    torso = np.array([_pt(cx - sw / 2, shoulder_y), _pt(cx + sw / 2, shoulder_y), _pt(cx + hw / 2, hip_y + 0.02 * height),
                      _pt(cx - hw / 2, hip_y + 0.02 * height)])
    cv2.fillPoly(canvas, [torso], top, cv2.LINE_AA)
    mask2 = _pattern_mask(canvas.shape[:2], pattern, (cx - sw / 2, shoulder_y, cx + sw / 2, hip_y), view)
    if mask2 is not None:
        inside = np.zeros(canvas.shape[:2], np.uint8)
        cv2.fillPoly(inside, [torso], 1)
        canvas[(inside == 1) & mask2] = top2

    # Backpack from behind; shoulder bag strap and bag.
    if accessory == "backpack" and view == "back":
        cv2.rectangle(canvas, _pt(cx - 0.36 * sw, shoulder_y + 0.03 * height), _pt(cx + 0.36 * sw, hip_y - 0.03 * height), acc, -1)
    if accessory == "backpack" and view == "front":
        for sx in (-0.3, 0.3):
            _limb(canvas, (cx + sx * sw, shoulder_y), (cx + sx * sw, shoulder_y + 0.6 * (hip_y - shoulder_y)), 0.02 * height, acc)
    if accessory == "shoulder_bag":
        s = p.bag_side if view != "back" else -p.bag_side
        _limb(canvas, (cx - s * sw / 2, shoulder_y), (cx + s * hw / 2, hip_y - 0.02 * height), 0.018 * height, acc)

    # Arms (sleeves) and hands.
    arm_sides = (-1.0, 1.0) if not side else (float(facing),)
    for sign in arm_sides:
        shoulder = (cx + sign * (sw / 2 - arm_w / 2) if not side else cx, shoulder_y + arm_w / 2)
        swing = -stride * sign * 0.6 if not side else -stride * 0.8
        hand = (shoulder[0] + sign * 0.03 * height * (0 if side else 1) + swing, hip_y + 0.03 * height)
        _limb(canvas, shoulder, hand, arm_w, skin)
        _limb(canvas, shoulder, _lerp(shoulder, hand, 0.92 if p.long_sleeves else 0.4), arm_w * 1.05, top)
        cv2.circle(canvas, _pt(*hand), max(1, int(arm_w * 0.55)), skin, -1, cv2.LINE_AA)
    if accessory == "shoulder_bag":
        bx = cx + p.bag_side * (hw / 2 + 0.04 * height) * (0.5 if side else 1.0)
        cv2.rectangle(canvas, _pt(bx - 0.05 * height, hip_y - 0.04 * height), _pt(bx + 0.05 * height, hip_y + 0.06 * height), acc, -1)

    # Head, hair, hat.
    cv2.circle(canvas, _pt(*head_c), max(1, int(head_r)), skin, -1, cv2.LINE_AA)
    style = HAIR_STYLES[p.hair_style]
    cap = 0.0 if view == "back" else (0.35 if style == "cropped" else 0.5)
    if view == "back":
        cv2.circle(canvas, _pt(*head_c), max(1, int(head_r * (1.05 if style != "cropped" else 0.95))), hair, -1, cv2.LINE_AA)
    else:
        start = 180 if not side else (180 if facing > 0 else 270)
        span = 180 if not side else 270
        cv2.ellipse(canvas, _pt(*head_c), _pt(head_r * 1.05, head_r * (1.0 - cap) + head_r * 0.4), 0, start, start + span, hair, -1, cv2.LINE_AA)
        if style == "long":
            for sx in (-1, 1):
                cv2.rectangle(canvas, _pt(head_c[0] + sx * head_r * 0.75, head_c[1]), _pt(head_c[0] + sx * head_r * 1.05, shoulder_y + 0.04 * height), hair, -1)
    if accessory == "hat":
        cv2.rectangle(canvas, _pt(head_c[0] - head_r * 1.05, head_c[1] - head_r * 1.15), _pt(head_c[0] + head_r * 1.05, head_c[1] - head_r * 0.35), acc, -1)
        brim = head_r * 1.5 if view == "front" else head_r * 1.2
        _limb(canvas, (head_c[0] - brim, head_c[1] - head_r * 0.4), (head_c[0] + brim, head_c[1] - head_r * 0.4), max(1.0, 0.012 * height), acc)


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


def _finish(canvas: np.ndarray, cam: Camera, rng: np.random.Generator, out_hw: Tuple[int, int]) -> np.ndarray:
    """Downsample, then the camera's lighting, colour cast, gamma, blur and noise; returns uint8 BGR."""
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


def render(person: Optional[Person], cam: Camera, rng: np.random.Generator, out_hw: Tuple[int, int], junk: bool = False) -> np.ndarray:
    """One image (uint8 BGR) of ``person`` (or of background only) seen by ``cam``."""
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
    """Market-1501 file names: per camera a running frame count split into sequence (s1..s9) and frame."""

    def __init__(self, rng: np.random.Generator, num_cameras: int) -> None:
        self.rng = rng
        self.counts = {c: int(rng.integers(50, 500)) for c in range(1, num_cameras + 1)}

    def __call__(self, pid: int, cam: int) -> str:
        self.counts[cam] += int(self.rng.integers(1, 40))
        seq, frame = divmod(self.counts[cam], 1_000_000)
        if seq >= 9:
            raise ValueError("Synthetic: too many images for one camera to name them in the Market-1501 format")
        pid_text = "-1" if pid < 0 else f"{pid:04d}"
        return f"{pid_text}_c{cam}s{seq + 1}_{frame:06d}_{int(self.rng.integers(1, 4)):02d}.jpg"


def _identity_cameras(rng: np.random.Generator, spec: SyntheticSpec) -> List[int]:
    """The (1-based) camera of each of the identity's images: 2.. cameras, 2 or more images each."""
    most = min(spec.num_cameras, spec.imgs_per_id // 2)
    least = min(most, max(2, spec.num_cameras - 2))
    k = int(rng.integers(least, most + 1))
    chosen = sorted(int(c) + 1 for c in rng.choice(spec.num_cameras, size=k, replace=False))
    cams = chosen * 2 + [chosen[int(i)] for i in rng.integers(k, size=spec.imgs_per_id - 2 * k)]
    return [cams[int(i)] for i in rng.permutation(len(cams))]


def generate(spec: SyntheticSpec, out_dir: str) -> None:
    """Write the dataset of ``spec`` into ``out_dir`` (Market layout; the folder must be empty or absent)."""
    rng = np.random.default_rng(spec.seed)
    cameras = [random_camera(rng) for _ in range(spec.num_cameras)]
    total = spec.num_train_ids + spec.num_test_ids
    pids = [int(p) + 1 for p in rng.permutation(total)]
    train_pids, test_pids = set(pids[: spec.num_train_ids]), set(pids[spec.num_train_ids:])
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
        person = random_person(rng) if rng.random() < 0.7 else None
        write("gallery", -1, cam, render(person, cameras[cam - 1], rng, out_hw, junk=True))


def _read_marker(folder: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(folder, MARKER)
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def ensure_synthetic(spec: SyntheticSpec, parent: str) -> str:
    """The folder of ``spec`` under ``parent``, generated (atomically) unless a complete one is there."""
    final = os.path.join(parent, spec.folder_name())
    if os.path.isdir(final):
        marker = _read_marker(final)
        if marker != spec.params():
            raise DatasetFormatError(
                f"Synthetic: {final} exists but its marker {MARKER} is missing or does not match the parameters "
                f"{spec.params()}; delete the folder to generate it again"
            )
        return final
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{spec.folder_name()}.tmp-", dir=parent)
    try:
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
    """The generated dataset read by the Market-1501 reader; cameras 1..NUM_CAMERAS."""

    config_block = SYNTHETIC_CONFIG

    name = "Synthetic"
    layouts = (Layout(".", tuple(MARKET_SPLIT_DIRS.values())),)
    layout_help = """\
<root>/synthetic/<market_seed..._hash>/     (generated on first use)
    bounding_box_train/  query/  bounding_box_test/  synthetic.json"""

    def __init__(self, root: str, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.camera_range = (1, spec.num_cameras)
        super().__init__(root)

    @classmethod
    def from_config(cls, cfg: CfgNode, root: str) -> "Synthetic":
        spec = SyntheticSpec.from_config(cfg)
        return cls(ensure_synthetic(spec, os.path.join(root, "synthetic")), spec)

    def official_counts(self) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
        return dict(self.spec.counts())  # type: ignore[arg-type]
