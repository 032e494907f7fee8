"""The production database: models, migrations, repositories, audit chain, operators.

SQLite (one WAL file) by default, PostgreSQL by URL, the same code on both
(DESIGN.md §8). Import the pieces from their modules::

    from cardperso.production.db import Database, upgrade
    from cardperso.production import repo, audit, operators
"""

from __future__ import annotations

from cardperso.production.db import Database, make_engine, upgrade

__all__ = ["Database", "make_engine", "upgrade"]
