"""The batch personalization line: stations, chip-encoding modules and the orchestrator.

A card travels (DESIGN.md §2): feeder -> one of N chip-encoding modules
(initialization, electrical personalization, the chip's command/response check)
-> magnetic stripe encode and read-back -> visual personalization (embossing,
laser engraving, photo; rendered to PNG) -> QC -> good stacker or reject bin,
whence it is remade automatically on a new card.

- :mod:`.timing` - modeled machine time of each station and the pipeline rate
- :mod:`.feeder` - card stock and the feeder (simulated cards behind ``Reader``)
- :mod:`.chip` - runs prepared chip steps through a reader and the HSM
- :mod:`.stations` - the stations: initialization, personalization, chip check,
  magnetic stripe, visual, QC
- :mod:`.magstripe` - the simulated stripe encoder (write, read back, compare)
- :mod:`.visual` - the card face rendered with Pillow
- :mod:`.modules` - a chip-encoding module: one reader slot, retry once, reject
- :mod:`.orchestrator` - N modules in parallel, claims and results in the database
- :mod:`.reports` - batch summary, chip usage report, response data
- :mod:`.fieldkeys` - the sealing key of cardholder records, derived in the HSM
- :mod:`.bureau` - HSM key labels the line and data preparation use
- :mod:`.usecases` - import, run, resume, status, report, the demo
- :mod:`.cli_commands` - the ``cardperso batch`` commands and ``cardperso demo``
"""
