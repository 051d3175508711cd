"""SQL lives here: tables, repositories, migrations (SQLite default, PostgreSQL for scale)."""
