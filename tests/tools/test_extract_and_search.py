"""tools/extract_features.py and tools/search.py on a tiny trained run: the files they write
against the API and a full distance sort, unreadable images, saved indexes, faiss, errors."""

import glob
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from reid import FeatureExtractor
from reid.config import load_config
from reid.data.datasets import build_dataset
from reid.evaluation.distance import compute_distmat
from reid.evaluation.search import load_features

pytestmark = pytest.mark.slow  # the tools end to end, on a trained run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def extract():
    return _tool("extract_features")


@pytest.fixture(scope="module")
def search():
    return _tool("search")


def _split(tiny_run, name):
    """A split folder of the tiny run's test set (other tests generate other synthetic sets in
    the session's data root)."""
    cfg = load_config(os.path.join(tiny_run, "config.yaml"))
    folder = os.path.join(build_dataset(cfg.DATASETS.TESTS[0], cfg).dataset_dir, name)
    assert os.path.isdir(folder), folder
    return folder


def test_extract_writes_the_apis_features_and_lists_unreadable_images(
    extract, tiny_run, tmp_path, capsys
):
    query = _split(tiny_run, "query")
    extra = tmp_path / "more"
    (extra / "deeper").mkdir(parents=True)
    (extra / "deeper" / "broken.jpg").write_text("not a jpeg")
    first = sorted(os.listdir(query))[0]
    (extra / "deeper" / "copy.jpg").write_bytes(open(os.path.join(query, first), "rb").read())
    out = str(tmp_path / "feats.npz")
    argv = ["--config-file", tiny_run, "--input", query, str(extra), "--output", out]
    assert extract.main([*argv, "--no-progress"]) == 1  # one image skipped

    written = load_features(out)
    expected_paths = sorted(os.path.join(query, n) for n in os.listdir(query))
    expected_paths.append(str(extra / "deeper" / "copy.jpg"))
    assert written.paths == expected_paths and written.metric == "cosine"
    assert written.features.dtype == np.float32 and written.features.shape == (
        len(expected_paths),
        512,
    )
    reference = FeatureExtractor.from_run(tiny_run)(expected_paths).numpy()
    np.testing.assert_allclose(written.features, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(written.features[-1], written.features[0], atol=1e-6)  # same image

    printed = capsys.readouterr().out
    assert (
        f"Wrote {out}: {len(expected_paths)} features of dimension 512 (cosine, L2-normalised)"
        in printed
    )
    assert f"of {len(expected_paths) + 1} images in" in printed
    assert "1 image(s) could not be read and were skipped:" in printed
    assert f"  {extra / 'deeper' / 'broken.jpg'}: OSError: cannot read image" in printed

    # A glob of the good images only: status 0; the overrides reach the config.
    out2 = str(tmp_path / "euclid.npz")
    pattern = os.path.join(query, "*.jpg")
    assert (
        extract.main(
            [
                "--config-file",
                tiny_run,
                "--input",
                pattern,
                "--output",
                out2,
                "--no-progress",
                "TEST.METRIC",
                "euclidean",
            ]
        )
        == 0
    )
    euclid = load_features(out2)
    assert euclid.metric == "euclidean" and euclid.paths == expected_paths[:-1]
    norms = np.linalg.norm(euclid.features, axis=1, keepdims=True)
    np.testing.assert_allclose(euclid.features / norms, written.features[:-1], atol=1e-5)


def test_extract_refuses_bad_arguments_before_any_work(extract, tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        extract.main(["--config-file", tiny_run, "--input", str(tmp_path), "--output", "f.npy"])
    assert e.value.code == 2
    assert "--output must end in .npz, got f.npy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract.main(
            ["--config-file", tiny_run, "--input", str(tmp_path / "x"), "--output", "f.npz"]
        )
    assert "input not found: " in capsys.readouterr().err
    assert not os.path.exists("f.npz")


def _reference_matches(query_feats, gallery_feats, gallery_paths, k, metric="cosine"):
    dist = compute_distmat(torch.from_numpy(query_feats), torch.from_numpy(gallery_feats), metric)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return [
        [(gallery_paths[int(i)], float(dist[q, i])) for i in order[q]] for q in range(len(order))
    ]


def test_search_images_table_json_saved_index_and_faiss(
    search, extract, tiny_run, tmp_path, capsys, faiss_module
):
    gallery_dir = _split(tiny_run, "bounding_box_test")
    query_dir = _split(tiny_run, "query")
    queries = sorted(glob.glob(os.path.join(query_dir, "*.jpg")))[:3]
    index = str(tmp_path / "gallery.npz")
    out = str(tmp_path / "matches.json")
    argv = ["--config-file", tiny_run, "--gallery", gallery_dir, "--query", *queries, "--k", "4"]
    assert search.main([*argv, "--output", out, "--save-index", index, "--no-progress"]) == 0

    extractor = FeatureExtractor.from_run(tiny_run)
    gallery_paths = sorted(glob.glob(os.path.join(gallery_dir, "*.jpg")))
    gallery = extractor(gallery_paths).numpy()
    expected = _reference_matches(extractor(queries).numpy(), gallery, gallery_paths, 4)
    result = json.load(open(out))
    assert result["metric"] == "cosine" and result["backend"] == "torch" and result["k"] == 4
    assert result["gallery_size"] == len(gallery_paths)
    assert [r["query"] for r in result["queries"]] == queries
    for entry, ref in zip(result["queries"], expected):
        assert [m["rank"] for m in entry["matches"]] == [1, 2, 3, 4]
        assert [m["path"] for m in entry["matches"]] == [p for p, _ in ref]
        assert [m["distance"] for m in entry["matches"]] == pytest.approx(
            [d for _, d in ref], abs=1e-5
        )
    printed = capsys.readouterr().out
    assert f"Gallery: {len(gallery_paths)} images, 512-d cosine features (torch, CPU)" in printed
    assert f"Saved the index to {index}" in printed
    first = result["queries"][0]["matches"][0]
    assert f"query {queries[0]}" in printed
    assert f"     1  {first['distance']:>18.6f}  {first['path']}" in printed

    # Reopen the saved index with faiss, queried with a feature file from extract_features.
    saved = load_features(index)
    assert saved.paths == gallery_paths
    np.testing.assert_allclose(saved.features, gallery, atol=1e-6)
    qfile = str(tmp_path / "query.npz")
    assert (
        extract.main(
            ["--config-file", tiny_run, "--input", *queries, "--output", qfile, "--no-progress"]
        )
        == 0
    )
    out2 = str(tmp_path / "faiss.json")
    assert (
        search.main(
            [
                "--gallery",
                index,
                "--query",
                qfile,
                "--k",
                "4",
                "--backend",
                "faiss",
                "--output",
                out2,
            ]
        )
        == 0
    )
    again = json.load(open(out2))
    assert again["backend"] == "faiss"
    for a, b in zip(again["queries"], result["queries"]):
        assert [m["path"] for m in a["matches"]] == [m["path"] for m in b["matches"]]
        assert [m["distance"] for m in a["matches"]] == pytest.approx(
            [m["distance"] for m in b["matches"]], abs=1e-5
        )


def test_search_errors_are_messages(search, extract, tiny_run, tmp_path, capsys):
    query_dir = _split(tiny_run, "query")
    queries = sorted(glob.glob(os.path.join(query_dir, "*.jpg")))[:2]
    cos, euc = str(tmp_path / "cos.npz"), str(tmp_path / "euc.npz")
    base = ["--config-file", tiny_run, "--input", *queries, "--no-progress"]
    assert extract.main([*base, "--output", cos]) == 0
    assert extract.main([*base, "--output", euc, "TEST.METRIC", "euclidean"]) == 0
    capsys.readouterr()

    assert search.main(["--gallery", cos, "--query", euc]) == 2
    assert (
        "the queries' features are for the euclidean metric, the gallery's for cosine"
        in capsys.readouterr().err
    )
    assert search.main(["--gallery", cos, "--query", *queries]) == 2
    assert "images given: --config-file must name the model to use" in capsys.readouterr().err
    assert search.main(["--gallery", cos, queries[0], "--query", cos]) == 2
    assert "give either one .npz feature file or images" in capsys.readouterr().err
    assert search.main(["--gallery", cos, "--query", cos, "--k", "3"]) == 2
    assert "k must lie in [1, 2] (the gallery size), got 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search.main(["--gallery", cos])
    assert "nothing to do: give --query, --save-index or both" in capsys.readouterr().err


def test_extract_names_missing_weights_and_unknown_keys(extract, tiny_run, tmp_path, capsys):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    Image.new("RGB", (16, 32)).save(image_dir / "a.jpg")
    config = os.path.join(tiny_run, "config.yaml")
    base = ["--input", str(image_dir), "--output", str(tmp_path / "f.npz"), "--no-progress"]
    weights = str(tmp_path / "none.pth")
    assert extract.main(["--config-file", config, *base, "MODEL.WEIGHTS", weights]) == 2
    assert f"error: checkpoint not found: {weights}" in capsys.readouterr().err
    assert extract.main(["--config-file", config, *base, "TEST.METRIK", "cosine"]) == 2
    assert (
        "unknown config key 'TEST.METRIK'; did you mean 'TEST.METRIC'?" in capsys.readouterr().err
    )
    assert not os.path.exists(tmp_path / "f.npz")
