"""Rank lists as pictures: the query, then its first gallery items, framed by identity.

One PNG per query, drawn with Pillow: the query in a blue frame, a gap, then the ranked gallery
images left to right, each in a green frame (the query's identity) or a red one (another
identity), with up to three caption lines under every image (rank, distance, pid and camera).
Every image is resized to the same cell size; a rank list shorter than the layout's item count
(a small gallery) leaves its last slots empty, so all pictures of a run have one size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from reid.config.schema import InvalidArgument
from reid.data.build import read_image
from reid.utils.file_io import atomic_open

__all__ = [
    "BACKGROUND",
    "MATCH_COLOUR",
    "MISMATCH_COLOUR",
    "QUERY_COLOUR",
    "RankListItem",
    "RankListLayout",
    "draw_rank_list",
    "save_png",
]

Colour = tuple[int, int, int]

MATCH_COLOUR: Colour = (0, 176, 0)
MISMATCH_COLOUR: Colour = (224, 0, 0)
QUERY_COLOUR: Colour = (32, 96, 224)
BACKGROUND: Colour = (255, 255, 255)
TEXT_COLOUR: Colour = (0, 0, 0)


@dataclass(frozen=True)
class RankListLayout:
    """Where everything goes in a rank-list picture (pixels).

    Args:
        image_size: (height, width) every image is resized to.
        num_items: Gallery slots after the query.
        border: Frame width around each image.
        gap: Space between two gallery cells.
        query_gap: Space between the query's cell and the first gallery cell.
        margin: Space around everything.
        line_height: Height of one caption line.
        lines: Caption lines under each cell.
    """

    image_size: tuple[int, int] = (128, 64)
    num_items: int = 10
    border: int = 4
    gap: int = 4
    query_gap: int = 16
    margin: int = 6
    line_height: int = 12
    lines: int = 3

    def __post_init__(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InvalidArgument(
                "image_size", f"must be [height, width], both >= 1, got {list(self.image_size)}"
            )
        if self.num_items < 1:
            raise InvalidArgument("num_items", f"must be >= 1, got {self.num_items}")

    @property
    def cell_size(self) -> tuple[int, int]:
        """(width, height) of a framed image."""
        height, width = self.image_size
        return width + 2 * self.border, height + 2 * self.border

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole picture."""
        cell_w, cell_h = self.cell_size
        width = (
            2 * self.margin
            + (self.num_items + 1) * cell_w
            + (self.num_items - 1) * self.gap
            + self.query_gap
        )
        return width, 2 * self.margin + cell_h + self.lines * self.line_height

    def cell_box(self, slot: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of slot ``slot``'s frame (0 = query, 1.. = ranks),
        right and bottom exclusive."""
        if not 0 <= slot <= self.num_items:
            raise IndexError(f"slot must lie in [0, {self.num_items}], got {slot}")
        cell_w, cell_h = self.cell_size
        left = self.margin
        if slot > 0:
            left += cell_w + self.query_gap + (slot - 1) * (cell_w + self.gap)
        return left, self.margin, left + cell_w, self.margin + cell_h


@dataclass(frozen=True)
class RankListItem:
    """One image of a rank list: its file, its frame colour and its caption lines."""

    path: str
    colour: Colour
    caption: tuple[str, ...] = ()


def _fit(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
) -> str:
    """``text``, cut short (ending in '~') to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "~", font=font) > width:
        text = text[:-1]
    return text + "~"


def draw_rank_list(
    query: RankListItem, ranked: Sequence[RankListItem], layout: RankListLayout
) -> Image.Image:
    """The picture of one rank list.

    Args:
        query: The query image (slot 0).
        ranked: The ranked gallery images, best first; at most ``layout.num_items``.
        layout: Sizes and positions.

    Returns:
        An RGB image of ``layout.size``.

    Raises:
        OSError: An image file cannot be read (the message names it).
    """
    if len(ranked) > layout.num_items:
        raise ValueError(
            f"{len(ranked)} ranked images do not fit the layout's {layout.num_items} slots"
        )
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    height, width = layout.image_size
    for slot, item in enumerate([query, *ranked]):
        left, top, right, bottom = layout.cell_box(slot)
        draw.rectangle((left, top, right - 1, bottom - 1), fill=item.colour)
        image = read_image(item.path).resize((width, height), Image.Resampling.BILINEAR)
        canvas.paste(image, (left + layout.border, top + layout.border))
        for line, text in enumerate(item.caption[: layout.lines]):
            y = bottom + line * layout.line_height
            draw.text((left, y), _fit(draw, text, font, right - left), fill=TEXT_COLOUR, font=font)
    return canvas


def save_png(image: Image.Image, path: str) -> None:
    """Write ``image`` to ``path`` as PNG, atomically."""
    with atomic_open(path, "wb") as f:
        image.save(f, format="PNG")
