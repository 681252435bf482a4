"""What ``mkdocs build --strict`` cannot see: the manual as the code and the README cite it.

MkDocs checks the links between the pages of ``docs/``. These tests check the
other direction, cheaply, by reading files: every ``docs/...`` path cited in the
code exists (a renamed page fails here, not in a reader's hands), no code cites
a README section by title, the README's relative links resolve, and every
environment variable ``config/settings.py`` reads is described on the
configuration page, the one full description of each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from config.settings import RENAMED_ENV

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION_PAGE = DOCS / "operations" / "configuration.md"
#: Where cited paths are looked for: every text file of ours, not the manual itself.
CITING_SUFFIXES = {".py", ".js", ".html", ".css", ".sh", ".toml", ".ini", ".txt", ".yml", ".cfg", ""}
SKIPPED_DIRS = {".git", ".venv", "site", "docs", "node_modules", "__pycache__", "vendor", "staticfiles", "var"}
#: ``docs/...`` not inside a longer path (``mkdocs/``, ``site-packages/docs/``), up to ``.md`` or a ``/``.
DOCS_PATH = re.compile(r"(?<![\w./-])docs/(?:[\w-]+/)*(?:[\w-]+\.md\b)?")
#: A variable read by config/settings.py: env("X"), env_float("X", ...), os.environ.get("X"), ...
SETTINGS_VARIABLE = re.compile(r"""(?:\benv(?:_bool|_int|_float|_list)?|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]*)\"""")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
#: A README section cited by its quoted title: the word README (or README's), maybe a comma,
#: then the title in quotes. The manual lives in docs/, so the code cites a page's path instead.
README_SECTION = re.compile(r"""README(?:'s)?,?\s+["'][A-Z]""")


def citing_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        if path.suffix in CITING_SUFFIXES and path.name != "README.md":
            yield path


def cited_docs_paths() -> dict[str, list[str]]:
    """Each ``docs/...`` path cited outside docs/, with where (``file:line``)."""
    cited: dict[str, list[str]] = {}
    for path in citing_files():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(lines, start=1):
            for match in DOCS_PATH.finditer(line):
                cited.setdefault(match.group(0), []).append(f"{path.relative_to(ROOT)}:{number}")
    return cited


def test_every_docs_path_cited_in_the_code_exists() -> None:
    cited = cited_docs_paths()
    assert len(cited) >= 10, f"the search found too few citations to be working: {sorted(cited)}"
    missing = {path: where for path, where in cited.items() if not (ROOT / path).exists()}
    assert not missing, "cited but not in docs/: " + "; ".join(f"{p} ({', '.join(w)})" for p, w in missing.items())


def test_no_code_cites_a_readme_section() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in citing_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if README_SECTION.search(line)
    ]
    assert not cited, f"cite the docs/ page instead of a README section: {cited}"


def test_the_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    relative = [
        target.split("#")[0] for target in MARKDOWN_LINK.findall(readme) if not re.match(r"[a-z]+:|#", target)
    ]
    assert len(relative) >= 10, relative
    missing = sorted({target for target in relative if not (ROOT / target).exists()})
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_setting_read_from_the_environment_is_described() -> None:
    source = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    variables = set(SETTINGS_VARIABLE.findall(source))
    assert {"DJANGO_DEBUG", "DATABASE_URL", "PROGRESS_RECHECK_SECONDS", "THROTTLE_LOGIN_RATE"} <= variables
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    rows = [row for row in page.splitlines() if row.startswith("|")]
    described = {name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row)}
    missing = sorted(variables - described)
    assert not missing, f"read by config/settings.py but in no table of docs/operations/configuration.md: {missing}"


def test_every_deprecated_name_is_listed_with_its_replacement() -> None:
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    rows = [row for row in page.split("## Deprecated names", 1)[1].splitlines() if row.startswith("|")]
    for new, (old, _scale) in RENAMED_ENV.items():
        assert any(f"`{old}`" in row and f"`{new}`" in row for row in rows), (old, new)
