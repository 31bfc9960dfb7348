import dataclasses
import json
import os
import re
import warnings
from collections import defaultdict

import cv2
import numpy as np
import pytest

from reid.data.datasets import build_dataset, build_train_records
from reid.data.datasets import synthetic as synthetic_module
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError
from reid.data.datasets.synthetic import MARKER, Person, Synthetic, SyntheticSpec, ensure_synthetic, random_person

SPEC = SyntheticSpec(seed=3, num_train_ids=6, num_test_ids=5, imgs_per_id=5, num_cameras=4, height=32, width=16,
                     num_distractors=3, num_junk=2)
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


def files(folder):
    return {sub: sorted(os.listdir(os.path.join(folder, sub))) for sub in ("bounding_box_train", "query", "bounding_box_test")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return ensure_synthetic(SPEC, str(tmp_path_factory.mktemp("syn") / "synthetic"))


def test_market_layout_names_and_counts(generated):
    listing = files(generated)
    names = [n for sub in listing.values() for n in sub]
    assert all(MARKET_NAME.match(n) for n in names), [n for n in names if not MARKET_NAME.match(n)]
    assert len(set(names)) == len(names)
    gallery = listing["bounding_box_test"]
    assert sum(n.startswith("-1_") for n in gallery) == SPEC.num_junk
    assert sum(n.startswith("0000_") for n in gallery) == SPEC.num_distractors
    assert len(listing["bounding_box_train"]) == SPEC.num_train_ids * SPEC.imgs_per_id
    assert len(listing["query"]) == 2 * SPEC.num_test_ids
    assert len(gallery) == SPEC.num_test_ids * (SPEC.imgs_per_id - 2) + SPEC.num_distractors + SPEC.num_junk
    assert {int(MARKET_NAME.match(n).group(2)) for n in names} <= set(range(1, SPEC.num_cameras + 1))
    image = cv2.imread(os.path.join(generated, "query", listing["query"][0]))
    assert image.shape == (SPEC.height, SPEC.width, 3)
    with open(os.path.join(generated, MARKER)) as f:
        assert json.load(f) == SPEC.params()


def test_reader_counts_match_spec_without_warnings(generated):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetCountWarning)
        ds = Synthetic(generated, SPEC)
    counts = {split: (len({r.pid for r in recs}), len(recs)) for split, recs in ds.splits().items()}
    assert counts == SPEC.counts() == {"train": (6, 30), "query": (5, 10), "gallery": (6, 18)}
    assert ds.name == "Synthetic" and {r.dataset for r in ds.train} == {"Synthetic"}


def test_identity_structure(generated):
    ds = Synthetic(generated, SPEC)
    train_ids, test_ids = {r.pid for r in ds.train}, {r.pid for r in ds.query}
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(1, SPEC.num_train_ids + SPEC.num_test_ids + 1))
    cams = defaultdict(list)
    for r in ds.train + ds.query + ds.gallery:
        if r.pid:
            cams[r.pid].append(r.camid)
    for pid, cs in cams.items():
        per_camera = {c: cs.count(c) for c in set(cs)}
        assert len(per_camera) >= 2 and min(per_camera.values()) >= 2, (pid, per_camera)
    for pid in test_ids:
        q = [r.camid for r in ds.query if r.pid == pid]
        assert len(q) == 2 and q[0] != q[1]
        for camid in q:  # every query has a match from another camera in the gallery
            assert any(g.pid == pid and g.camid != camid for g in ds.gallery)


def test_deterministic_and_seed_dependent(generated, tmp_path):
    again = ensure_synthetic(SPEC, str(tmp_path / "a"))
    assert files(again) == files(generated)
    for sub, names in files(generated).items():
        for n in names:
            with open(os.path.join(generated, sub, n), "rb") as f1, open(os.path.join(again, sub, n), "rb") as f2:
                assert f1.read() == f2.read(), n
    other = ensure_synthetic(dataclasses.replace(SPEC, seed=4), str(tmp_path / "a"))
    assert other != again and os.path.isdir(again)  # a changed config gets its own folder
    assert files(other) != files(again)


