import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [line.split("#")[0].strip() for line in lines[:8] if line.startswith("make ")]
    assert commands == ["make demo", "make test"]


def test_readme_is_the_assembly_of_its_parts():
    """README.md is built by `make readme` from docs/readme/; an edit to only one of them is a mistake."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    parts = re.search(r"^README_PARTS := (.+)$", makefile, flags=re.M).group(1).split()
    expected = "".join(
        (ROOT / "docs" / "readme" / f"{part}.md").read_text(encoding="utf-8") + "\n" for part in parts
    )
    assert (ROOT / "README.md").read_text(encoding="utf-8") == expected, "run `make readme`"
    documented = {p.stem for p in (ROOT / "docs" / "readme").glob("*.md")}
    assert documented == set(parts), "every docs/readme part must be listed in README_PARTS"


def test_readme_mentions_every_cli_command():
    from typer.main import get_command

    from tunelab.cli import app

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in get_command(app).commands:
        assert f"tunelab {name}" in text, name
