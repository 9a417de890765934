"""What a study gives, read back from what it stored: leaderboards (:mod:`.leaderboard`), the confirmed
ranking (:mod:`.ranking`, :mod:`.answer`) and report.html (:mod:`.assemble`, :mod:`.charts`, :mod:`.page`).
Never trains, and never imports Optuna or the MLflow writer."""
