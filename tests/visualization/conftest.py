"""Checks shared by the visualization tests: what an index.html refers to, what a folder holds."""

import os
from html.parser import HTMLParser
from urllib.parse import unquote, urlparse

import pytest


class References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self):
        super().__init__()
        self.links = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.links.append((tag, name, value))
            if name == "id":
                self.ids.add(value)


def _local_files(index_path):
    """The files index.html refers to (resolved paths), checking each reference on the way."""
    parser = References()
    parser.feed(open(index_path, encoding="utf-8").read())
    folder = os.path.dirname(index_path)
    files = set()
    for tag, name, value in parser.links:
        url = urlparse(value)
        assert not url.scheme and not url.netloc, f"not a relative link: {value}"
        if not url.path:
            assert unquote(url.fragment) in parser.ids, f"dangling anchor {value}"
            continue
        assert not value.startswith("/") and ".." not in value.split("/"), value
        path = os.path.join(folder, *unquote(url.path).split("/"))
        assert os.path.isfile(path), f"<{tag} {name}={value!r}> does not resolve"
        files.add(os.path.normpath(path))
    return files


def _written_files(folder):
    return {
        os.path.normpath(os.path.join(root, f)) for root, _, names in os.walk(folder) for f in names
    }


@pytest.fixture
def local_files():
    """``local_files(index_path)``: the files the page refers to; every reference must resolve."""
    return _local_files


@pytest.fixture
def written_files():
    """``written_files(folder)``: every file under ``folder``."""
    return _written_files
