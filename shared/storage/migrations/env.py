"""Alembic's environment for the suite's stores (``shared.storage.migrate`` runs it).

The caller hands over an open connection and the store's name; the store's revision is
kept in its own version table, so several stores can share one database. SQLite runs
table changes in batch mode (copy and move), since it cannot alter most of a table.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
store = config.attributes["store"]

context.configure(
    connection=connection,
    version_table=f"alembic_version_{store}",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
