"""The documentation's links and the code's references to it point at files that exist in
the repository, and nothing cites a file from outside it."""

import re

from conftest import ROOT

SKIPPED_DIRS = {".git", ".venv", "build", "__pycache__"}
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED_DOC = re.compile(r"\b((?:docs/)?[\w./-]+\.md)\b")


def _files(*suffixes):
    for path in ROOT.rglob("*"):
        if path.suffix in suffixes and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
            yield path


def test_markdown_links_resolve():
    broken = []
    for page in _files(".md"):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_code_cites_only_documents_in_the_repository():
    broken = []
    for source in _files(".py", ".sh"):
        for cited in CITED_DOC.findall(source.read_text(encoding="utf-8")):
            if not (ROOT / cited).exists():
                broken.append(f"{source.relative_to(ROOT)}: {cited}")
    assert not broken, broken