def test_second_use_reuses_the_folder(generated, monkeypatch):
    def fail(*args):
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(synthetic_module, "generate", fail)
    assert ensure_synthetic(SPEC, os.path.dirname(generated)) == generated


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def crash(spec, out_dir):
        open(os.path.join(out_dir, "partial"), "w").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_module, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(SPEC, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_concurrent_generation_keeps_one_copy(tmp_path, monkeypatch):
    real = synthetic_module.generate
    final = os.path.join(str(tmp_path), SPEC.folder_name())

    def racing(spec, out_dir):  # another process completes the same folder while we generate
        os.makedirs(final)
        real(spec, final)
        with open(os.path.join(final, MARKER), "w") as f:
            json.dump(spec.params(), f)
        real(spec, out_dir)

    monkeypatch.setattr(synthetic_module, "generate", racing)
    assert ensure_synthetic(SPEC, str(tmp_path)) == final
    assert os.listdir(tmp_path) == [SPEC.folder_name()]


def test_folder_with_wrong_marker_is_an_error(tmp_path):
    os.makedirs(tmp_path / SPEC.folder_name())
    with pytest.raises(DatasetFormatError, match=r"exists but its marker synthetic\.json is missing or does not match.*delete the folder"):
        ensure_synthetic(SPEC, str(tmp_path))


def test_built_from_config_under_the_root(tmp_path, cfg_for):
    cfg = cfg_for(DATASETS__NAMES=["Synthetic"], DATASETS__SYNTHETIC__SEED=3, DATASETS__SYNTHETIC__NUM_TRAIN_IDS=6,
                  DATASETS__SYNTHETIC__NUM_TEST_IDS=5, DATASETS__SYNTHETIC__IMGS_PER_ID=5, DATASETS__SYNTHETIC__NUM_CAMERAS=4,
                  DATASETS__SYNTHETIC__IMAGE_SIZE=[32, 16], DATASETS__SYNTHETIC__NUM_DISTRACTORS=3, DATASETS__SYNTHETIC__NUM_JUNK=2)
    assert SyntheticSpec.from_config(cfg) == SPEC
    ds = build_dataset("Synthetic", cfg)
    assert ds.dataset_dir == os.path.join(str(tmp_path), "synthetic", SPEC.folder_name())
    records, num_classes = build_train_records(cfg)
    assert num_classes == 6 and sorted({r.pid for r in records}) == list(range(6))


def test_defaults_match_the_spec_defaults(cfg_for):
    spec = SyntheticSpec.from_config(cfg_for())
    assert spec == SyntheticSpec()
    assert (spec.num_train_ids, spec.num_test_ids, spec.imgs_per_id, spec.height, spec.width) == (150, 150, 10, 128, 64)


@pytest.mark.parametrize("field, value, message", [
    ("imgs_per_id", 3, r"DATASETS.SYNTHETIC.IMGS_PER_ID must be >= 4, got 3"),
    ("num_cameras", 10, r"DATASETS.SYNTHETIC.NUM_CAMERAS must be in 2\.\.9"),
    ("num_test_ids", 0, r"DATASETS.SYNTHETIC.NUM_TEST_IDS must be >= 1, got 0"),
    ("num_train_ids", 9995, r"NUM_TRAIN_IDS \+ NUM_TEST_IDS must be <= 9999"),
])
def test_invalid_spec(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SPEC, **{field: value})


def test_no_single_attribute_identifies_a_person():
    rng = np.random.default_rng(0)
    people = [random_person(rng) for _ in range(150)]
    assert len(set(people)) == 150  # the combinations are distinct ...
    for field in dataclasses.fields(Person):  # ... while every value of every attribute is shared
        values = [getattr(p, field.name) for p in people]
        counts = {v: values.count(v) for v in set(values)}
        assert len(counts) >= 2 and min(counts.values()) >= 5, (field.name, counts)
