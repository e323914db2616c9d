#!/bin/sh
# One image, an entrypoint per service:
#   inference | registry | scheduler | monitor | train | train-warm [ARGS...]   (default: inference)
# The runtime takes its model from --model NAME[:VERSION|@ALIAS] or MLAAS_MODEL.
set -e
service="${1:-inference}"
[ "$#" -gt 0 ] && shift
case "$service" in
    inference) exec python -m inference_svc "$@" ;;
    registry) exec python -m registry_svc "$@" ;;
    scheduler) exec python -m scheduler_svc "$@" ;;
    monitor) exec python -m monitor_svc "$@" ;;
    train) exec python -m mlaas.retraining.train_job "$@" ;;
    train-warm) exec python -m mlaas.retraining.warm_trainer --one "$@" ;;
    *) exec "$service" "$@" ;;
esac
