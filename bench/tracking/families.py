"""One run per ranked family under a study's parent run (``lrbench.role = family``): its rank, its test
metric's mean and CI and the chosen configuration as params, so that MLflow's runs table lists the
families and sorts them by any of these columns.

Each publication replaces the previous one (the ranking changes as a study goes on): the old family runs
are deleted (MLflow's soft delete) and new ones made, each closed FINISHED at once. A process killed in
between leaves runs the next publication deletes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bench.tracking.names import PARENT_RUN_TAG, ROLE_TAG, STUDY_UID_TAG, FamilyRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

FAMILY_ROLE = "family"


def replace_family_runs(
    client: MlflowClient, experiment_id: str, parent_id: str, uid: str, families: Mapping[str, FamilyRecord]
) -> None:
    from mlflow.entities import Metric, Param

    query = f"tags.`{ROLE_TAG}` = '{FAMILY_ROLE}' and tags.`{STUDY_UID_TAG}` = '{uid}'"
    for old in client.search_runs([experiment_id], filter_string=query, max_results=1000):
        client.delete_run(old.info.run_id)
    for family, (metrics, params) in families.items():
        # No lrbench.stage: that tag is a trial run's (search or confirm); the role tells these apart.
        tags = {PARENT_RUN_TAG: parent_id, STUDY_UID_TAG: uid, ROLE_TAG: FAMILY_ROLE, "scheduler": family}
        mark = "=" if metrics.get("tied_for_best") else ""
        name = f"rank {int(metrics.get('rank', 0)):02d}{mark} {family}"
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id, status="FINISHED")
