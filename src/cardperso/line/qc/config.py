"""What quality control checks, how often, and where each score's threshold lies.

================  =======  ===================================================================
option            default  meaning
================  =======  ===================================================================
``hsm_check``     True     prove the card's keys by authentication verified in the HSM, and
                           each PIN object's state (:mod:`.chipproof`)
``vision_every``  1        the camera check (OCV of every text line, the photo) on every Nth
                           card: 1 = every card, 0 = off
``ocr_every``     20       also read the text back with OCR (Tesseract) on every Nth of the
                           cards the camera checks (0 = off); it costs ~0.4 ms of host CPU
                           per character (~9-27 ms a card, ``bench/qc.py``), OCV and the
                           photo under 1 ms: OCV checks every card, OCR audits a sample
``ocr_threshold`` 1.0      lowest OCR similarity a line may have (1 - edit distance / length,
                           spaces ignored): 1.0 asks for an exact read
``ocv_threshold`` 0.98     lowest optical-character-verification score of a character cell
                           (1 - differing ink / ink, against the database text drawn in the
                           line's font): a correct cell scores 1, the closest wrong pair
                           (``O`` for ``Q``) 0.964
``photo_threshold``        lowest normalized correlation of the photo frame with the
                  0.995    database photo; the synthetic photos of two people can correlate
                           up to ~0.987 (same silhouette, different speckle), a clean face 1.0
``crosscheck``    True     PAN from the stripe = PAN on the body = PAN in the chip = database
``tessdata``      None     Tesseract's language data folder; None: ``TESSDATA_PREFIX`` or the
                           Debian ``tesseract-ocr`` location
================  =======  ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["QcConfig"]


@dataclass(frozen=True)
class QcConfig:
    """How the QC station checks the finished card (see the module notes)."""

    hsm_check: bool = True
    vision_every: int = 1
    ocr_every: int = 20
    ocr_threshold: float = 1.0
    ocv_threshold: float = 0.98
    photo_threshold: float = 0.995
    crosscheck: bool = True
    tessdata: Path | None = None

    def __post_init__(self) -> None:
        if self.vision_every < 0 or self.ocr_every < 0:
            raise ValueError("vision_every and ocr_every are 0 (off) or more")
        for name in ("ocr_threshold", "ocv_threshold", "photo_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is between 0 and 1")

    def vision_due(self, n: int) -> bool:
        """True if the ``n``-th card (from 0) gets the camera check."""
        return self.vision_every > 0 and n % self.vision_every == 0

    def ocr_due(self, n: int) -> bool:
        """True if the ``n``-th card (from 0) is also read back by OCR."""
        if not self.vision_due(n) or self.ocr_every == 0:
            return False
        return (n // self.vision_every) % self.ocr_every == 0
