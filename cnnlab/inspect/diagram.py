"""A layered block diagram of a model with matplotlib only (no Graphviz).

The diagram is drawn from the same instrumented forward pass as `summary`, so it shows the
shapes the model really produces. Layout and drawing are separate steps: `layout()` turns the
layer tree into boxes, frames and arrows in abstract units (1 unit = 1 inch); `draw()` renders
them. Blocks (ResNet stages, BasicBlocks) are framed groups; a residual block's shortcut runs
in a side lane, through its downsample layers when it has them, into an add node.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.inspect.source import load_model
from cnnlab.inspect.stats import LayerStats, collect
from cnnlab.utils import save_figure

ORIENTATIONS = ("vertical", "horizontal")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
TITLE_CHAR_WIDTH = 0.62  # a bold character's mean width, in units of the font size
RESIDUAL_KINDS = ("BasicBlock",)  # blocks whose output is body(x) + shortcut(x)
SHORTCUT_CHILD = "downsample"

# fill colours by layer family; anything else is drawn in the default
COLOURS = {
    "Conv2d": "#cfe2ff", "ConvTranspose2d": "#cfe2ff", "Linear": "#e2d9f3",
    "BatchNorm1d": "#e9ecef", "BatchNorm2d": "#e9ecef",
    "ReLU": "#d1e7dd", "LeakyReLU": "#d1e7dd", "Sigmoid": "#d1e7dd", "Tanh": "#d1e7dd",
    "LayerNorm": "#e9ecef", "GroupNorm": "#e9ecef",
    "GELU": "#d1e7dd", "SiLU": "#d1e7dd", "Softmax": "#d1e7dd", "LogSoftmax": "#d1e7dd",
    "MaxPool2d": "#ffe5d0", "AvgPool2d": "#ffe5d0", "AdaptiveAvgPool2d": "#ffe5d0",
    "AdaptiveMaxPool2d": "#ffe5d0", "Upsample": "#ffe5d0",
    "Input": "#fff3cd", "add": "#f8d7da",
}
DEFAULT_COLOUR = "#f8f9fa"


@dataclass
class Box:
    lane: int  # 0 = the main flow, 1 = the shortcut lane
    pos: float  # position along the flow
    lines: tuple[str, ...]
    colour: str
    small: bool = False  # add nodes


@dataclass
class Frame:
    label: str
    start: float
    end: float
    lanes: int
    level: int  # nesting: deeper frames are drawn tighter
    residual: bool


@dataclass
class Layout:
    boxes: list[Box] = field(default_factory=list)
    arrows: list[tuple[int, int]] = field(default_factory=list)  # box indices
    skips: list[tuple[float, int]] = field(default_factory=list)  # (branch pos, add box index)
    frames: list[Frame] = field(default_factory=list)
    length: float = 0.0


def _pair_text(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"{value[0]}" if len(set(value)) == 1 else "x".join(str(v) for v in value)
    return str(value)


def _square_text(value) -> str:
    a = _pair_text(value)
    return f"{a}x{a}" if "x" not in a else a


def key_args(layer: LayerStats) -> str:
    """The few arguments worth printing in a box, e.g. '64, 3x3, s2, p1'."""
    a = layer.args
    if layer.kind in ("Conv2d", "ConvTranspose2d"):
        parts = [str(a.get("out_channels", "?")), _square_text(a.get("kernel_size", "?"))]
        if _pair_text(a.get("stride", 1)) != "1":
            parts.append(f"s{_pair_text(a['stride'])}")
        if _pair_text(a.get("padding", 0)) != "0":
            parts.append(f"p{_pair_text(a['padding'])}")
        return ", ".join(parts)
    if layer.kind == "Linear":
        return f"{a.get('in_features', '?')} -> {a.get('out_features', '?')}"
    if layer.kind in ("MaxPool2d", "AvgPool2d"):
        stride = a.get("stride", a.get("kernel_size"))
        text = _square_text(a.get("kernel_size", "?"))
        return text + (f", s{_pair_text(stride)}" if _pair_text(stride) != _pair_text(a.get("kernel_size")) else "")
    if layer.kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
        return f"to {_square_text(a.get('output_size', '?'))}"
    if layer.kind == "GroupNorm":
        return f"{a.get('num_groups', '?')} groups"
    if layer.kind == "Upsample":
        what = (f"to {_square_text(a['size'])}" if a.get("size") else
                f"x{_pair_text(a.get('scale_factor', '?'))}")
        return f"{what}, {a.get('mode', 'nearest')}"
    if layer.kind in ("Dropout", "Dropout2d"):
        return f"p={a.get('p', '?')}"
    if layer.kind == "LeakyReLU":
        return f"slope {a.get('negative_slope', '?')}"
    return ""


def _shape_text(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "not called"


# flow positions left free around a framed group, so nested frames and their labels fit
GROUP_GAP_BEFORE = 0.5
GROUP_GAP_AFTER = 0.3


class _Placer:
    """Walks the layer tree in order, placing leaves along the flow."""

    def __init__(self, layers: list[LayerStats]):
        self.layout = Layout()
        self.children: dict[str, list[LayerStats]] = {}
        for layer in layers:
            parent = layer.name.rsplit(".", 1)[0] if "." in layer.name else ""
            self.children.setdefault(parent, []).append(layer)
        self.pos = 0.0
        self.last_main: int | None = None

    def add_box(self, box: Box) -> int:
        self.layout.boxes.append(box)
        index = len(self.layout.boxes) - 1
        if box.lane == 0:  # the main flow is a chain; side-lane boxes are chained by `residual`
            if self.last_main is not None:
                self.layout.arrows.append((self.last_main, index))
            self.last_main = index
        return index

    @staticmethod
    def layer_box(layer: LayerStats, lane: int, pos: float) -> Box:
        title = layer.kind + (f" {key_args(layer)}" if key_args(layer) else "")
        return Box(lane, pos, (title, _shape_text(layer.out_shape)), COLOURS.get(layer.kind, DEFAULT_COLOUR))

    def group(self, parent: str, level: int) -> None:
        for layer in self.children.get(parent, []):
            if layer.is_leaf:
                self.add_box(self.layer_box(layer, 0, self.pos))
                self.pos += 1
                continue
            self.pos += GROUP_GAP_BEFORE
            first_box = len(self.layout.boxes)
            residual = layer.kind in RESIDUAL_KINDS
            if residual:
                self.residual(layer, level)
            else:
                self.group(layer.name, level + 1)
            placed = [box.pos for box in self.layout.boxes[first_box:]]
            if placed:  # the frame hugs its boxes; draw() adds a padding per nesting level
                label = f"{layer.name} ({layer.kind})"
                self.layout.frames.append(Frame(label, min(placed), max(placed), 1, level, residual))
            self.pos += GROUP_GAP_AFTER

    def residual(self, block: LayerStats, level: int) -> None:
        """The body in the main lane, the shortcut's layers in the side lane, then the add."""
        first_pos = self.pos
        children = self.children.get(block.name, [])
        shortcut = [c for c in children if c.name.rsplit(".", 1)[-1] == SHORTCUT_CHILD]
        for layer in children:
            if layer in shortcut:
                continue
            if layer.is_leaf:
                self.add_box(self.layer_box(layer, 0, self.pos))
                self.pos += 1
            else:
                self.group(layer.name, level + 1)
        side = self._leaves(shortcut[0].name) if shortcut else []
        side_pos = first_pos + max(0.0, (self.pos - first_pos - len(side)) / 2)  # centred on the body
        previous = None
        for i, layer in enumerate(side):
            self.layout.boxes.append(self.layer_box(layer, 1, side_pos + i))
            index = len(self.layout.boxes) - 1
            if previous is not None:
                self.layout.arrows.append((previous, index))
            previous = index
        add_box = Box(0, self.pos, ("add + ReLU", _shape_text(block.out_shape)), COLOURS["add"], small=True)
        add_index = self.add_box(add_box)
        self.pos += 1
        self.layout.skips.append((first_pos - 0.5, add_index))

    def _leaves(self, name: str) -> list[LayerStats]:
        out = []
        for child in self.children.get(name, []):
            out += [child] if child.is_leaf else self._leaves(child.name)
        return out


