"""Static checks of the web pages' ES modules and CSS: nothing from elsewhere, the key kept
in sessionStorage only, no HTML built from strings, and every import resolvable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "api" / "web" / "static"
TEMPLATES = Path(__file__).resolve().parents[2] / "api" / "web" / "templates"
MODULES = sorted((STATIC / "js").glob("*.js"))
IMPORT = re.compile(r'import\s*\{([^}]*)\}\s*from\s*"(\./[\w-]+\.js)"')
EXPORT = re.compile(r"export\s+(?:async\s+)?(?:function|const|let|class)\s+(\w+)")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_there_is_a_module_for_every_page():
    names = {p.stem for p in MODULES}
    assert {"signin", "submit", "batches", "batch", "slide"} <= names


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_imports_name_exports_that_exist(module):
    text = module.read_text()
    for names, target in IMPORT.findall(text):
        path = module.parent / target
        assert path.is_file(), f"{module.name} imports missing {target}"
        exported = set(EXPORT.findall(path.read_text()))
        for name in (n.strip() for n in names.split(",") if n.strip()):
            assert name in exported, f"{module.name} imports {name} that {target} does not export"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_builds_no_markup_from_strings_and_keeps_key_out_of_local_storage(module):
    text = module.read_text()
    for forbidden in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
    ):
        assert forbidden not in text, f"{module.name} uses {forbidden}"


def test_nothing_is_loaded_from_another_site():
    files = [*STATIC.rglob("*.js"), *STATIC.rglob("*.css"), *TEMPLATES.rglob("*.html")]
    for path in files:
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|//cdn|@import", text), f"{path.name} refers elsewhere"


def test_key_goes_only_in_the_authorization_header():
    api = (STATIC / "js" / "api.js").read_text()
    assert 'headers.set("Authorization", `Bearer ${key}`)' in api
    assert "sessionStorage.setItem(KEY_ITEM, key)" in api
    # Only api.js touches the stored key; the pages never see it to put it in a URL.
    for module in MODULES:
        if module.name not in {"api.js", "signin.js"}:
            assert "getKey" not in module.read_text() and "sessionStorage" not in module.read_text()
        assert "?key=" not in module.read_text() and "api_key=" not in module.read_text()
