"""Build data/breast-cancer.csv from scikit-learn's bundled copy of the Wisconsin diagnostic data.

The layout is the one the reference article reads: ``id``, ``diagnosis`` (M = malignant, B = benign),
then the 30 features named ``<measure>_mean``, ``<measure>_se`` and ``<measure>_worst``.
scikit-learn's copy carries no patient ids, so ``id`` is the 1-based row number.

    python data/make_breast_cancer.py            # (re)write the CSV
    python data/make_breast_cancer.py --check    # exit 1 if the shipped CSV differs from a rebuild
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

CSV = Path(__file__).with_name("breast-cancer.csv")


def column_name(sklearn_name: str) -> str:
    """'mean radius' -> 'radius_mean', 'radius error' -> 'radius_se', 'worst radius' -> 'radius_worst'.

    As in the article's copy, 'fractal dimension' is written with an underscore and 'concave points'
    keeps its space.
    """
    sklearn_name = sklearn_name.replace("fractal dimension", "fractal_dimension")
    if sklearn_name.startswith("mean "):
        return sklearn_name.removeprefix("mean ") + "_mean"
    if sklearn_name.endswith(" error"):
        return sklearn_name.removesuffix(" error") + "_se"
    if sklearn_name.startswith("worst "):
        return sklearn_name.removeprefix("worst ") + "_worst"
    raise ValueError(f"unexpected scikit-learn feature name {sklearn_name!r}")


def build() -> pd.DataFrame:
    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(columns=column_name)
    # scikit-learn's target: 0 = malignant, 1 = benign.
    diagnosis = bunch.target.map({0: "M", 1: "B"})
    frame = pd.concat([diagnosis.rename("diagnosis"), features], axis=1)
    frame.insert(0, "id", range(1, len(frame) + 1))
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the shipped CSV with a rebuild")
    args = parser.parse_args(argv)
    frame = build()
    if args.check:
        shipped = pd.read_csv(CSV)
        try:
            pd.testing.assert_frame_equal(shipped, frame, check_exact=False, rtol=1e-12)
        except AssertionError as exc:
            print(f"{CSV} differs from a rebuild: {exc}", file=sys.stderr)
            return 1
        print(f"{CSV}: {len(shipped)} rows match scikit-learn's bundled copy")
        return 0
    frame.to_csv(CSV, index=False)
    print(f"wrote {CSV} ({len(frame)} rows, {frame.shape[1]} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
