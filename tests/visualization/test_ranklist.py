"""Rank-list pictures: size, frame colours by identity, each image in its slot, captions."""

import numpy as np
import pytest
from PIL import Image

from reid.config import InvalidArgument
from reid.visualization.ranklist import (
    BACKGROUND,
    MATCH_COLOUR,
    MISMATCH_COLOUR,
    QUERY_COLOUR,
    RankListItem,
    RankListLayout,
    draw_rank_list,
    save_png,
)


def solid(tmp_path, name, colour, size=(20, 40)):
    path = str(tmp_path / name)
    Image.new("RGB", size, colour).save(path)
    return path


def test_layout_geometry():
    layout = RankListLayout(image_size=(40, 20), num_items=3, border=2, gap=3, query_gap=10)
    # cells are 24 x 44; 6 + 24 + 10 + 24 + 3 + 24 + 3 + 24 + 6 = 124 wide
    assert layout.cell_size == (24, 44)
    assert layout.size == (124, 6 + 44 + 3 * 12 + 6)
    assert layout.cell_box(0) == (6, 6, 30, 50)
    assert layout.cell_box(1) == (40, 6, 64, 50)
    assert layout.cell_box(3) == (94, 6, 118, 50)
    with pytest.raises(IndexError):
        layout.cell_box(4)
    with pytest.raises(InvalidArgument, match="image_size must be"):
        RankListLayout(image_size=(0, 20))
    with pytest.raises(InvalidArgument, match="num_items must be >= 1"):
        RankListLayout(num_items=0)


def test_frames_and_images_in_their_slots(tmp_path):
    layout = RankListLayout(image_size=(40, 20), num_items=4)
    query = RankListItem(solid(tmp_path, "q.png", (10, 10, 10)), QUERY_COLOUR, ("query",))
    right = RankListItem(
        solid(tmp_path, "right.jpg", (200, 200, 0), size=(64, 128)),  # resized to 20 x 40
        MATCH_COLOUR,
        ("#1", "0.125", "id 3 cam 1"),
    )
    wrong = RankListItem(solid(tmp_path, "wrong.png", (0, 200, 200)), MISMATCH_COLOUR, ("#2",))
    picture = draw_rank_list(query, [right, wrong], layout)
    assert picture.size == layout.size and picture.mode == "RGB"
    for slot, frame, inside in (
        (0, QUERY_COLOUR, (10, 10, 10)),
        (1, MATCH_COLOUR, (200, 200, 0)),
        (2, MISMATCH_COLOUR, (0, 200, 200)),
    ):
        left, top, right_edge, bottom = layout.cell_box(slot)
        b = layout.border
        for x, y in ((left, top), (right_edge - 1, bottom - 1), (left + b - 1, top + 20)):
            assert picture.getpixel((x, y)) == frame, (slot, x, y)
        centre = picture.getpixel(((left + right_edge) // 2, (top + bottom) // 2))
        assert max(abs(a - e) for a, e in zip(centre, inside)) <= 3, (slot, centre)  # JPEG
        assert picture.getpixel((left + b, top + b)) != frame
        # the caption band under the cell has text (dark pixels) for captioned slots
        band = picture.crop((left, bottom, right_edge, bottom + layout.line_height))
        assert np.asarray(band).min() < 100
    # empty slots (a short list) stay background
    left, top, right_edge, bottom = layout.cell_box(3)
    assert picture.getpixel(((left + right_edge) // 2, (top + bottom) // 2)) == BACKGROUND
    assert picture.getpixel((left, top)) == BACKGROUND

    save_png(picture, str(tmp_path / "out" / "list.png"))
    with Image.open(tmp_path / "out" / "list.png") as saved:
        assert saved.format == "PNG" and saved.size == layout.size
        assert saved.convert("RGB").getpixel(layout.cell_box(1)[:2]) == MATCH_COLOUR


def test_long_captions_are_cut_to_the_cell(tmp_path):
    layout = RankListLayout(image_size=(40, 20), num_items=1, lines=1)
    path = solid(tmp_path, "a.png", (50, 50, 50))
    picture = draw_rank_list(
        RankListItem(path, QUERY_COLOUR, ("a caption far too long for a cell",)), [], layout
    )
    left, _, right_edge, bottom = layout.cell_box(0)
    beyond = picture.crop((right_edge, bottom, layout.size[0], layout.size[1]))
    assert (np.asarray(beyond) == BACKGROUND).all()


def test_errors_name_the_problem(tmp_path):
    layout = RankListLayout(image_size=(40, 20), num_items=1)
    path = solid(tmp_path, "a.png", (50, 50, 50))
    item = RankListItem(path, MATCH_COLOUR)
    with pytest.raises(ValueError, match="2 ranked images do not fit the layout's 1 slots"):
        draw_rank_list(item, [item, item], layout)
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(OSError, match="cannot read image .*missing.jpg"):
        draw_rank_list(item, [RankListItem(missing, MATCH_COLOUR)], layout)
