"""Statistics over finished runs: summaries with CIs, paired tests, ties, tuning budgets, time to target."""
