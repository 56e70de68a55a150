"""MLflow at the edge: the store, runs, provenance and the model registry. Called from stages only."""
