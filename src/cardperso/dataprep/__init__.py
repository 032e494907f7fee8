"""Data preparation: issuer files in, everything one card needs out.

- :mod:`.issuer_file` - streaming intake of CSV / JSON Lines with one error per problem
- :mod:`.digestset` - compact duplicate detection (the only per-record state of intake)
- :mod:`.fields` - field validators, postal rules, presort key
- :mod:`.magstripe` - ISO/IEC 7813 tracks, ISO/IEC 7811-2 bit coding and read-back
- :mod:`.filedata` - record -> bytes of each chip file (ascii, bcd, cn, tbcd, imsi, TLV)
- :mod:`.cardbody` - embossed and engraved text, the photo
- :mod:`.text` - transliteration (ICAO 9303) and profile template rendering
- :mod:`.generator` - seeded synthetic issuer files
- :mod:`.usecases` - what the CLI calls
"""
