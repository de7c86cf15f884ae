"""seed -> Task: a random but reproducible practice window, instruction and goal.

`generate(seed)` draws a skill (what the task practises), builds the widgets it needs,
adds distractors with look-alike labels and unrelated filler widgets, lays them out in
a window of random size, font size and colours, and phrases the instruction. The same
seed always gives the same task (one `random.Random(seed)` drives every choice).

Difficulty (0..3, drawn from the seed unless given) sets how many filler widgets there
are, how small the labels are and how many look-alike distractors surround the target,
so a small model can be trained with a curriculum.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass, field, replace

from agent.tasks import vocabulary as V
from agent.tasks.layout import DIALOG_ID, Box, Goal, Layout, Task, Widget

SINGLE_SKILLS = ("click", "double_click", "right_click", "hover", "tick", "radio")
MULTI_SKILLS = ("type_submit", "form", "scroll_select", "slider_apply", "menu",
                "dialog_tick_ok", "tab_tick")
SKILLS = SINGLE_SKILLS + MULTI_SKILLS
MAX_WINDOW = (1100, 700)  # fits a 1280x800 screen with margins to spare
MARGIN = 16


@dataclass(frozen=True)
class Difficulty:
    level: int
    fillers: tuple[int, int]  # how many unrelated widgets (min, max)
    font_px: tuple[int, int]  # label size range
    distractors: int  # look-alikes of the target


DIFFICULTIES = {
    0: Difficulty(0, (1, 3), (16, 18), 0),
    1: Difficulty(1, (3, 5), (13, 16), 1),
    2: Difficulty(2, (5, 8), (11, 14), 2),
    3: Difficulty(3, (7, 11), (10, 12), 3),
}


def _colour(rng: random.Random, lightness: tuple[float, float],
            saturation: tuple[float, float] = (0.2, 0.6)) -> str:
    r, g, b = colorsys.hls_to_rgb(rng.random(), rng.uniform(*lightness), rng.uniform(*saturation))
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


@dataclass
class _Block:
    """Widgets placed together (a caption and its field); boxes relative to the block."""

    widgets: list[Widget]
    width: int
    height: int
    filler: bool = False


@dataclass
class _Builder:
    rng: random.Random
    font_px: int
    used_labels: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    # --- sizes ------------------------------------------------------------------------

    def text_w(self, text: str) -> int:
        """Generous width of `text` at the font size: Qt clips, never wraps, a label."""
        return math.ceil(len(text) * self.font_px * 0.68) + 6

    @property
    def row_h(self) -> int:
        return self.font_px * 2 + 4

    def new_id(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0)
        self.counters[prefix] = n + 1
        return f"{prefix}{n}"

    def take(self, label: str) -> str:
        self.used_labels.add(label.lower())
        return label

    def free(self, label: str) -> bool:
        return label.lower() not in self.used_labels

    # --- blocks -----------------------------------------------------------------------

    def button(self, label: str, *, filler: bool = False) -> _Block:
        w = self.text_w(label) + self.font_px + self.rng.randint(0, 30)
        h = self.row_h + self.rng.randint(-2, 10)
        colour = _colour(self.rng, (0.75, 0.92))
        widget = Widget(self.new_id("b"), "button", self.take(label), Box(0, 0, w, h),
                        colour=colour)
        return _Block([widget], w, h, filler)

    def hover(self, label: str, *, filler: bool = False) -> _Block:
        w = self.text_w(label) + 2 * self.font_px + self.rng.randint(0, 30)
        h = round(self.font_px * 2.6)
        widget = Widget(self.new_id("h"), "hover", self.take(label), Box(0, 0, w, h),
                        colour=_colour(self.rng, (0.8, 0.95)))
        return _Block([widget], w, h, filler)

    def text_field(self, caption: str, value: str = "", *, filler: bool = False) -> _Block:
        cap_w = self.text_w(caption + ":")
        box_w = self.rng.randint(150, 260) + self.font_px * 2
        h = self.row_h
        field_id = self.new_id("f")
        caption_widget = Widget(f"{field_id}_caption", "label", self.take(caption) + ":",
                                Box(0, 0, cap_w, h))
        gap = self.rng.randint(4, 12)
        widget = Widget(field_id, "field", caption, Box(cap_w + gap, 0, box_w, h), value=value)
        return _Block([caption_widget, widget], cap_w + gap + box_w, h, filler)

    def checkbox(self, label: str, value: bool = False, *, filler: bool = False,
                 page: str | None = None) -> _Block:
        w = self.text_w(label) + self.font_px + 24
        h = round(self.font_px * 1.8)
        widget = Widget(self.new_id("c"), "checkbox", self.take(label), Box(0, 0, w, h),
                        value=value, page=page)
        return _Block([widget], w, h, filler)

    def radio_group(self, caption: str, options: tuple[str, ...], selected: int | None,
                    *, filler: bool = False) -> _Block:
        group = self.new_id("g")
        h = round(self.font_px * 1.8)
        widgets = [Widget(group, "label", self.take(caption), Box(0, 0, self.text_w(caption), h))]
        width = self.text_w(caption)
        for i, option in enumerate(options):
            w = self.text_w(option) + self.font_px + 24
            widgets.append(Widget(self.new_id("r"), "radio", self.take(option),
                                  Box(8, (i + 1) * h, w, h), value=i == selected, group=group))
            width = max(width, w + 8)
        return _Block(widgets, width, h * (len(options) + 1), filler)

    def list_block(self, stem: str, count: int, row_px: int, rows_visible: int,
                   *, filler: bool = False) -> _Block:
        items = tuple(f"{stem} {i}" for i in range(count))
        w = self.text_w(items[-1]) + self.rng.randint(60, 110)
        h = rows_visible * row_px + 4  # 2-pixel frame on each side
        self.take(stem)
        widget = Widget(self.new_id("l"), "list", f"{stem} list", Box(0, 0, w, h), items=items)
        return _Block([widget], w, h, filler)

    def slider(self, caption: str, value: int, *, filler: bool = False) -> _Block:
        cap_w = self.text_w(caption)
        h = max(28, self.row_h)
        slider_w = self.rng.randint(200, 340)
        slider_id = self.new_id("s")
        widgets = [Widget(f"{slider_id}_caption", "label", self.take(caption), Box(0, 0, cap_w, h)),
                   Widget(slider_id, "slider", caption, Box(cap_w + 10, 0, slider_w, h),
                          value=value)]
        return _Block(widgets, cap_w + 10 + slider_w, h, filler)


def _pick_family(rng: random.Random, families, builder: _Builder) -> tuple[str, ...]:
    choices = [f for f in families if all(builder.free(label) for label in f)]
    return rng.choice(choices)


def _fillers(rng: random.Random, b: _Builder, count: int) -> list[_Block]:
    """Unrelated widgets, so the target is never the only thing in the window."""
    blocks = []
    for _ in range(count):
        kind = rng.choice(("button", "button", "button", "checkbox", "field", "hover", "radio"))
        if kind == "button":
            family = _pick_family(rng, V.BUTTON_FAMILIES, b)
            blocks.append(b.button(rng.choice(family), filler=True))
        elif kind == "checkbox":
            family = _pick_family(rng, V.CHECKBOX_FAMILIES, b)
            blocks.append(b.checkbox(rng.choice(family), rng.random() < 0.3, filler=True))
        elif kind == "field":
            family = _pick_family(rng, V.FIELD_FAMILIES, b)
            value = rng.choice(V.TYPED_TEXTS) if rng.random() < 0.3 else ""
            blocks.append(b.text_field(rng.choice(family), value, filler=True))
        elif kind == "hover":
            labels = [x for x in V.HOVER_LABELS if b.free(x)]
            if labels:
                blocks.append(b.hover(rng.choice(labels), filler=True))
        else:
            groups = [g for g in V.RADIO_GROUPS if b.free(g[0]) and all(b.free(o) for o in g[1])]
            if groups:
                caption, options = rng.choice(groups)
                blocks.append(b.radio_group(caption, options, rng.randrange(len(options)),
                                            filler=True))
    return blocks


def _distractor_buttons(rng: random.Random, b: _Builder, family: tuple[str, ...],
                        target: str, count: int) -> list[_Block]:
    others = [label for label in family if label != target and b.free(label)]
    rng.shuffle(others)
    return [b.button(label) for label in others[:count]]


class _Spec:
    """What a skill adds: blocks for the flow, special parts, goal and instruction."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self.menus: list[tuple[str, tuple[str, ...]]] = []
        self.tabs: tuple[str, ...] = ()
        self.tab_pages: dict[str, list[tuple[str, bool]]] = {}  # tab -> checkboxes
        self.dialog: dict | None = None
        self.goal_values: dict = {}
        self.goal_events: list[dict] = []
        self.allowed: list[str] = []
        self.instruction = ""
        self.kind = "single"


