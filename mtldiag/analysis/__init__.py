"""Analysis: pure functions of summaries — the diagnosis, the comparison, previews and checks."""
