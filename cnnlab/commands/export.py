"""`cnnlab export`: a run's best model as ONNX or TorchScript, checked against torch."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a run's best model to ONNX or TorchScript",
        description="Export the best checkpoint of a run (NumPy-engine runs through their torch "
                    "twin) and check the exported model against the torch model on a batch of "
                    "test images; prints the largest difference of the logits.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="file format")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default <RUN_DIR>/model.onnx or model.torchscript.pt)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.results.export import export

    done = export(args.run_dir, args.format, args.output)
    print(f"wrote {done.path} ({done.format})")
    print(f"checked on {done.batch} test images: max |exported - torch| = {done.max_diff:.3g}")
    if done.twin_diff is not None:
        print(f"torch twin of the NumPy model: max |torch - numpy| = {done.twin_diff:.3g}")
    return 0
