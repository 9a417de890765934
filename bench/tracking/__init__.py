"""MLflow tracking: the only package that imports mlflow (and only where a store is opened).

:mod:`.client` is the study's view of a tracking store; :mod:`.writer` runs it in a process of its own
while the study trains; :mod:`.spool` keeps what it has not written yet; :mod:`.names` and :mod:`.curves`
say what is recorded; :mod:`.server` and :mod:`.inflight` deal with tracking servers; :mod:`.store` with
the embedded SQLite store.
"""