def layout(layers: list[LayerStats], input_shape: tuple) -> Layout:
    """Boxes, frames, arrows and skips for a layer tree (from `collect`)."""
    placer = _Placer(layers)
    placer.add_box(Box(0, 0, ("Input", _shape_text(input_shape)), COLOURS["Input"]))
    placer.pos = 1
    placer.group("", 1)
    plan = placer.layout
    plan.length = placer.pos
    for frame in plan.frames:  # a frame is as wide as the lanes used inside it
        inside = [b.lane for b in plan.boxes if frame.start <= b.pos <= frame.end]
        frame.lanes = 1 + max(inside, default=0)
    return plan


# --- drawing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Geometry:
    """Sizes in inches; `step` is the distance between consecutive layers along the flow."""

    box_w: float
    box_h: float
    step: float
    lane_gap: float
    font: float

    def centre(self, lane: float, pos: float, vertical: bool) -> tuple[float, float]:
        if vertical:
            return lane * self.lane_gap, -pos * self.step
        return pos * self.step, -lane * self.lane_gap


VERTICAL = _Geometry(box_w=2.7, box_h=0.38, step=0.52, lane_gap=3.1, font=7.5)
HORIZONTAL = _Geometry(box_w=1.3, box_h=0.62, step=1.5, lane_gap=0.95, font=7.0)


