import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from yacs.config import CfgNode

from reid.data.datasets import build_dataset, build_train_records
from reid.data.datasets import synthetic as synthetic_module
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.synthetic import (
    ACCESSORIES,
    BOTTOM_TYPES,
    HAIR_STYLES,
    MARKER,
    PATTERNS,
    VIEWS,
    Person,
    Synthetic,
    SyntheticSpec,
    draw_person,
    ensure_synthetic,
    random_person,
)

SPEC = SyntheticSpec(
    seed=3,
    num_train_ids=6,
    num_test_ids=5,
    imgs_per_id=5,
    num_cameras=4,
    height=32,
    width=16,
    num_distractors=3,
    num_junk=2,
)
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


def _market_name(name: str) -> re.Match[str]:
    m = MARKET_NAME.match(name)
    assert m is not None, name
    return m


def files(folder: str) -> dict[str, list[str]]:
    return {
        sub: sorted(os.listdir(os.path.join(folder, sub)))
        for sub in ("bounding_box_train", "query", "bounding_box_test")
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    return ensure_synthetic(SPEC, str(tmp_path_factory.mktemp("syn") / "synthetic"))


def test_market_layout_names_and_counts(generated: str) -> None:
    listing = files(generated)
    names = [n for sub in listing.values() for n in sub]
    assert all(MARKET_NAME.match(n) for n in names), [n for n in names if not MARKET_NAME.match(n)]
    assert len(set(names)) == len(names)
    gallery = listing["bounding_box_test"]
    assert sum(n.startswith("-1_") for n in gallery) == SPEC.num_junk
    assert sum(n.startswith("0000_") for n in gallery) == SPEC.num_distractors
    assert len(listing["bounding_box_train"]) == SPEC.num_train_ids * SPEC.imgs_per_id
    assert len(listing["query"]) == 2 * SPEC.num_test_ids
    assert (
        len(gallery)
        == SPEC.num_test_ids * (SPEC.imgs_per_id - 2) + SPEC.num_distractors + SPEC.num_junk
    )
    assert {int(_market_name(n).group(2)) for n in names} <= set(range(1, SPEC.num_cameras + 1))
    image = cv2.imread(os.path.join(generated, "query", listing["query"][0]))
    assert image is not None
    assert image.shape == (SPEC.height, SPEC.width, 3)
    with open(os.path.join(generated, MARKER)) as f:
        assert json.load(f) == SPEC.params()


def test_reader_counts_match_spec_without_warnings(generated: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetCountWarning)
        ds = Synthetic(generated, SPEC)
    counts = {split: (len({r.pid for r in recs}), len(recs)) for split, recs in ds.splits().items()}
    assert counts == SPEC.counts() == {"train": (6, 30), "query": (5, 10), "gallery": (6, 18)}
    assert ds.name == "Synthetic" and {r.dataset for r in ds.train} == {"Synthetic"}


def test_identity_structure(generated: str) -> None:
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


def test_deterministic_and_seed_dependent(generated: str, tmp_path: Path) -> None:
    again = ensure_synthetic(SPEC, str(tmp_path / "a"))
    assert files(again) == files(generated)
    for sub, names in files(generated).items():
        for n in names:
            with (
                open(os.path.join(generated, sub, n), "rb") as f1,
                open(os.path.join(again, sub, n), "rb") as f2,
            ):
                assert f1.read() == f2.read(), n
    other = ensure_synthetic(dataclasses.replace(SPEC, seed=4), str(tmp_path / "a"))
    assert other != again and os.path.isdir(again)  # a changed config gets its own folder
    assert files(other) != files(again)


def test_second_use_reuses_the_folder(generated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(synthetic_module, "generate", fail)
    assert ensure_synthetic(SPEC, os.path.dirname(generated)) == generated


def test_interrupted_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(spec: SyntheticSpec, out_dir: str) -> None:
        open(os.path.join(out_dir, "partial"), "w").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_module, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(SPEC, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_concurrent_generation_keeps_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic_module.generate
    final = os.path.join(str(tmp_path), SPEC.folder_name())

    # another process completes the same folder while we generate
    def racing(spec: SyntheticSpec, out_dir: str) -> None:
        os.makedirs(final)
        real(spec, final)
        with open(os.path.join(final, MARKER), "w") as f:
            json.dump(spec.params(), f)
        real(spec, out_dir)

    monkeypatch.setattr(synthetic_module, "generate", racing)
    assert ensure_synthetic(SPEC, str(tmp_path)) == final
    assert os.listdir(tmp_path) == [SPEC.folder_name()]


def test_folder_with_wrong_marker_is_an_error(tmp_path: Path) -> None:
    os.makedirs(tmp_path / SPEC.folder_name())
    with pytest.raises(
        DatasetFormatError,
        match=r"exists but its marker synthetic\.json is missing or does not match"
        r".*delete the folder",
    ):
        ensure_synthetic(SPEC, str(tmp_path))


def test_built_from_config_under_the_root(tmp_path: Path, cfg_for: Callable[..., CfgNode]) -> None:
    cfg = cfg_for(
        DATASETS__NAMES=["Synthetic"],
        DATASETS__SYNTHETIC__SEED=3,
        DATASETS__SYNTHETIC__NUM_TRAIN_IDS=6,
        DATASETS__SYNTHETIC__NUM_TEST_IDS=5,
        DATASETS__SYNTHETIC__IMGS_PER_ID=5,
        DATASETS__SYNTHETIC__NUM_CAMERAS=4,
        DATASETS__SYNTHETIC__IMAGE_SIZE=[32, 16],
        DATASETS__SYNTHETIC__NUM_DISTRACTORS=3,
        DATASETS__SYNTHETIC__NUM_JUNK=2,
    )
    assert SyntheticSpec.from_config(cfg) == SPEC
    ds = build_dataset("Synthetic", cfg)
    assert ds.dataset_dir == os.path.join(str(tmp_path), "synthetic", SPEC.folder_name())
    records, num_classes = build_train_records(cfg)
    assert num_classes == 6 and sorted({r.pid for r in records}) == list(range(6))


def test_defaults_match_the_spec_defaults(cfg_for: Callable[..., CfgNode]) -> None:
    spec = SyntheticSpec.from_config(cfg_for())
    assert spec == SyntheticSpec()
    assert (spec.num_train_ids, spec.num_test_ids, spec.imgs_per_id, spec.height, spec.width) == (
        150,
        150,
        10,
        128,
        64,
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("imgs_per_id", 3, r"DATASETS.SYNTHETIC.IMGS_PER_ID must be >= 4, got 3"),
        ("num_cameras", 10, r"DATASETS.SYNTHETIC.NUM_CAMERAS must be in 2\.\.9"),
        ("num_test_ids", 0, r"DATASETS.SYNTHETIC.NUM_TEST_IDS must be >= 1, got 0"),
        ("num_train_ids", 9995, r"NUM_TRAIN_IDS \+ NUM_TEST_IDS must be <= 9999"),
    ],
)
def test_invalid_spec(field: str, value: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SPEC, **{field: value})


def test_no_single_attribute_identifies_a_person() -> None:
    rng = np.random.default_rng(0)
    people = [random_person(rng) for _ in range(150)]
    assert len(set(people)) == 150  # the combinations are distinct ...
    for field in dataclasses.fields(Person):  # ... while every value of every attribute is shared
        values = [getattr(p, field.name) for p in people]
        counts = {v: values.count(v) for v in set(values)}
        assert len(counts) >= 2 and min(counts.values()) >= 5, (field.name, counts)


# The generator's output pinned byte for byte (same seed -> same images). The digests hold for the
# OpenCV release named here (its JPEG encoder and anti-aliased drawing fix the bytes); with another
# release the test is skipped rather than compared against digests it cannot reproduce.
PINNED_OPENCV = "5.0.0"
FILES_SHA256 = "81b0730d1adffa612d7ac3a98dfff5098403823bb227a7431c55cb1f36e966f8"
DRAW_SHA256 = "e0aad87da8d67d199de1f8fbd4b46514062737ed53cba126d0d8d859840f6fe4"


def _pinned_opencv() -> None:
    if cv2.__version__ != PINNED_OPENCV:
        pytest.skip(f"digests pinned with OpenCV {PINNED_OPENCV}, running {cv2.__version__}")


def test_generated_files_are_byte_identical(generated: str) -> None:
    _pinned_opencv()
    digest = hashlib.sha256()
    for sub, names in files(generated).items():
        for n in names:
            digest.update(f"{sub}/{n}\n".encode())
            with open(os.path.join(generated, sub, n), "rb") as f:
                digest.update(f.read())
    assert digest.hexdigest() == FILES_SHA256


def test_every_drawn_variant_is_pixel_identical() -> None:
    """draw_person over every view x accessory x hair x bottom x pattern x sleeves x bag side."""
    _pinned_opencv()
    base = random_person(np.random.default_rng(0))
    digest = hashlib.sha256()
    variants = itertools.product(
        VIEWS,
        range(len(ACCESSORIES)),
        range(len(HAIR_STYLES)),
        range(len(BOTTOM_TYPES)),
        range(len(PATTERNS)),
        (False, True),
        (1, -1),
    )
    for i, (view, accessory, hair, bottom, pattern, sleeves, bag_side) in enumerate(variants):
        person = dataclasses.replace(
            base,
            accessory=accessory,
            hair_style=hair,
            bottom_type=bottom,
            pattern=pattern,
            long_sleeves=sleeves,
            bag_side=bag_side,
        )
        canvas = np.full((64, 32, 3), 0.5, np.float32)
        rng = np.random.default_rng(i)
        draw_person(canvas, person, view, 16.3, 62.0, 55.0, 0.4, rng)
        digest.update(canvas.tobytes())
        digest.update(rng.integers(1 << 30, size=1).tobytes())  # the draws it consumed
    assert digest.hexdigest() == DRAW_SHA256


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_the_generated_folder_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        folder = ensure_synthetic(SPEC, str(tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(folder).st_mode) == mode  # mkdtemp alone gives 0700


def _build_as_nobody(parent: str) -> str:
    """ensure_synthetic(SPEC, parent) in a forked child running as user nobody; its error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        message = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            ensure_synthetic(SPEC, parent)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            message = f"{type(e).__name__}: {e}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder that other users may enter (pytest's own are private)."""
    folder = Path(tempfile.mkdtemp())
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_folder_of_another_user_is_not_called_corrupt(shared_tmp: Path) -> None:
    parent = shared_tmp / "synthetic"
    parent.mkdir(mode=0o755)
    old = os.umask(0o077)  # as a user with a private umask generates it
    try:
        folder = ensure_synthetic(SPEC, str(parent))
    finally:
        os.umask(old)
    if os.geteuid() == 0:
        # Root reads everything: the other user is nobody, who may enter the folders above.
        for path in (shared_tmp, *shared_tmp.parents):
            if stat.S_IMODE(path.stat().st_mode) & 0o005 != 0o005:
                pytest.skip(f"{path} is not open to other users")
        message = _build_as_nobody(str(parent))
        owner = "root (uid 0)"
    else:
        os.chmod(folder, 0o000)
        try:
            with pytest.raises(DatasetNotFoundError) as info:
                ensure_synthetic(SPEC, str(parent))
        finally:
            os.chmod(folder, 0o700)
        message = f"DatasetNotFoundError: {info.value}"
        owner = _owner_of(folder)
    assert message == (
        f"DatasetNotFoundError: Synthetic: {folder} exists but you cannot read it (owner {owner}, "
        f"permissions d{'rwx' if os.geteuid() == 0 else '---'}------): ask {owner} to make it "
        f"readable (chmod -R a+rX {folder}), or set DATASETS.ROOT to a folder of your own"
    )


def _owner_of(path: str) -> str:
    import pwd

    uid = os.stat(path).st_uid
    return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"


def test_a_synthetic_root_of_another_user_is_named(shared_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    parent = shared_tmp / "synthetic"
    parent.mkdir(mode=0o700)  # created by a user with a private umask
    assert _build_as_nobody(str(parent)) == (
        f"DatasetNotFoundError: Synthetic: {parent} exists but you cannot read it (owner root "
        f"(uid 0), permissions drwx------): ask root (uid 0) to make it readable (chmod -R a+rX "
        f"{parent}), or set DATASETS.ROOT to a folder of your own"
    )
    os.chmod(parent, 0o755)  # readable, but not writable by others: nothing to generate into
    folder = parent / SPEC.folder_name()
    assert _build_as_nobody(str(parent)) == (
        f"DatasetNotFoundError: Synthetic: {folder} is not generated yet and you cannot write "
        f"into {parent} (owner root (uid 0), permissions drwxr-xr-x): set DATASETS.ROOT to a "
        f"folder of your own, or ask root (uid 0) to generate it"
    )
