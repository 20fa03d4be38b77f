"""The README is a short tour written by hand (English and Korean); the manual lives in docs/*.md.

These tests keep the tour short and honest: it opens with the two set-up commands, every link resolves,
its example recipe loads, and every CLI command is documented somewhere.
"""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_KO = ROOT / "README.ko.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def setup_commands(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines[:8] if line.startswith("make ")]


def relative_links(path: Path) -> list[str]:
    """Targets of the markdown links and images of a file that point inside the repository."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # not code blocks
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_opens_with_the_two_setup_commands():
    assert setup_commands(README) == ["make demo", "make test"]


def test_readme_is_a_tour_not_a_manual():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 160


def test_korean_readme_opens_with_the_same_commands_and_links_the_same_pages():
    assert README_KO.is_file()
    assert setup_commands(README_KO) == ["make demo", "make test"]
    assert len(README_KO.read_text(encoding="utf-8").splitlines()) <= 160

    def docs_pages(path: Path) -> set[str]:
        return {t.split("#")[0] for t in relative_links(path) if t.startswith("docs/")}

    assert docs_pages(README_KO) == docs_pages(README)
    assert "README.ko.md" in relative_links(README) and "README.md" in relative_links(README_KO)


@pytest.mark.parametrize("path", [README, README_KO, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path):
    missing = [
        target
        for target in relative_links(path)
        if not (path.parent / unquote(target.split("#")[0])).exists()
    ]
    assert missing == [], f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_the_docs_pages_exist_and_the_old_assembly_is_gone():
    names = {p.name for p in DOCS}
    for page in ("recipe", "cli", "curate", "train", "evaluate", "warehouse", "dashboard", "embeddings",
                 "demo-data", "benchmarks", "architecture", "development"):  # fmt: skip
        assert f"{page}.md" in names, page
    assert not (ROOT / "docs" / "readme").exists()
    assert not (ROOT / "docs" / "CONTRACTS.md").exists()


def test_the_screenshot_is_small():
    png = ROOT / "docs" / "img" / "predictions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size <= 300_000


@pytest.mark.parametrize("path", [README, README_KO], ids=lambda p: p.name)
def test_the_example_recipe_of_the_readme_loads(path: Path, tmp_path: Path):
    from tunelab.recipe import load_recipe

    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "the tour shows one example recipe"
    (tmp_path / "recipe.yaml").write_text(blocks[0], encoding="utf-8")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.train is not None and recipe.train.dpo is not None and recipe.evaluate is not None


def test_every_cli_command_is_documented():
    from typer.main import get_command

    from tunelab.cli import app

    text = "\n".join(p.read_text(encoding="utf-8") for p in [README, *DOCS])
    for name in get_command(app).commands:
        assert f"tunelab {name}" in text, name
