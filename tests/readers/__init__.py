"""PC/SC and Reader-contract tests (package: shared rig helpers are imported as ``readers.*``)."""
