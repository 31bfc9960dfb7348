import logging
import warnings

from reid.utils.logger import setup_logger


def test_log_file_gets_reid_messages_and_python_warnings(tmp_path):
    logger = setup_logger(str(tmp_path), distributed_rank=0)
    logging.getLogger("reid.data.datasets.build").info("child message")
    warnings.warn("counts differ from the official ones", UserWarning, stacklevel=1)
    # A second call replaces, not duplicates, handlers.
    setup_logger(str(tmp_path), distributed_rank=0)
    logger.info("after reset")
    text = (tmp_path / "log.txt").read_text()
    assert "child message" in text and "counts differ from the official ones" in text
    assert text.count("after reset") == 1
    logging.captureWarnings(False)


def test_other_ranks_log_to_their_own_file(tmp_path):
    logger = setup_logger(str(tmp_path), distributed_rank=1)
    logger.info("rank one")
    assert "rank one" in (tmp_path / "log.txt.rank1").read_text()
    assert not (tmp_path / "log.txt").exists()
    logging.captureWarnings(False)
