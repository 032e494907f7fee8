"""Tesseract, kept loaded in the process: the QC camera's text reader.

Tesseract 5 (Debian ``tesseract-ocr``: the engine and its English LSTM model) is
driven through the ``tesserocr`` binding, which calls the engine's C++ API in
process. Measured on this project's card faces (``bench/qc.py``), the other ways
cost far more host CPU per card for the same reads:

* ``pytesseract`` starts the ``tesseract`` program for every image: process start
  and loading the model (~4 MB) every time, tens of milliseconds before a
  character is read;
* a persistent worker process holding the engine would read as fast, but adds an
  image transfer per card and moves the CPU out of the line's own process, where
  the host still pays it;
* ``tesserocr`` keeps one engine per reader object (load once, ~0.1 s): a read then
  costs what the LSTM costs, about 0.4 ms per character.

The engine is set up for short known fields: LSTM only, no dictionaries (names and
numbers are not words), no second pass on inverted images, one character whitelist
per call. An engine object is not thread-safe; the QC station owns one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from cardperso.errors import CardpersoError

__all__ = ["OcrUnavailable", "TesseractReader", "find_tessdata"]

_CANDIDATES = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)


class OcrUnavailable(CardpersoError):
    """Tesseract or its language data is not installed."""

    exit_code = 2


def find_tessdata(lang: str = "eng", explicit: Path | None = None) -> Path:
    """The folder holding ``<lang>.traineddata`` (``explicit``, ``TESSDATA_PREFIX``,
    then the Debian locations); OcrUnavailable if there is none."""
    tried: list[Path] = []
    env = os.environ.get("TESSDATA_PREFIX")
    for c in (explicit, Path(env) if env else None, *map(Path, _CANDIDATES)):
        if c is None:
            continue
        for d in (c, c / "tessdata"):
            tried.append(d)
            if (d / f"{lang}.traineddata").is_file():
                return d
    raise OcrUnavailable(
        f"no Tesseract language data for {lang!r} (install the Debian package tesseract-ocr, "
        "or set TESSDATA_PREFIX)"
    )


class TesseractReader:
    """One loaded Tesseract engine (see the module notes)."""

    def __init__(self, lang: str = "eng", tessdata: Path | None = None) -> None:
        # Debian's build of the engine uses OpenMP; one thread per read is all a few
        # short lines need, and spare threads only spin on the line's CPU.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr  # type: ignore[import-untyped]
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise OcrUnavailable(f"the tesserocr binding is not installed ({e})") from None
        self._t: Any = tesserocr
        path = find_tessdata(lang, tessdata)
        try:
            self._api: Any = tesserocr.PyTessBaseAPI(
                path=str(path),
                lang=lang,
                oem=tesserocr.OEM.LSTM_ONLY,
                psm=tesserocr.PSM.SINGLE_BLOCK,
                variables={"load_system_dawg": "0", "load_freq_dawg": "0"},
            )
        except RuntimeError as e:
            raise OcrUnavailable(f"Tesseract did not start: {e}") from None
        self._api.SetVariable("tessedit_do_invert", "0")
        self._whitelist = ""
        self.reads = 0

    @property
    def version(self) -> str:
        return str(self._t.tesseract_version()).split()[1]

    def _set(self, image: Image.Image, whitelist: str, single_line: bool) -> None:
        if whitelist != self._whitelist:
            self._api.SetVariable("tessedit_char_whitelist", whitelist)
            self._whitelist = whitelist
        psm = self._t.PSM.SINGLE_LINE if single_line else self._t.PSM.SINGLE_BLOCK
        self._api.SetPageSegMode(psm)
        self._api.SetImage(image)
        self.reads += 1

    def read_block(self, image: Image.Image, whitelist: str) -> list[str]:
        """The text lines of a block of text (page segmentation mode 6), blank lines dropped."""
        self._set(image, whitelist, False)
        text = str(self._api.GetUTF8Text())
        return [line for line in text.splitlines() if line.strip()]

    def read_line(self, image: Image.Image, whitelist: str) -> str:
        """One line of text (page segmentation mode 7)."""
        self._set(image, whitelist, True)
        return " ".join(str(self._api.GetUTF8Text()).split())

    def close(self) -> None:
        self._api.End()