def _phrase(rng: random.Random, skill: str, **names: str) -> str:
    return rng.choice(V.PHRASES[skill]).format(**names)


def _skill_spec(skill: str, rng: random.Random, b: _Builder, level: Difficulty) -> _Spec:
    s = _Spec()
    n_distract = level.distractors
    if skill in ("click", "double_click", "right_click"):
        family = _pick_family(rng, V.BUTTON_FAMILIES, b)
        target = rng.choice(family)
        block = b.button(target)
        s.blocks = [block, *_distractor_buttons(rng, b, family, target, n_distract)]
        bid = block.widgets[0].id
        s.goal_events = [{"widget": bid, "event": skill}]
        s.allowed = [bid]
        s.instruction = _phrase(rng, skill, L=target)
    elif skill == "hover":
        labels = [x for x in V.HOVER_LABELS if b.free(x)]
        target = rng.choice(labels)
        block = b.hover(target)
        s.blocks = [block]
        for other in [x for x in labels if x != target][:n_distract]:
            s.blocks.append(b.hover(other))
        s.goal_events = [{"widget": block.widgets[0].id, "event": "hover"}]
        s.instruction = _phrase(rng, "hover", L=target)
    elif skill == "tick":
        family = _pick_family(rng, V.CHECKBOX_FAMILIES, b)
        target = rng.choice(family)
        initial = rng.random() < 0.3  # sometimes the task is to clear it
        block = b.checkbox(target, initial)
        s.blocks = [block]
        for other in [x for x in family if x != target][:n_distract]:
            s.blocks.append(b.checkbox(other, rng.random() < 0.5))
        s.goal_values = {block.widgets[0].id: not initial}
        s.instruction = _phrase(rng, "untick" if initial else "tick", L=target)
    elif skill == "radio":
        caption, options = rng.choice(V.RADIO_GROUPS)
        selected = rng.randrange(len(options))
        want = rng.choice([i for i in range(len(options)) if i != selected])
        block = b.radio_group(caption, options, selected)
        s.blocks = [block]
        s.goal_values = {block.widgets[0].id: options[want]}
        s.instruction = _phrase(rng, "radio", O=options[want], G=caption)
    elif skill in ("type_submit", "form"):
        s.kind = "multi"
        n_fields = 1 if skill == "type_submit" else 2
        families = rng.sample([f for f in V.FIELD_FAMILIES], n_fields)
        texts = rng.sample(V.TYPED_TEXTS, n_fields)
        fields = []
        for family, text in zip(families, texts, strict=True):
            caption = rng.choice(family)
            # Only a lone field starts filled in: replacing text costs two more actions.
            prefilled = (rng.choice(V.PREFILLED_TEXTS)
                         if n_fields == 1 and rng.random() < 0.4 else "")
            block = b.text_field(caption, prefilled)
            s.blocks.append(block)
            fields.append((block.widgets[1].id, caption, text))
            for other in [x for x in family if x != caption][:min(1, n_distract)]:
                s.blocks.append(b.text_field(other))
        confirm = rng.choice([x for x in V.CONFIRM_LABELS if b.free(x)])
        button = b.button(confirm)
        s.blocks.append(button)
        bid = button.widgets[0].id
        s.goal_values = {fid: text for fid, _, text in fields}
        s.goal_events = [{"widget": bid, "event": "click", "values": dict(s.goal_values)}]
        s.allowed = [bid]
        if skill == "type_submit":
            s.instruction = _phrase(rng, skill, T=fields[0][2], F=fields[0][1], B=confirm)
        else:
            s.instruction = _phrase(rng, skill, F1=fields[0][1], T1=fields[0][2],
                                    F2=fields[1][1], T2=fields[1][2], B=confirm)
    elif skill == "scroll_select":
        s.kind = "multi"
        stem = rng.choice(V.LIST_STEMS)
        # At least as many rows in view as one scroll moves (5 wheel notches of 3 rows,
        # what UI-TARS' scroll does), so no row can be skipped over; the target is at
        # most three scrolls away.
        rows_visible = rng.randint(15, 17)
        count = rng.randint(40, 90)
        block = b.list_block(stem, count, _row_px(b.font_px), rows_visible)
        target = rng.randint(rows_visible + 2, min(count - 1, rows_visible + 44))
        s.blocks = [block]
        label = f"{stem} {target}"
        s.goal_values = {block.widgets[0].id: label}
        s.instruction = _phrase(rng, skill, I=label)
    elif skill == "slider_apply":
        s.kind = "multi"
        caption = rng.choice(V.SLIDER_CAPTIONS)
        target = rng.choice(tuple(V.SLIDER_TARGETS))
        initial = rng.choice([v for v in range(0, 101, 5)
                              if abs(v - target) > V.SLIDER_TOLERANCE + 5])
        block = b.slider(caption, initial)
        confirm = rng.choice([x for x in ("Apply", "Save", "Done", "Confirm") if b.free(x)])
        button = b.button(confirm)
        s.blocks = [block, button]
        sid, bid = block.widgets[1].id, button.widgets[0].id
        span = [max(0, target - V.SLIDER_TOLERANCE), min(100, target + V.SLIDER_TOLERANCE)]
        s.goal_values = {sid: span}
        s.goal_events = [{"widget": bid, "event": "click", "values": {sid: span}}]
        s.allowed = [bid]
        s.instruction = _phrase(rng, skill, S=caption, P=rng.choice(V.SLIDER_TARGETS[target]),
                                B=confirm)
    elif skill == "menu":
        s.kind = "multi"
        titles = rng.sample(list(V.MENUS), rng.randint(2, min(5, 2 + level.level + 1)))
        s.menus = [(t, V.MENUS[t]) for t in titles]
        title = rng.choice(titles)
        item = rng.choice(V.MENUS[title])
        s.goal_events = [{"menu": title, "item": item, "event": "trigger"}]
        s.instruction = _phrase(rng, skill, M=title, I=item)
    elif skill == "dialog_tick_ok":
        s.kind = "multi"
        family = _pick_family(rng, V.CHECKBOX_FAMILIES, b)
        target = rng.choice(family)
        ok = rng.choice(V.DIALOG_OK)
        s.dialog = {"title": rng.choice(V.DIALOG_TITLES), "checkbox": b.take(target),
                    "ok": b.take(ok), "cancel": b.take(rng.choice(V.DIALOG_CANCEL))}
        s.instruction = _phrase(rng, skill, L=target, OK=ok)
    elif skill == "tab_tick":
        s.kind = "multi"
        tabs = tuple(rng.sample(V.TAB_NAMES, rng.randint(3, 4)))
        families = rng.sample(V.CHECKBOX_FAMILIES, len(tabs))
        s.tabs = tabs
        for tab, family in zip(tabs, families, strict=True):
            labels = [b.take(x) for x in rng.sample(family, 2)]
            s.tab_pages[tab] = [(label, False) for label in labels]
        target_tab = rng.choice(tabs[1:])  # never the tab already open
        target = s.tab_pages[target_tab][rng.randrange(2)][0]
        s.goal_values = {"tabs": target_tab, "__checkbox__": target}
        s.instruction = _phrase(rng, skill, T=target_tab, L=target)
    else:
        raise ValueError(f"unknown skill {skill!r}; choose one of: {', '.join(SKILLS)}")
    return s


