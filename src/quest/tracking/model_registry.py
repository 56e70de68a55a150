"""The model registry: after each comparison the MLP becomes a new version of the registered model, with the
alias its verdict earns."""

from __future__ import annotations

import sys
from pathlib import Path

from quest.tracking.store import write_lock


def register_mlp(
    name: str, *, experiment: str, mlp_run: str, entry: dict, winner: str, description: str, root: Path
) -> tuple[str, str] | None:
    """Register the model the MLP run logged as a new version of `name`. `entry` is the verdict's line for the MLP
    against the best classic model: the alias is `champion` when it says better (the Bayesian test's
    P(better) >= compare.probability), else `challenger`. (version, alias), or None with a notice when the run
    logged no model (e.g. the model came from `dvc pull`)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    logged = [
        found
        for found in mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
        if found.source_run_id == mlp_run
    ]
    if not logged:
        print(f"compare: notice: the MLP run {mlp_run} logged no model; nothing registered", file=sys.stderr)
        return None
    alias = "champion" if entry["outcome"] == "better" else "challenger"
    tags = {
        "quest.verdict": entry["words"],
        "quest.p_better": f"{entry['p_better']:.4g}",
        "quest.p_value": f"{entry['p_value']:.4g}",
        "quest.winner": winner,
    }
    with write_lock(root):  # a new version number is a read-then-write: one worker at a time
        version = mlflow.register_model(f"models:/{logged[0].model_id}", name, tags=tags).version
        client.update_model_version(name, version, description=description)
        client.set_registered_model_alias(name, alias, version)
    return str(version), alias
