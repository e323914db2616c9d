"""The Monitor: feedback from runtimes and applications, drift detection, automatic retraining."""