def _row_px(font_px: int) -> int:
    return font_px + 10


def _flow(rng: random.Random, blocks: list[_Block], width: int, top: int) -> tuple[list, int]:
    """Place blocks left to right in rows with random gaps; returns (placed, bottom)."""
    placed = []
    x, y, row_h = MARGIN, top, 0
    for block in blocks:
        gap_x = rng.randint(12, 48)
        if x > MARGIN and x + block.width > width - MARGIN:
            x, y, row_h = MARGIN, y + row_h + rng.randint(10, 28), 0
        dy = rng.randint(0, 10)
        placed.append((block, x, y + dy))
        x += block.width + gap_x
        row_h = max(row_h, block.height + dy)
    return placed, y + row_h


def generate(seed: int, difficulty: int | None = None, skill: str | None = None) -> Task:
    """The practice task for `seed` (same seed, same task)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a task seed is a non-negative integer, got {seed!r}")
    rng = random.Random(seed)
    level = DIFFICULTIES[rng.randint(0, 3) if difficulty is None else difficulty]
    if skill is None:
        skill = rng.choice(SINGLE_SKILLS) if rng.random() < 0.45 else rng.choice(MULTI_SKILLS)
    font_px = rng.randint(*level.font_px)
    b = _Builder(rng, font_px)
    spec = _skill_spec(skill, rng, b, level)
    fillers = _fillers(rng, b, rng.randint(*level.fillers))
    blocks = spec.blocks + fillers
    rng.shuffle(blocks)

    widgets: list[Widget] = []
    top = 0
    if spec.menus or rng.random() < 0.3:
        menus = spec.menus or [(t, V.MENUS[t]) for t in rng.sample(list(V.MENUS), 2)
                               if all(b.free(i) for i in V.MENUS[t])]
        top = _menu_bar(b, menus, widgets)
        if spec.menus:
            title, item = spec.goal_events[0]["menu"], spec.goal_events[0]["item"]
            menu = next(w for w in widgets if w.kind == "menu" and w.label == title)
            item_w = next(w for w in widgets if w.kind == "menu_item" and w.parent == menu.id
                          and w.label == item)
            spec.goal_events = [{"widget": item_w.id, "event": "trigger"}]
            spec.allowed = [item_w.id]
    widest = max([blk.width for blk in blocks] + [300])
    width = max(rng.randint(520, 980), widest + 2 * MARGIN)
    if spec.tabs:
        top = _tabs(b, spec, widgets, top, width)
    placed, bottom = _flow(rng, blocks, width, top + rng.randint(10, 30))
    # Too tall for the screen: drop filler blocks until it fits.
    while bottom > MAX_WINDOW[1] - 80 and any(blk.filler for blk, _, _ in placed):
        blocks = [blk for blk in blocks if blk is not next(p for p, _, _ in placed if p.filler)]
        placed, bottom = _flow(rng, blocks, width, top + 20)
    for block, bx, by in placed:
        for w in block.widgets:
            widgets.append(_moved(w, bx, by))
    status_h = font_px + 12
    status_y = bottom + rng.randint(14, 40)
    height = max(rng.randint(360, 560), status_y + status_h + 12)
    if spec.dialog is not None:
        height = max(height, _dialog(b, spec, widgets, width, height, top))
    widgets.append(Widget("status", "status", "", Box(MARGIN, height - status_h - 10,
                                                      width - 2 * MARGIN, status_h)))
    if width > MAX_WINDOW[0] or height > MAX_WINDOW[1]:
        raise AssertionError(f"seed {seed}: window {width}x{height} too large")  # a bug here
    if "__checkbox__" in spec.goal_values:
        label = spec.goal_values.pop("__checkbox__")
        target = next(w for w in widgets if w.kind == "checkbox" and w.label == label)
        spec.goal_values[target.id] = True
    layout = Layout(width=width, height=height, place=(rng.random(), rng.random()),
                    font_px=font_px, background=_colour(rng, (0.88, 0.97), (0.1, 0.4)),
                    text_colour=_colour(rng, (0.08, 0.2), (0.0, 0.3)),
                    widgets=tuple(widgets), list_row_px=_row_px(font_px))
    goal = Goal(values=spec.goal_values, events=tuple(spec.goal_events),
                allowed=tuple(spec.allowed))
    return Task(seed=seed, kind=spec.kind, skill=skill, instruction=spec.instruction,
                layout=layout, goal=goal, difficulty=level.level)


def _moved(w: Widget, dx: int, dy: int) -> Widget:
    return replace(w, box=Box(w.box.x + dx, w.box.y + dy, w.box.width, w.box.height))


def _menu_bar(b: _Builder, menus, widgets: list[Widget]) -> int:
    """Menu titles along the top, each with its drop-down items; returns the bar's bottom."""
    bar_h = b.font_px + 14
    x = 4
    for title, items in menus:
        w = b.text_w(title) + 16
        menu_id = b.new_id("m")
        widgets.append(Widget(menu_id, "menu", b.take(title), Box(x, 0, w, bar_h)))
        item_w = max(b.text_w(i) for i in items) + 40
        item_h = b.font_px + 14
        for i, item in enumerate(items):
            widgets.append(Widget(f"{menu_id}_{i}", "menu_item", b.take(item),
                                  Box(x, bar_h + 2 + i * item_h, item_w, item_h), parent=menu_id))
        x += w
    return bar_h


