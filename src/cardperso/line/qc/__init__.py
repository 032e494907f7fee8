"""Quality control of the finished card: the checks the QC station runs.

* :mod:`.chipproof` - the HSM check: keys proved by authentication verified in the
  HSM, PIN objects' state, the chip's PAN read back;
* :mod:`.vision` - the camera: OCR (:mod:`.ocr`, Tesseract) and OCV of every text
  line, the photo against the database photo;
* :mod:`.config` - what runs on which card, and the thresholds.

The command/response check runs earlier, in the chip module's ``chip_check``
station (:func:`cardperso.line.stations.chip_check_steps`); the stripe is read back
at its own station (:mod:`cardperso.line.magstripe`). The QC station
(:class:`cardperso.line.stations.QcStation`) puts the rest together and cross-checks
the PAN across stripe, card body, chip and database.
"""

from cardperso.line.qc.chipproof import ChipProof, ProofPlan, ProofResult, proof_plan
from cardperso.line.qc.config import QcConfig
from cardperso.line.qc.ocr import OcrUnavailable, TesseractReader, find_tessdata
from cardperso.line.qc.vision import VisionCheck, VisionResult

__all__ = [
    "ChipProof",
    "OcrUnavailable",
    "ProofPlan",
    "ProofResult",
    "QcConfig",
    "TesseractReader",
    "VisionCheck",
    "VisionResult",
    "find_tessdata",
    "proof_plan",
]
