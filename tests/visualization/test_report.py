"""A test set's files and index.html: what is drawn is what the metric ranked; links resolve."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from reid.config import ConfigError, load_config
from reid.evaluation import EvalSettings, ReidEvaluator
from reid.structures import BatchKeys
from reid.visualization.analysis import analyze_ranking
from reid.visualization.ranklist import MATCH_COLOUR, MISMATCH_COLOUR, QUERY_COLOUR
from reid.visualization.report import (
    VisualizeOptions,
    VisualizingEvaluator,
    write_index,
    write_test_set,
)


def make_images(tmp_path, num):
    """One solid-colour image per item, each colour distinct: a slot shows which image it holds."""
    rng = np.random.default_rng(0)
    colours = [tuple(int(v) for v in c) for c in rng.integers(0, 256, size=(num, 3))]
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(colours):
        path = str(folder / f"{i:04d} img.png")  # a space: links must be quoted
        Image.new("RGB", (16, 32), colour).save(path)
        paths.append(path)
    return paths, colours


def set_case(seed=0, num_q=8, num_g=24):
    rng = np.random.default_rng(seed)
    features = torch.from_numpy(rng.normal(size=(num_q + num_g, 6)).astype(np.float32))
    pids = torch.from_numpy(rng.integers(1, 5, num_q + num_g))
    pids[0] = 77  # a query the metric skips
    camids = torch.from_numpy(rng.integers(0, 3, num_q + num_g))
    return features, pids, camids, num_q


def test_test_set_files_show_what_the_metric_ranked(tmp_path, local_files, written_files):
    order = "best"
    features, pids, camids, nq = set_case()
    paths, colours = make_images(tmp_path, features.shape[0])
    options = VisualizeOptions(num_queries=5, order=order, top_k=4, image_size=(24, 12))
    analysis = analyze_ranking(features, pids, camids, nq, top_k=4, max_rank=50)
    out = tmp_path / "vis"
    report = write_test_set(
        str(out / "Tiny Set"),
        "Tiny Set",
        analysis,
        paths,
        pids.numpy(),
        camids.numpy(),
        nq,
        "cosine",
        options,
    )
    index = write_index(str(out), [report], source="w.pth")
    # Every reference resolves, and every file written is referenced (config and log aside).
    assert local_files(index) == written_files(str(out)) - {os.path.normpath(index)}
    folder = out / "Tiny Set"
    for name in ("cmc.png", "distances.png", "roc.png"):
        with Image.open(folder / name) as image:
            assert image.size == (640, 400)

    listing = json.load(open(folder / "rank_lists.json"))
    chosen = analysis.query_order(order, 5, seed=0)
    assert [q["query_index"] for q in listing["queries"]] == chosen.tolist()
    assert 0 not in chosen  # skipped by the metric, never drawn
    assert listing["num_valid_queries"] == nq - 1 and listing["top_k"] == 4
    layout = options.layout
    lists = analysis.rank_lists
    for entry in listing["queries"]:
        q = entry["query_index"]
        assert entry["path"] == paths[q] and entry["ap"] == analysis.ap[q]
        ranked = entry["ranked"]
        assert [r["gallery_index"] for r in ranked] == lists.columns[q].tolist()
        assert [r["match"] for r in ranked] == lists.matches[q].tolist()
        assert [r["distance"] for r in ranked] == lists.distances[q].tolist()
        assert all(r["match"] == (r["pid"] == entry["pid"]) for r in ranked)
        assert all(not (r["pid"] == entry["pid"] and r["camid"] == entry["camid"]) for r in ranked)
        first = next((r["rank"] for r in ranked if r["match"]), None)
        assert entry["first_match_rank"] == first
        with Image.open(folder / entry["image"]) as picture:
            picture = picture.convert("RGB")
            assert picture.size == layout.size
            slots = [(q, QUERY_COLOUR)] + [
                (nq + r["gallery_index"], MATCH_COLOUR if r["match"] else MISMATCH_COLOUR)
                for r in ranked
            ]
            for slot, (image_index, frame) in enumerate(slots):
                left, top, right, bottom = layout.cell_box(slot)
                assert picture.getpixel((left, top)) == frame
                centre = picture.getpixel(((left + right) // 2, (top + bottom) // 2))
                assert centre == colours[image_index]

    curves = json.load(open(folder / "curves.json"))
    assert curves["cmc"]["rate"] == analysis.cmc.tolist()
    assert curves["roc"]["fpr"] == list(analysis.roc_fprs)
    assert curves["roc"]["tpr"] == analysis.roc_tprs
    assert curves["results"] == analysis.results
    assert sum(curves["distances"]["negative"]) == analysis.num_negatives

    page = open(index, encoding="utf-8").read()
    assert "w.pth" in page and "Tiny Set" in page
    assert f"{analysis.results['mAP']:.2f}" in page


def test_figures_only(tmp_path, local_files, written_files):
    features, pids, camids, nq = set_case(1)
    paths, _ = make_images(tmp_path, features.shape[0])
    analysis = analyze_ranking(features, pids, camids, nq)
    report = write_test_set(
        str(tmp_path / "vis" / "S"),
        "S",
        analysis,
        paths,
        pids.numpy(),
        camids.numpy(),
        nq,
        "cosine",
        VisualizeOptions(num_queries=0),
    )
    index = write_index(str(tmp_path / "vis"), [report])
    assert not report.entries and not (tmp_path / "vis" / "S" / "ranklists").exists()
    assert "No rank lists drawn" in open(index).read()
    assert local_files(index) == written_files(str(tmp_path / "vis")) - {os.path.normpath(index)}


def batches(features, pids, camids, paths, size=5):
    for s in range(0, features.shape[0], size):
        yield (
            {
                BatchKeys.IMAGES: torch.zeros(1),
                BatchKeys.TARGETS: pids[s : s + size],
                BatchKeys.CAMIDS: camids[s : s + size],
                BatchKeys.PATHS: paths[s : s + size],
            },
            features[s : s + size],
        )


def test_visualizing_evaluator_reports_the_evaluators_results(tmp_path):
    features, pids, camids, nq = set_case(2)
    paths, _ = make_images(tmp_path, features.shape[0])
    settings = EvalSettings(roc=True, rerank=True, rerank_k1=4, rerank_k2=2)
    plain = ReidEvaluator(nq, settings)
    drawing = VisualizingEvaluator(
        nq, str(tmp_path / "S"), VisualizeOptions(num_queries=2), settings, "S"
    )
    for evaluator in (plain, drawing):
        evaluator.reset()
        for batch, f in batches(features, pids, camids, paths):
            evaluator.process(batch, f)
    assert drawing.evaluate() == plain.evaluate()
    assert drawing.report is not None and len(drawing.report.entries) == 2
    assert drawing.report.metric == "cosine, k-reciprocal re-ranked"
    drawing.reset()
    batch, f = next(batches(features, pids, camids, paths))
    del batch[BatchKeys.PATHS]
    with pytest.raises(ValueError, match="carry no image paths"):
        drawing.process(batch, f)


def test_options_from_the_config_name_the_key():
    cfg = load_config(None, ["TEST.VISUALIZE.ORDER", "median"])
    with pytest.raises(ConfigError, match="TEST.VISUALIZE.ORDER must be one of worst, best"):
        VisualizeOptions(cfg)
    cfg = load_config(None, ["TEST.VISUALIZE.TOP_K", "0"])
    with pytest.raises(ConfigError, match="TEST.VISUALIZE.TOP_K must be >= 1, got 0"):
        VisualizeOptions(cfg)
    cfg = load_config(None, ["TEST.VISUALIZE.IMAGE_SIZE", "[128]"])
    with pytest.raises(ConfigError, match="TEST.VISUALIZE.IMAGE_SIZE must be"):
        VisualizeOptions(cfg)
    options = VisualizeOptions(load_config(None, ["TEST.VISUALIZE.NUM_QUERIES", "3"]))
    assert (options.num_queries, options.order, options.top_k) == (3, "worst", 10)
    assert options.layout.image_size == (128, 64)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of index.html beside it (same relative links): after load, record the
# images the browser could not decode.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src);
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", JSON.stringify(broken));
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_index_renders_in_a_real_browser(tmp_path):
    features, pids, camids, nq = set_case(3)
    paths, _ = make_images(tmp_path, features.shape[0])
    analysis = analyze_ranking(features, pids, camids, nq)
    out = tmp_path / "vis"
    report = write_test_set(
        str(out / "Set A"),
        "Set A",
        analysis,
        paths,
        pids.numpy(),
        camids.numpy(),
        nq,
        "cosine",
        VisualizeOptions(num_queries=3, top_k=5),
    )
    index = write_index(str(out), [report])
    probe = out / "probe.html"
    probe.write_text(open(index).read().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'data-images="6"' in dom  # 3 figures + 3 rank lists
    assert 'data-broken="[]"' in dom
