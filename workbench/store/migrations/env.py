"""Alembic environment: migrates the engine handed over by workbench.store.hub."""
from alembic import context
import sqlalchemy as sa

from workbench.store.partitions import include_name
from workbench.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    eng = config.attributes.get("engine")
    if eng is None:  # plain `alembic` command line: fall back to the configured hub
        from workbench import config as wb_config

        eng = sa.create_engine(wb_config.db_url())
    with eng.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,  # 0014: monthly partitions and key registries
        )
        context.run_migrations()


run_migrations_online()
