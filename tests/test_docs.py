"""The docs match the tree: docs/layout.md names every module in the layer order test_layout enforces,
and every relative link in the README and docs/ lands on a file and heading that exist."""

import re
from pathlib import Path

from test_layout import LAYERS, PACKAGE, SOURCES

ROOT = PACKAGE.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def layout_rows():
    """(layer, module path) of each row of the module table in docs/layout.md."""
    rows = []
    for line in (ROOT / "docs" / "layout.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"\d+(\.\d+)?|—", cells[0]) and cells[1].startswith("`"):
            rows.append((cells[0], cells[1].split("`")[1]))
    return rows


def test_layout_table_names_every_module_in_layer_order():
    rows = layout_rows()
    named = [path for _, path in rows]
    for source in SOURCES:
        path = source.relative_to(PACKAGE).as_posix()
        assert path in named, f"docs/layout.md does not name oss_fast/{path}"
    for path in named:
        assert path == "csrc/" or (PACKAGE / path).is_file(), f"docs/layout.md names oss_fast/{path}, which does not exist"
    for layer, path in rows:
        unit = path.split("/")[0].removesuffix(".py")
        if unit == "csrc":
            unit = "_C"
        if unit == "reference":
            assert layer == "—", "reference.py has no layer: it imports nothing of ours"
            continue
        assert float(layer) == LAYERS[unit], f"docs/layout.md puts {path} in layer {layer}, test_layout in {LAYERS[unit]}"
    layers = [float(layer) for layer, _ in rows if layer != "—"]
    assert layers == sorted(layers, reverse=True), "docs/layout.md's rows are not top to bottom"


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub makes for a markdown page."""
    made, seen = set(), {}
    for line in page.read_text().splitlines():
        heading = re.match(r"#+ (.*)", line)
        if heading:
            anchor = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            made.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
            seen[anchor] = seen.get(anchor, 0) + 1
    return made


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert not broken, broken


def test_every_docs_page_says_what_it_covers_and_links_back():
    for page in PAGES[1:]:
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# ") and "](../README.md" in lines[2], page.name
