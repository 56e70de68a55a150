"""Equal-budget hyperparameter search: spaces, the search, shared Optuna studies and the sweep."""
