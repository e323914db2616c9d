"""Retraining, apart from the servers that run it: a round's statistics (rounds.py, outcomes.py),
private and federated fits (private_fit.py, dp_fit.py, federated.py), the training job a node runs
(train_job.py, its files: round_files.py, its stages: stages.py) and the warm trainer that starts
jobs without their imports (warm_trainer.py)."""
