"""Model diagrams: grouped layout with residual shortcuts, written as png/svg/pdf."""

from __future__ import annotations

import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.inspect import diagram, summary
from cnnlab.inspect.diagram import key_args, layout


def test_resnet_layout_frames_stages_and_blocks_with_skip_paths():
    stats = summary("resnet18")
    plan = layout(list(stats.layers), stats.input_shape)
    labels = [f.label for f in plan.frames]
    assert sum(l.endswith("(Sequential)") for l in labels) == 4
    assert sum(l.endswith("(BasicBlock)") for l in labels) == 8
    assert len(plan.skips) == 8
    side = [b for b in plan.boxes if b.lane == 1]  # the downsample conv + BN of 3 stages
    assert [b.lines[0] for b in side[:2]] == ["Conv2d 128, 1x1, s2", "BatchNorm2d"]
    assert len(side) == 6
    assert plan.boxes[0].lines == ("Input", "3x32x32") and plan.boxes[-1].lines == ("Linear 512 -> 10", "10")
    for frame in plan.frames:  # a block that downsamples is framed across both lanes
        assert frame.lanes == (2 if frame.label.startswith(("layer2", "layer3", "layer4")) and
                               frame.label.endswith((".0 (BasicBlock)", "(Sequential)")) else 1)


def test_plain_cnn_is_one_chain_without_frames():
    stats = summary("small_cnn")
    plan = layout(list(stats.layers), stats.input_shape)
    assert not plan.frames and not plan.skips
    assert plan.arrows == [(i, i + 1) for i in range(len(plan.boxes) - 1)]


def test_key_args_show_what_defines_a_layer():
    layers = {l.name: l for l in summary("resnet18").layers}
    assert key_args(layers["conv1"]) == "64, 7x7, s2, p3"
    assert key_args(layers["maxpool"]) == "3x3, s2"
    assert key_args(layers["avgpool"]) == "to 1x1"


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_written_in_the_format_of_the_suffix(tmp_path, suffix, magic):
    path = tmp_path / f"model{suffix}"
    diagram("lenet", path=path)
    assert path.read_bytes()[:len(magic)] == magic


TINY_RESNET = [
    {"conv": {"out": 8, "k": 3, "pad": 1}}, "relu",
    {"block": 8}, {"block": {"out": 16, "stride": 2}},
    "adaptive_avgpool", "flatten", {"linear": "classes"},
]


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
def test_png_decodes_at_the_figure_size(tmp_path, orientation):
    path = tmp_path / "resnet.png"
    fig = diagram(TINY_RESNET, (3, 16, 16), path=path, orientation=orientation)
    width, height = (round(v * fig.dpi) for v in fig.get_size_inches())
    with Image.open(path) as image:
        assert image.size == (width, height)
    assert (height > width) == (orientation == "vertical")


def test_bad_suffix_and_orientation_are_clear_errors(tmp_path):
    with pytest.raises(CnnlabError, match="must end in .png, .svg, .pdf"):
        diagram("lenet", path=tmp_path / "model.jpg")
    with pytest.raises(CnnlabError, match="orientation"):
        diagram("lenet", orientation="diagonal")