def _box_text(box: Box, vertical: bool) -> str:
    title, shape = box.lines
    if not vertical and len(title) > 16:  # narrow boxes: the kind on its own line, args below
        kind, _, rest = title.partition(" ")
        return f"{kind}\n{rest}\n{shape}"
    return f"{title}\n{shape}"


def draw(plan: Layout, orientation: str = "vertical", title: str = ""):
    """Render a layout; returns a matplotlib Figure sized so text stays at its point size."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    vertical = orientation == "vertical"
    g = VERTICAL if vertical else HORIZONTAL
    half_w, half_h = g.box_w / 2, g.box_h / 2
    lanes = 1 + max((b.lane for b in plan.boxes), default=0)
    margin, title_space = 0.45, 0.35
    along = (plan.length - 1) * g.step + (g.box_h if vertical else g.box_w) + 2 * margin
    across = (lanes - 1) * g.lane_gap + (g.box_w if vertical else g.box_h) + 2 * margin
    title_font = g.font + 1.5
    if title:  # wrap to the figure's width, so a narrow model's title is not cut off
        fig_width = across if vertical else along
        per_line = max(12, int((fig_width - 0.3) / (TITLE_CHAR_WIDTH * title_font / 72)))
        title = "\n".join(textwrap.wrap(title, per_line, break_on_hyphens=False)) or title
        title_space += (title.count("\n")) * title_font * 1.3 / 72
    width, height = (across, along + title_space) if vertical else (along, across + title_space)
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    # the input box's top-left corner sits `margin` inside the figure, below the title
    left_edge = -half_w - margin if vertical else -half_w - margin
    top_edge = half_h + margin + title_space if vertical else half_h + margin + title_space
    ax.set_xlim(left_edge, left_edge + width)
    ax.set_ylim(top_edge - height, top_edge)

    def centre(lane: float, pos: float) -> tuple[float, float]:
        return g.centre(lane, pos, vertical)

    for frame in plan.frames:
        pad = (0.32, 0.17, 0.08)[min(frame.level - 1, 2)]  # outer frames enclose inner ones
        (x0, y0), (x1, y1) = centre(0, frame.start), centre(frame.lanes - 1, frame.end)
        left, right = min(x0, x1) - half_w - pad, max(x0, x1) + half_w + pad
        bottom, top = min(y0, y1) - half_h - pad, max(y0, y1) + half_h + pad
        style = dict(linestyle="--", linewidth=0.9, edgecolor="#6c757d", facecolor="none")
        if frame.residual:
            style.update(linestyle="-", edgecolor="#adb5bd", facecolor="#f1f3f5")
        ax.add_patch(Rectangle((left, bottom), right - left, top - bottom, zorder=0.5 + 0.1 * frame.level, **style))
        ax.text(left + 0.05, top - 0.025, frame.label, ha="left", va="top", fontsize=g.font - 1.5,
                color="#495057", zorder=3)

    for box in plan.boxes:
        x, y = centre(box.lane, box.pos)
        w = g.box_w * (0.75 if box.small else 1.0)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - half_h), w, g.box_h, boxstyle="round,pad=0,rounding_size=0.05",
                                    facecolor=box.colour, edgecolor="#343a40", linewidth=0.8, zorder=2))
        ax.text(x, y, _box_text(box, vertical), ha="center", va="center", zorder=3, linespacing=1.15,
                fontsize=g.font - (0.5 if box.small else 0))

    def edge(box: Box, outgoing: bool) -> tuple[float, float]:
        """Where the flow leaves (outgoing) or enters a box."""
        x, y = centre(box.lane, box.pos)
        if vertical:
            return x, (y - half_h if outgoing else y + half_h)
        return (x + half_w if outgoing else x - half_w), y

    flow = dict(arrowstyle="-|>", mutation_scale=8, color="#343a40", linewidth=0.9, zorder=1.5,
                shrinkA=0, shrinkB=0)
    for a, b in plan.arrows:
        ax.add_patch(FancyArrowPatch(edge(plan.boxes[a], True), edge(plan.boxes[b], False), **flow))

    skip = dict(flow, color="#d63384", linewidth=1.2, zorder=1.8)
    line = dict(skip, arrowstyle="-")
    add_half = half_w * 0.75
    for branch, add_index in plan.skips:
        add = plan.boxes[add_index]
        side = [b for b in plan.boxes if b.lane == 1 and branch < b.pos < add.pos]
        start = centre(0, branch)
        ax_main, ay_main = centre(0, add.pos)
        if vertical:
            lane_x = centre(1, branch)[0] if side else start[0] + half_w + 0.1  # identity: just beside
            corner, end = (lane_x, start[1]), (ax_main + add_half, ay_main)
            bend = (lane_x, end[1])
        else:
            lane_y = centre(1, branch)[1] if side else start[1] - half_h - 0.08
            corner, end = (start[0], lane_y), (ax_main, ay_main - half_h)
            bend = (end[0], lane_y)
        ax.add_patch(FancyArrowPatch(start, corner, **line))
        if side:  # through the downsample layers
            ax.add_patch(FancyArrowPatch(corner, edge(side[0], False), **skip))
            ax.add_patch(FancyArrowPatch(edge(side[-1], True), bend, **line))
        else:
            ax.add_patch(FancyArrowPatch(corner, bend, **line))
        ax.add_patch(FancyArrowPatch(bend, end, **skip))

    if title:
        ax.text(left_edge + 0.15, top_edge - 0.1, title, ha="left", va="top", fontsize=title_font,
                weight="bold", linespacing=1.15)
    return fig


def diagram(model_or_spec, input_shape=None, path=None, orientation: str = "vertical",
            engine: str | None = None, num_classes: int = 10, **options):
    """Draw the model as a block diagram; write it to `path` (.png, .svg, .pdf) when given.

    Accepts what `summary` accepts, zoo options included. Returns the matplotlib Figure.
    """
    if orientation not in ORIENTATIONS:
        raise CnnlabError(f"orientation must be one of {', '.join(ORIENTATIONS)}; got {orientation!r}.")
    if path is not None and Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise CnnlabError(
            f"Cannot write a diagram to '{path}': the file name must end in {', '.join(FIGURE_SUFFIXES)}."
        )
    source = load_model(model_or_spec, input_shape, engine=engine, num_classes=num_classes, options=options)
    stats = collect(source.model, source.input_shape, model_name=source.name)
    plan = layout(list(stats.layers), stats.input_shape)
    shape = "x".join(str(s) for s in stats.input_shape)
    fig = draw(plan, orientation, title=f"{source.name} ({shape}): {stats.total_params:,} params, {stats.macs:,} MACs")
    if path is not None:
        save_figure(fig, path)
    return fig
