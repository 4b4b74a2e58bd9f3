"""Alembic environment: runs on the connection Docket passes in `config.attributes`."""

from alembic import context

from docket.metadata.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Docket runs its migrations itself at start-up; run `docket serve`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
