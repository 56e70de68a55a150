"""The tag keys quest's MLflow runs carry; MLflow's own `mlflow.source.git.commit` makes the UI show the commit
next to the run."""

TAG_MODEL = "quest.model"  # the model a run trained, or what else it is: comparison, learning_curve
TAG_KIND = "quest.kind"  # neural or classic
TAG_GROUP = "quest.comparison"  # the comparison's parent run, on every model run it compared
TAG_MODEL_MD5 = "quest.model_md5"  # the saved model a train run wrote
TAG_COMPARISON_MD5 = "quest.comparison_md5"  # the comparison table a parent run wrote
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"
TAG_PROCESS = "quest.process"  # host:pid of the process a run was logged from, to find runs it left behind
TAG_STAGE = "quest.stage"
TAG_FAILURE = "quest.failure"  # why a run ended FAILED, in the words the stage printed
