"""Tooling beside the NumPy engine: checks of `cnnlab.scratch` against PyTorch and against itself.

- `check`: the `cnnlab check` suite (each op against torch in float64, a table);
- `gradcheck`: central-difference gradient checks of modules and kernel pairs;
- `reference`: readable loop versions of the main kernels, the math spelled out.

The engine itself (`cnnlab.scratch`) imports none of this and needs no torch.
"""
