#!/usr/bin/env python3
"""
Reference model of the `auc_gap_to_reference` figure (npm run bench -- --only training).

Reads a training dataset exported as CSV (its features by the view's names, the label
as 0/1 and `_split`), trains scikit-learn's HistGradientBoostingClassifier on the
train split with early stopping on the validation split, scores the test split and
prints one JSON line: {"auc": ..., "rows": <test rows>, ...}.

    python3 bench/reference_gbdt.py --csv rows.csv --spec spec.json

spec.json: {"label": "delayed", "numeric": ["distance", ...],
            "categorical": {"origin": ["ATL", "ORD", ...]}}
A categorical feature keeps the listed categories (the project model's one-hot
categories, most frequent first) and puts every other value in one "other" category;
a missing value stays missing. Numbers go in as given (NaN where the join found
nothing): trees need no scaling, and an hour or a weekday is just a number to them.
"""
import argparse
import inspect
import json
import sys
import time

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score


def read_rows(path, columns, categorical):
    """The CSV's columns as a dict of numpy arrays (text for categorical ones)."""
    try:
        import pandas as pd

        dtype = {c: str for c in categorical}
        dtype['_split'] = str
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[''])
        return {c: frame[c].to_numpy() for c in columns}, 'pandas'
    except ImportError:
        import csv

        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            values = {c: [] for c in columns}
            for row in reader:
                for c in columns:
                    values[c].append(row[c])
        out = {}
        for c in columns:
            if c in categorical or c == '_split':
                out[c] = np.array([v if v != '' else np.nan for v in values[c]], dtype=object)
            else:
                out[c] = np.array([float(v) if v != '' else np.nan for v in values[c]], dtype=np.float64)
        return out, 'csv'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--csv', required=True)
    parser.add_argument('--spec', required=True)
    parser.add_argument('--max-iter', type=int, default=500)
    parser.add_argument('--learning-rate', type=float, default=0.1)
    parser.add_argument('--max-leaf-nodes', type=int, default=63)
    parser.add_argument('--patience', type=int, default=20)
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    label = spec['label']
    numeric = list(spec.get('numeric', []))
    categorical = dict(spec.get('categorical', {}))
    features = numeric + list(categorical)

    t0 = time.perf_counter()
    cols, reader = read_rows(args.csv, features + [label, '_split'], categorical)
    read_seconds = time.perf_counter() - t0

    n = len(cols['_split'])
    X = np.empty((n, len(features)), dtype=np.float64)
    for i, c in enumerate(numeric):
        X[:, i] = np.asarray(cols[c], dtype=np.float64)
    for j, (c, categories) in enumerate(categorical.items()):
        code = {v: k for k, v in enumerate(categories)}
        other = float(len(categories))
        raw = cols[c]
        X[:, len(numeric) + j] = [np.nan if (v is None or (isinstance(v, float) and np.isnan(v))) else code.get(str(v), other) for v in raw]
    y = np.asarray(cols[label], dtype=np.float64).astype(np.int64)
    split = np.asarray(cols['_split']).astype(str)
    train, val, test = split == 'train', split == 'validation', split == 'test'
    if not (train.any() and val.any() and test.any()):
        raise SystemExit(f'every split must have rows (train {train.sum()}, validation {val.sum()}, test {test.sum()})')

    is_categorical = [False] * len(numeric) + [True] * len(categorical)
    common = dict(
        learning_rate=args.learning_rate,
        max_iter=args.max_iter,
        max_leaf_nodes=args.max_leaf_nodes,
        min_samples_leaf=100,
        l2_regularization=1.0,
        categorical_features=is_categorical,
        random_state=0,
    )
    t0 = time.perf_counter()
    if 'X_val' in inspect.signature(HistGradientBoostingClassifier.fit).parameters:
        # scikit-learn >= 1.6: early stopping on our own validation split.
        clf = HistGradientBoostingClassifier(early_stopping=True, scoring='loss', n_iter_no_change=args.patience, **common)
        clf.fit(X[train], y[train], X_val=X[val], y_val=y[val])
        iterations = int(clf.n_iter_)
        p_val = clf.predict_proba(X[val])[:, 1]
        p_test = clf.predict_proba(X[test])[:, 1]
        stopping = 'fit(X_val=validation split), validation log loss, patience %d' % args.patience
    else:
        # Older scikit-learn: train max_iter trees, keep the iteration with the best validation log loss.
        clf = HistGradientBoostingClassifier(early_stopping=False, **common)
        clf.fit(X[train], y[train])
        losses = [log_loss(y[val], p[:, 1], labels=[0, 1]) for p in clf.staged_predict_proba(X[val])]
        best = int(np.argmin(losses))
        iterations = best + 1
        p_val = next(p for i, p in enumerate(clf.staged_predict_proba(X[val])) if i == best)[:, 1]
        p_test = next(p for i, p in enumerate(clf.staged_predict_proba(X[test])) if i == best)[:, 1]
        stopping = 'best iteration by validation log loss (staged predictions)'
    fit_seconds = time.perf_counter() - t0

    print(json.dumps({
        'auc': float(roc_auc_score(y[test], p_test)),
        'rows': int(test.sum()),
        'trainRows': int(train.sum()),
        'validationRows': int(val.sum()),
        'validationAuc': float(roc_auc_score(y[val], p_val)),
        'iterations': iterations,
        'earlyStopping': stopping,
        'params': {k: v for k, v in common.items() if k != 'categorical_features'},
        'features': features,
        'categorical': list(categorical),
        'readSeconds': round(read_seconds, 2),
        'fitSeconds': round(fit_seconds, 2),
        'reader': reader,
        'sklearn': sklearn.__version__,
        'python': sys.version.split()[0],
    }))


if __name__ == '__main__':
    main()
