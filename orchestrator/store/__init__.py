"""The store: every durable fact of the product, in SQLite or PostgreSQL.

tables.py, rows.py       the tables (sqlmodel) and the engine's working copy of an order
dialects.py, errors.py   connecting, what SQLite and PostgreSQL do differently, and database
                         failures explained in one line
store.py                 `Store`: every read and write, fenced by lease and version; it is
                         built from orders.py (claims and steps), accounts.py (pauses and the
                         shared request budget) and reports.py (status and stuck orders)
fitting.py               texts cut to fit their columns
thread.py, group_commit.py  database work on its own thread, and many steps' writes in one
                         transaction
open.py                  opening a store, its schema brought to head (or checked)
migrate.py, migrations/  Alembic, applied from inside the CLI
"""
