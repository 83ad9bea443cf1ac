"""The query language: a PromQL subset parsed, planned, compiled to SQL and evaluated."""
