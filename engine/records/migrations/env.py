"""Alembic's environment for the records database: driven from engine.records.migrations,
which hands it an open connection (config.attributes["connection"]); no alembic.ini."""

from alembic import context

from engine.records.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
