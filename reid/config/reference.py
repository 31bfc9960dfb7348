"""The config key reference: every declared key with its default and meaning, as Markdown.

``tools/config_keys.py`` writes it to ``docs/CONFIG.md``; a test keeps that file current.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import get_cfg
from .schema import SCHEMA, ConfigBlock, Key, Schema

HEADER = """# Config keys

Every key `reid` understands, with its default, its meaning and the module that declares (and
reads) it, by section. Generated from the code by `python tools/config_keys.py --output
docs/CONFIG.md`; do not edit by hand. A component from outside the package declares its own keys
when it is imported (`python tools/config_keys.py --import my_module` lists them too).
"""


SECTION_ORDER = ("", "MODEL", "INPUT", "DATASETS", "DATALOADER", "SOLVER", "TEST")


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section_of(key: str) -> str:
    return key.split(".", 1)[0] if "." in key else ""


def _section_order(section: str) -> tuple[int, str]:
    known = section in SECTION_ORDER
    return (SECTION_ORDER.index(section) if known else len(SECTION_ORDER), section)


def _section(title: str, rows: list[tuple[str, Key, ConfigBlock]]) -> list[str]:
    lines = [f"## {title}", "", "| key | default | meaning | declared in |", "|---|---|---|---|"]
    for full, key, block in rows:
        default = _escape(repr(key.default))
        lines.append(f"| `{full}` | `{default}` | {_escape(key.doc)} | `{block.owner}` |")
    lines.append("")
    return lines


def _declared_in(block: ConfigBlock, packages: Sequence[str]) -> bool:
    return any(block.owner == p or block.owner.startswith(p + ".") for p in packages)


def render_reference(schema: Schema | None = None, packages: Sequence[str] = ("reid",)) -> str:
    """The Markdown reference of the blocks of ``schema`` declared in ``packages``.

    Args:
        schema: Default: reid's full schema.
        packages: Modules or packages whose blocks are listed (out-of-tree components add their
            own module to document their keys).
    """
    if schema is None:
        get_cfg()  # imports reid's components, so every block is declared
        schema = SCHEMA
    sections: dict[str, list[tuple[str, Key, ConfigBlock]]] = {}
    for full, key, block in schema.documented_keys():
        if _declared_in(block, packages):
            sections.setdefault(_section_of(full), []).append((full, key, block))
    lines = HEADER.splitlines() + [""]
    for section in sorted(sections, key=_section_order):
        lines += _section(f"`{section}`" if section else "Top level", sections[section])
    return "\n".join(lines).rstrip() + "\n"
