"""What a study gives, read back from what it stored: leaderboards (:mod:`.leaderboard`) and figures
(:mod:`.figures`). Never trains, and never imports Optuna or the MLflow writer."""
