"""Lettershop fixtures: finished batches from the real line (built once per test
session and worker), copied for each test; poppler's ``pdftotext``.

``pdftotext`` is a real component (poppler-utils, ``scripts/install-system-deps.sh``):
without it the document tests skip, or fail when ``CARDPERSO_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from production.pg import REQUIRE_ALL_ENV

from .support import PDFTOTEXT, Bureau, Template, build_template, long_pin_profile, open_bureau


@pytest.fixture(scope="session")
def poppler() -> str:
    if not Path(PDFTOTEXT).is_file():
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{REQUIRE_ALL_ENV}=1 but {PDFTOTEXT} (poppler-utils) is missing")
        pytest.skip(f"{PDFTOTEXT} (poppler-utils) is missing")
    return PDFTOTEXT


@pytest.fixture(scope="session")
def debit_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return build_template(tmp_path_factory.mktemp("debit") / "t", "debit", 36)


@pytest.fixture(scope="session")
def sim_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return build_template(tmp_path_factory.mktemp("sim") / "t", "sim", 6)


@pytest.fixture(scope="session")
def long_pin_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return build_template(
        tmp_path_factory.mktemp("long") / "t", "debit", 16, profile=long_pin_profile()
    )


@pytest.fixture
def bureau_of(tmp_path: Path) -> Iterator[Callable[[Template], Bureau]]:
    """Opens a private copy of a template (closed after the test)."""
    opened: list[Bureau] = []

    def open_copy(template: Template) -> Bureau:
        b = open_bureau(template, tmp_path / f"bureau-{len(opened)}")
        opened.append(b)
        return b

    yield open_copy
    for b in opened:
        b.close()


@pytest.fixture
def debit(bureau_of: Callable[[Template], Bureau], debit_template: Template) -> Bureau:
    return bureau_of(debit_template)
