"""dbt-facing code: parsing step commands, invoking dbt, reading its artifacts."""
