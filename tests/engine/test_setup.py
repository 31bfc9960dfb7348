"""Setting up a run's output folder: a file in the way, the lock, stale temporary files, the
--eval-only folder, and the command line's flags."""

import os

import pytest

from reid.config import ConfigError, load_config
from reid.engine import default_argument_parser, default_setup
from reid.engine.defaults import eval_only_output_dir
from reid.utils.run_lock import LOCK_FILE, held_output_dirs, release_output_dir


def _cfg(output_dir, *opts):
    return load_config(None, ["OUTPUT_DIR", str(output_dir), "MODEL.DEVICE", "cpu", *opts])


def test_an_output_dir_that_is_a_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "logs"
    path.write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        default_setup(_cfg(path))
    assert str(info.value) == (
        f"OUTPUT_DIR {path} is a file, not a folder: choose another OUTPUT_DIR (or move the "
        f"file away)"
    )
    with pytest.raises(ConfigError, match=r"OUTPUT_DIR .*logs/run cannot be created \(Not a dir"):
        default_setup(_cfg(path / "run"))


def test_setup_takes_the_lock_and_removes_stale_temporary_files(tmp_path):
    out = tmp_path / "run"
    (out / "inference").mkdir(parents=True)
    stale = [out / ".model_0003.pth.ab12cd34.tmp", out / "inference" / ".Market.json.zz99yy88.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    (out / "model_0002.pth").write_bytes(b"kept")
    try:
        cfg = default_setup(_cfg(out))
        assert str(out) in held_output_dirs()
        assert (out / LOCK_FILE).is_file()
    finally:
        release_output_dir(str(out), force=True)
    assert not any(path.exists() for path in stale)
    assert (out / "model_0002.pth").read_bytes() == b"kept"
    log = (out / "log.txt").read_text()
    assert f"Removed {stale[0]} (0.0 MB), a partial file left by an interrupted write" in log
    assert (out / "config.yaml").is_file() and cfg.OUTPUT_DIR == str(out)


def test_eval_only_writes_into_a_subfolder_named_after_the_weights(tmp_path):
    cfg = _cfg(tmp_path / "run", "MODEL.WEIGHTS", str(tmp_path / "run" / "model_best.pth"))
    assert eval_only_output_dir(cfg) == str(tmp_path / "run" / "eval" / "model_best")


def test_resume_and_start_over_exclude_each_other(capsys):
    parser = default_argument_parser()
    args = parser.parse_args(["--start-over", "--debug", "--dist-timeout", "20"])
    assert (args.start_over, args.resume, args.debug, args.dist_timeout) == (True, False, True, 20)
    with pytest.raises(SystemExit):
        parser.parse_args(["--resume", "--start-over"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_output_dir_lock_is_released_by_release(tmp_path):
    out = tmp_path / "run"
    default_setup(_cfg(out))
    release_output_dir(str(out))
    assert not os.path.exists(out / LOCK_FILE)
