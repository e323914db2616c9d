"""Runs river's ADWIN (delta 0.002, its default) on the error streams bench/drift_bench.py wrote,
in river's own venv. Prints JSON: false alarms on each null stream and the alarms on each
drifted stream (1-based sample indices).

    python river_adwin.py STREAMS.npz SEEDS
"""

import json
import sys

import numpy as np
from river.drift import ADWIN


def alarms(stream):
    detector = ADWIN(delta=0.002)
    found = []
    for index, error in enumerate(stream, start=1):
        detector.update(float(error))
        if detector.drift_detected:
            found.append(index)
    return found


def main():
    data = np.load(sys.argv[1])
    seeds = int(sys.argv[2])
    results = {"adwin": {"null_alarms": [], "sea_alarms": []}}
    for seed in range(seeds):
        results["adwin"]["null_alarms"].append(len(alarms(data[f"sea_null_{seed}"])))
        results["adwin"]["sea_alarms"].append(alarms(data[f"sea_drift_{seed}"]))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
