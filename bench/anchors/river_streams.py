"""Writes the streams bench/retraining_bench.py and bench/live_retraining_bench.py score, made by
river's generators, in river's own venv; runs river's ADWIN on the error streams they write back;
and runs river's online learners on the streams as an application would feed them.

    python river_streams.py streams OUT.npz SEEDS   # X_<stream>_<seed>, y_..., plus train/oracle sets
    python river_streams.py adwin ERRORS.npz        # JSON: ADWIN's alarms on every array
    python river_streams.py online STREAMS.npz ROWS CHUNK KEY...  # JSON: per row, right or not

Each stream has BEFORE rows of one concept then AFTER rows of another: abrupt changes of the
labelling function (STAGGER, Sine, Agrawal, Mixed), a gradual one (river's ConceptDriftStream
from Sine 0 to Sine 2 over WIDTH rows), and two controls: stationary (Sine 0 throughout) and
covariate-only (Sine 0, after the change only rows with x1 < 0.5: the inputs move, the concept
does not). `train_<stream>_<seed>` is what the champion learns (the first concept) and
`oracle_<stream>_<seed>` the new concept alone, for the oracle.
"""

import itertools
import json
import sys

import numpy as np
from river.datasets import synth
from river_adwin import alarms

BEFORE, AFTER, WIDTH, TRAIN = 2_000, 6_000, 2_000, 3_000


def hyperplane(plane, skip):
    """The rows of the random hyperplane `plane` seeds, from the `skip`-th on: the stream's and the
    training set's concept is one plane, their rows others (its seed makes both plane and rows)."""
    return itertools.islice(synth.Hyperplane(seed=plane, n_features=10), skip, None)


ABRUPT = {
    "stagger": (lambda s: synth.STAGGER(0, seed=s), lambda s: synth.STAGGER(2, seed=s)),
    "sine": (lambda s: synth.Sine(0, seed=s), lambda s: synth.Sine(2, seed=s)),
    "agrawal": (lambda s: synth.Agrawal(0, seed=s), lambda s: synth.Agrawal(2, seed=s)),
    "mixed": (lambda s: synth.Mixed(0, seed=s), lambda s: synth.Mixed(1, seed=s)),
    "sea": (lambda s: synth.SEA(0, seed=s), lambda s: synth.SEA(3, seed=s)),
    # Another random hyperplane of 10 features: every weight changes at once.
    "hyperplane": (
        lambda s: hyperplane(s % 100, skip=10_000 * (s // 200)),
        lambda s: hyperplane(1_000 + s % 100, skip=10_000 * (s // 300)),
    ),
}


def left_half(x):
    """Sine rows with x1 < 0.5: the covariate-only shift."""
    return x[0] < 0.5


def rows(stream, n, keep=lambda x: True):
    X, y = [], []
    for x, label in stream:
        if keep(x):
            X.append([float(v) for v in x.values()])
            y.append(int(label))
            if len(y) == n:
                break
    return np.array(X, dtype=np.float32), np.array(y, dtype=np.int64)


def streams(out, seeds):
    data = {}

    def add(name, seed, parts, train, oracle):
        data[f"X_{name}_{seed}"] = np.vstack([p[0] for p in parts])
        data[f"y_{name}_{seed}"] = np.concatenate([p[1] for p in parts])
        data[f"train_X_{name}_{seed}"], data[f"train_y_{name}_{seed}"] = train
        data[f"oracle_X_{name}_{seed}"], data[f"oracle_y_{name}_{seed}"] = oracle

    for seed in range(seeds):
        for name, (old, new) in ABRUPT.items():
            add(
                name,
                seed,
                [rows(old(seed), BEFORE), rows(new(seed + 100), AFTER)],
                rows(old(seed + 200), TRAIN),
                rows(new(seed + 300), TRAIN),
            )
        gradual = synth.ConceptDriftStream(
            synth.Sine(0, seed=seed),
            synth.Sine(2, seed=seed + 100),
            seed=seed,
            position=BEFORE + WIDTH // 2,
            width=WIDTH,
        )
        add(
            "sine_gradual",
            seed,
            [rows(gradual, BEFORE + AFTER)],
            rows(synth.Sine(0, seed=seed + 200), TRAIN),
            rows(synth.Sine(2, seed=seed + 300), TRAIN),
        )
        sine = synth.Sine(0, seed=seed)
        train, oracle = rows(synth.Sine(0, seed=seed + 200), TRAIN), rows(synth.Sine(0, seed=seed + 300), TRAIN)
        add("stationary", seed, [rows(sine, BEFORE + AFTER)], train, oracle)
        add(
            "covariate_only",
            seed,
            [rows(sine, BEFORE), rows(sine, AFTER, left_half)],
            train,
            rows(synth.Sine(0, seed=seed + 300), TRAIN, left_half),
        )
    np.savez(out, **data)


def adwin(errors_file):
    data = np.load(errors_file)
    print(json.dumps({key: alarms(data[key]) for key in data.files}))


def online(streams_file, rows_count, chunk, keys):
    """River's Adaptive Random Forest and Hoeffding Adaptive Tree, each first taught the champion's
    training rows, then fed the stream as the mesh is: each row predicted, its label learnt once
    its chunk of `chunk` rows was answered (labels every `chunk` answers). Per key and learner:
    1 where the prediction was right, for the first `rows_count` rows."""
    from river import forest, tree

    data = np.load(streams_file)
    found = {}
    for key in keys:
        X, y = data[f"X_{key}"][:rows_count], data[f"y_{key}"][:rows_count]
        found[key] = {}
        for name, learner in (
            ("arf", forest.ARFClassifier(seed=0)),
            ("hat", tree.HoeffdingAdaptiveTreeClassifier(seed=0)),
        ):
            for x, label in zip(data[f"train_X_{key}"], data[f"train_y_{key}"], strict=True):
                learner.learn_one(dict(enumerate(x.tolist())), int(label))
            right = []
            for start in range(0, len(y), chunk):
                rows_ = [dict(enumerate(x.tolist())) for x in X[start : start + chunk]]
                labels = [int(v) for v in y[start : start + chunk]]
                right += [int(learner.predict_one(x) == label) for x, label in zip(rows_, labels, strict=True)]
                for x, label in zip(rows_, labels, strict=True):
                    learner.learn_one(x, label)
            found[key][name] = right
    print(json.dumps(found))


if __name__ == "__main__":
    if sys.argv[1] == "streams":
        streams(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "online":
        online(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    else:
        adwin(sys.argv[2])
