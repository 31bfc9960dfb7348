"""The key reference: generated from the blocks, complete, and committed up to date."""

import os

from reid.config import ConfigBlock, Key, get_cfg
from reid.config.reference import render_reference
from reid.config.schema import SCHEMA, Schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _leaf_keys(node, prefix=""):
    for name, value in node.items():
        if isinstance(value, type(node)):
            yield from _leaf_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_key_of_the_schema_is_documented_once():
    text = render_reference()
    for key in _leaf_keys(get_cfg()):
        owner = SCHEMA.owner_of(key)
        if owner is not None and owner.owner.startswith("reid"):
            assert text.count(f"| `{key}` |") == 1, key


def test_a_block_renders_as_a_table_with_its_owner():
    schema = Schema()
    block = ConfigBlock("A.B", "A test block.", {"X": Key([1, 2], "Items | piped.")})
    schema.declare(block, owner="reid.test_module")
    text = render_reference(schema)
    assert "## `A`\n\n| key | default | meaning | declared in |" in text
    assert "| `A.B.X` | `[1, 2]` | Items \\| piped. | `reid.test_module` |" in text


def test_the_committed_reference_is_current():
    with open(os.path.join(ROOT, "docs", "CONFIG.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == render_reference(), (
        "docs/CONFIG.md is stale: run python tools/config_keys.py --output docs/CONFIG.md"
    )