def _tabs(b: _Builder, spec: _Spec, widgets: list[Widget], top: int, width: int) -> int:
    """A tab bar and, under it, each tab's page of checkboxes; returns the pages' bottom."""
    tab_h = b.font_px + 16
    x, y = MARGIN, top + 10
    page_top = y + tab_h + 12
    bottom = page_top
    for i, tab in enumerate(spec.tabs):
        w = b.text_w(tab) + 28
        tab_id = f"t{i}"
        widgets.append(Widget(tab_id, "tab", b.take(tab), Box(x, y, w, tab_h), value=i == 0,
                              group="tabs"))
        x += w
        cy = page_top
        for label, checked in spec.tab_pages[tab]:
            block = b.checkbox(label, checked, page=tab_id)
            widgets.append(_moved(block.widgets[0], MARGIN + 12, cy))
            cy += block.height + 10
        bottom = max(bottom, cy)
    return bottom


def _dialog(b: _Builder, spec: _Spec, widgets: list[Widget], width: int, height: int,
            top: int) -> int:
    """The modal panel and its children; returns the window height it needs."""
    d = spec.dialog
    rng = b.rng
    pad = 18
    title_h = b.font_px + 12
    check = b.checkbox(d["checkbox"]).widgets[0]
    ok, cancel = d["ok"], d["cancel"]
    ok_w, cancel_w = b.text_w(ok) + 2 * b.font_px, b.text_w(cancel) + 2 * b.font_px
    dw = max(b.text_w(d["title"]), check.box.width, ok_w + cancel_w + 16) + 2 * pad + 40
    dh = pad + title_h + 14 + check.box.height + 20 + b.row_h + pad
    dx = rng.randint(MARGIN, max(MARGIN, width - dw - MARGIN))
    dy = rng.randint(top + 10, max(top + 10, height - dh - 60))
    did = DIALOG_ID
    widgets.append(Widget(did, "dialog", d["title"], Box(dx, dy, dw, dh),
                          colour=_colour(rng, (0.93, 0.99), (0.0, 0.2))))
    widgets.append(Widget(f"{did}_title", "label", d["title"],
                          Box(dx + pad, dy + pad, dw - 2 * pad, title_h), parent=did))
    cy = dy + pad + title_h + 14
    check = replace(check, box=Box(dx + pad, cy, check.box.width, check.box.height), parent=did)
    widgets.append(check)
    by = cy + check.box.height + 20
    ok_widget = Widget(b.new_id("b"), "button", ok,
                       Box(dx + dw - pad - ok_w, by, ok_w, b.row_h), parent=did,
                       colour=_colour(rng, (0.6, 0.8)))
    cancel_widget = Widget(b.new_id("b"), "button", cancel,
                           Box(dx + dw - pad - ok_w - 16 - cancel_w, by, cancel_w, b.row_h),
                           parent=did, colour=_colour(rng, (0.8, 0.92)))
    widgets += [ok_widget, cancel_widget]
    spec.goal_values = {check.id: True}
    spec.goal_events = [{"widget": ok_widget.id, "event": "click", "values": {check.id: True}}]
    spec.allowed = [ok_widget.id]
    return dy + dh + 60
