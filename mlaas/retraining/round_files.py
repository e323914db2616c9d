"""The files of a retraining round on a STRICT deployment's node, in its training job's private
directory: what the scheduler writes there, what the job writes back, and nothing else crosses."""

ROUND_PLAN = "round.json"  # the NodeRound, written by the scheduler
CANDIDATE = "candidate.onnx"  # a federated judging step's model, moved in by the scheduler
ROUND_RESULT = "result.json"  # the RoundResult: counts, scores, the verdict
PARAMETERS = "parameters.npz"  # a federated fitting step's arrays
PREDICTIONS = "predictions.npy"  # a cross-validated fit's, of each fold's rows by the fit without them
# Why a round failed, in words the job chose (counts and ids, never the node's data): its log,
# which may quote a label or a row in an exception, stays on the node.
FAILURE_NOTE = "failure.txt"
# When the job's program was ready and when it fitted and exported (stages.py), for any job.
STAGES = "stages.json"
