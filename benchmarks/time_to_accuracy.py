"""CPU time-to-accuracy: train the shipped recipes and compare with their targets.

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data [--recipe mnist|fashion|all]

Recipes (examples/*.yaml), on 2 CPU threads:
  mnist:   examples/mnist_fast.yaml,   target >= 99.3% test accuracy within 60 s of training;
  fashion: examples/fashion_fast.yaml, target >= 93.0% within 180 s.
"Seconds" are the run's train_s: the epochs' wall time including the per-epoch validation
pass, excluding data loading, model building and the final test evaluation. Prints accuracy,
seconds and epochs per recipe and, last, the ratio seconds / budget (<= 1 meets the time
budget). On a shared machine the load average is printed too: other processes slow it down.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled
# idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made 2-thread training 10x slower (must be set before torch loads OpenMP)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnlab.config import load_config  # noqa: E402
from cnnlab.training import train  # noqa: E402

# name -> (recipe file, target test accuracy, training-time budget in seconds)
RECIPES = {
    "mnist": (ROOT / "examples" / "mnist_fast.yaml", 0.993, 60.0),
    "fashion": (ROOT / "examples" / "fashion_fast.yaml", 0.930, 180.0),
}


def run_recipe(name: str, data_dir: str, threads: int, out: str, overrides: list[str]) -> dict:
    path, target, budget = RECIPES[name]
    config = load_config(path, [f"train.threads={threads}", f"train.out={out}", *overrides])
    config = config.replace(**{"data.data_dir": data_dir})
    load_before = os.getloadavg()[0]
    run = train(config)
    r = run.result
    return {"name": name, "acc": r["test_acc"], "seconds": r["train_s"], "epochs": r["epochs_run"],
            "target": target, "budget": budget, "load": (load_before, os.getloadavg()[0]),
            "s_per_epoch": r["s_per_epoch"], "path": run.path}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="directory with mnist/ and fashion-mnist/")
    parser.add_argument("--recipe", choices=(*RECIPES, "all"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="run folders go here (default: a temporary directory)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set train.epochs=6")
    args = parser.parse_args()
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_recipe(n, args.data_dir, args.threads, args.out or tmp, args.set) for n in names]
    for row in rows:
        met = row["acc"] >= row["target"] and row["seconds"] <= row["budget"]
        print(f"{row['name']}: test accuracy {100 * row['acc']:.2f}% (target {100 * row['target']:.1f}%) "
              f"in {row['seconds']:.1f} s over {row['epochs']} epochs ({row['s_per_epoch']:.1f} s/epoch, "
              f"budget {row['budget']:.0f} s) -> {'MET' if met else 'NOT MET'}; "
              f"load average {row['load'][0]:.1f} -> {row['load'][1]:.1f}")
    print("time ratio (train seconds / budget): "
          + ", ".join(f"{row['name']} {row['seconds'] / row['budget']:.2f}" for row in rows))


if __name__ == "__main__":
    main()
