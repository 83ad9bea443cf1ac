"""Storage: PostgreSQL + TimescaleDB — migrations, tenants, the series catalog and samples."""
