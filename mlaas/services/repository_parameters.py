"""The parameters of the runtime's RepositoryModelLoad and RepositoryModelUnload that only the
scheduler sets on a deployment's runtime (its repository rpcs are the scheduler's alone): the
scheduler writes them (scheduler_svc/replica_models.py), the runtime reads them (inference_svc/catalog.py)."""

# The credential minted for the version to load (a hot version swap, or a trial's challenger).
CREDENTIAL = "mlaas_credential"
# Load the version as the challenger of a trial: "shadow" or "canary"; on unload, end the trial.
TRIAL = "mlaas_trial"
# A canary's share of the requests, in percent.
CANARY_PERCENT = "mlaas_canary_percent"
# Only renew the credential (mlaas_credential) of what the runtime serves now: load nothing.
RENEW = "mlaas_renew"
