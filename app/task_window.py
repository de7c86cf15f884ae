"""A practice task's window, rendered with Qt from its layout (agent/tasks).

Every widget sits at the rectangle the generator chose (absolute geometry, no layout
managers), in a fixed font, style and palette, so the window looks the same on the
real screen and offscreen, and the pure model in agent/tasks/simulate.py predicts it.
Menus and the modal dialog are drawn inside the window (a drop-down panel; a panel
over a dimmed backdrop that takes every click) rather than as separate top-level
windows, so no window manager decides where they go.

`state()` reports the schema of agent/tasks/state.py: each widget's rectangle in
screen pixels, every value, the focus, and the events that happened (clicks, double
and right clicks, hovers, menu triggers) with the values at that moment — what the
checker judges and the expert aims with.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from agent.tasks.checker import initial_values
from agent.tasks.layout import DIALOG_ID, Task, Widget
from agent.tasks.state import STATE_VERSION, rect

Qt = QtCore.Qt
FONT_FAMILY = "DejaVu Sans"  # installed with the fonts scripts/setup.sh pulls in


def prepare_application(app: QtWidgets.QApplication) -> None:
    """One style and palette whatever the platform, so renders match pixel for pixel."""
    if app.property("deskpilot_task_style"):
        return  # setting a style repolishes every widget: once is enough
    app.setProperty("deskpilot_task_style", True)
    app.setStyle("Fusion")
    app.setPalette(app.style().standardPalette())
    app.setCursorFlashTime(0)  # a steady text cursor: a blink would differ frame to frame


def _darker(colour: str, factor: int = 130) -> str:
    return QtGui.QColor(colour).darker(factor).name()


class _Button(QtWidgets.QPushButton):
    """A button that reports clicks, double clicks and right clicks."""

    def __init__(self, text: str, parent: QtWidgets.QWidget, report: Callable[[str], None]):
        super().__init__(text, parent)
        self._report = report
        self.clicked.connect(lambda: report("click"))

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self._report("double_click")
        super().mouseDoubleClickEvent(event)

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self._report("right_click")
        super().mousePressEvent(event)


class _HoverCard(QtWidgets.QLabel):
    def __init__(self, text: str, parent: QtWidgets.QWidget, on_enter: Callable[[], None]):
        super().__init__(text, parent)
        self._on_enter = on_enter

    def enterEvent(self, event) -> None:  # noqa: N802
        self._on_enter()
        super().enterEvent(event)


class _Blocker(QtWidgets.QWidget):
    """Takes every mouse press under it: the modal backdrop, or the click that only
    closes an open menu."""

    def __init__(self, parent: QtWidgets.QWidget, on_press: Callable[[], None] | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._on_press = on_press

    def mousePressEvent(self, event) -> None:  # noqa: N802
        event.accept()
        if self._on_press is not None:
            self._on_press()

    def wheelEvent(self, event) -> None:  # noqa: N802
        event.accept()


class TaskWindow(QtWidgets.QWidget):
    """The window of one practice task; `on_change` runs after every change of state."""

    def __init__(self, task: Task, on_change: Callable[[], None] | None = None):
        super().__init__()
        self.task = task
        self.layout_ = task.layout
        self.on_change = on_change
        self.events: list[dict] = []
        self.values = initial_values(self.layout_)
        self.hovered: set[str] = set()
        self.open_menu: str | None = None
        self.widgets: dict[str, QtWidgets.QWidget] = {}
        self.groups: dict[str, QtWidgets.QButtonGroup] = {}
        self.origin: Callable[[], tuple[int, int]] | None = None  # None: Qt's global position
        self.setObjectName("taskwindow")
        self.setWindowTitle(task.instruction)
        self.setFixedSize(self.layout_.width, self.layout_.height)
        font = QtGui.QFont(FONT_FAMILY)
        font.setPixelSize(self.layout_.font_px)
        font.setHintingPreference(QtGui.QFont.HintingPreference.PreferNoHinting)
        self.setFont(font)
        # The window itself holds the focus until a field is clicked: otherwise Qt would
        # focus the first field when (and only if) a window manager activates the window.
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._build()

    # --- building -----------------------------------------------------------------------

    def _style(self) -> str:
        lay = self.layout_
        return (
            f"#taskwindow {{ background: {lay.background}; }}"
            f"QLabel, QCheckBox, QRadioButton {{ color: {lay.text_colour}; }}"
            "QLineEdit, QListWidget { background: #ffffff; color: #111111;"
            " border: 1px solid #8a8a8a; border-radius: 3px; }"
            "QLineEdit { padding: 0 4px; }"
            "QListWidget::item:selected { background: #3b78d8; color: #ffffff; }"
            "#menubar { background: #f4f4f4; border-bottom: 1px solid #c8c8c8; }"
            "#menutitle { border: none; padding: 0; background: transparent; color: #111111; }"
            "#menutitle:hover, #menutitle[open=\"true\"] { background: #dde6f5; }"
            "#dropdown { background: #ffffff; border: 1px solid #9a9a9a; }"
            "#menuitem { border: none; text-align: left; padding-left: 14px;"
            " background: #ffffff; color: #111111; }"
            "#menuitem:hover { background: #3b78d8; color: #ffffff; }"
            "#backdrop { background: rgba(20, 20, 30, 110); }"
            "#status { color: #333333; }"
        )

    def _build(self) -> None:
        self.setStyleSheet(self._style())
        widgets = self.layout_.widgets
        page_children: dict[str, list[QtWidgets.QWidget]] = {}
        for w in widgets:
            if w.kind in ("menu", "menu_item", "tab", "dialog") or w.parent == DIALOG_ID:
                continue
            made = self._make(w, self)
            if made is not None:
                self.widgets[w.id] = made
                if w.page is not None:
                    page_children.setdefault(w.page, []).append(made)
        self._build_tabs([w for w in widgets if w.kind == "tab"], page_children)
        self._build_menus([w for w in widgets if w.kind == "menu"])
        self._build_dialog([w for w in widgets if w.kind == "dialog" or w.parent == DIALOG_ID])

    def _place(self, q: QtWidgets.QWidget, w: Widget, dx: int = 0, dy: int = 0) -> None:
        q.setGeometry(w.box.x - dx, w.box.y - dy, w.box.width, w.box.height)
        q.setObjectName(q.objectName() or w.id)

    def _make(self, w: Widget, parent: QtWidgets.QWidget, dx: int = 0,
              dy: int = 0) -> QtWidgets.QWidget | None:
        if w.kind == "button":
            q = _Button(w.label, parent, lambda event, wid=w.id: self._event(wid, event))
            border = _darker(w.colour)
            q.setStyleSheet(f"QPushButton {{ background: {w.colour}; color: #111111;"
                            f" border: 1px solid {border}; border-radius: 4px; padding: 0; }}"
                            f"QPushButton:pressed {{ background: {border}; }}")
            if w.parent == DIALOG_ID:
                q.clicked.connect(self._close_dialog)
        elif w.kind in ("label", "status"):
            q = QtWidgets.QLabel(w.label, parent)
            q.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
            if w.kind == "status":
                q.setObjectName("status")
                self.status = q
        elif w.kind == "field":
            q = QtWidgets.QLineEdit(parent)
            q.setText(w.value or "")
            q.setCursorPosition(len(w.value or ""))
            q.textChanged.connect(lambda text, wid=w.id: self._set(wid, text))
            q.selectionChanged.connect(self._changed)
            q.installEventFilter(self)  # focus is part of the state
        elif w.kind == "checkbox":
            q = QtWidgets.QCheckBox(w.label, parent)
            q.setChecked(bool(w.value))
            q.toggled.connect(lambda on, wid=w.id: self._set(wid, on))
        elif w.kind == "radio":
            q = QtWidgets.QRadioButton(w.label, parent)
            group = self.groups.get(w.group)
            if group is None:
                group = self.groups[w.group] = QtWidgets.QButtonGroup(self)
                group.buttonToggled.connect(
                    lambda button, on, gid=w.group: on and self._set(gid, button.text()))
            group.addButton(q)
            q.setChecked(bool(w.value))
        elif w.kind == "list":
            q = QtWidgets.QListWidget(parent)
            q.setUniformItemSizes(True)
            q.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            for label in w.items:
                item = QtWidgets.QListWidgetItem(label)
                item.setSizeHint(QtCore.QSize(10, self.layout_.list_row_px))
                q.addItem(item)
            q.itemSelectionChanged.connect(lambda lw=q, wid=w.id: self._set(
                wid, lw.selectedItems()[0].text() if lw.selectedItems() else None))
            q.verticalScrollBar().valueChanged.connect(self._changed)
        elif w.kind == "slider":
            q = QtWidgets.QSlider(Qt.Orientation.Horizontal, parent)
            q.setRange(0, 100)
            q.setPageStep(10)
            q.setValue(int(w.value or 0))
            q.valueChanged.connect(lambda v, wid=w.id: self._set(wid, v))
        elif w.kind == "hover":
            q = _HoverCard(w.label, parent, lambda wid=w.id: self._hover(wid))
            q.setAlignment(Qt.AlignmentFlag.AlignCenter)
            q.setStyleSheet(f"QLabel {{ background: {w.colour}; border: 1px dashed "
                            f"{_darker(w.colour, 160)}; border-radius: 6px; color: #111111; }}")
        else:
            return None
        self._place(q, w, dx, dy)
        return q

    def _build_tabs(self, tabs: list[Widget], pages: dict[str, list[QtWidgets.QWidget]]) -> None:
        if not tabs:
            return
        bar = QtWidgets.QTabBar(self)
        bar.setExpanding(False)
        bar.setDrawBase(True)
        for t in tabs:
            bar.addTab(t.label)
        first = tabs[0].box
        bar.setGeometry(first.x, first.y, self.layout_.width - 2 * first.x, first.height)
        bar.setObjectName("tabs")
        self.tab_bar, self.tab_ids, self.pages = bar, [t.id for t in tabs], pages

        def show_page(index: int) -> None:
            for i, tab_id in enumerate(self.tab_ids):
                for child in pages.get(tab_id, []):
                    child.setVisible(i == index)
            if index >= 0:
                self._set("tabs", bar.tabText(index))

        bar.currentChanged.connect(show_page)
        show_page(bar.currentIndex())

    def _build_menus(self, menus: list[Widget]) -> None:
        self.menu_titles: dict[str, QtWidgets.QPushButton] = {}
        self.dropdowns: dict[str, QtWidgets.QFrame] = {}
        if not menus:
            return
        # Under the open drop-down: a click elsewhere only closes it, as in any menu.
        self.menu_catcher = _Blocker(self, self._close_menu)
        self.menu_catcher.setGeometry(0, 0, self.layout_.width, self.layout_.height)
        self.menu_catcher.hide()
        bar = QtWidgets.QFrame(self)
        bar.setObjectName("menubar")
        bar.setGeometry(0, 0, self.layout_.width, menus[0].box.height)
        self.menu_bar = bar
        for m in menus:
            title = QtWidgets.QPushButton(m.label, bar)
            title.setObjectName("menutitle")
            title.setGeometry(m.box.x, 0, m.box.width, m.box.height)
            title.clicked.connect(lambda _=False, mid=m.id: self._toggle_menu(mid))
            self.menu_titles[m.id] = title
            self.widgets[m.id] = title
            items = [w for w in self.layout_.widgets if w.kind == "menu_item" and w.parent == m.id]
            top = min(i.box.y for i in items)
            drop = QtWidgets.QFrame(self)
            drop.setObjectName("dropdown")
            width = max(i.box.width for i in items)
            drop.setGeometry(m.box.x, top - 1, width + 2, sum(i.box.height for i in items) + 2)
            for i in items:
                button = QtWidgets.QPushButton(i.label, drop)
                button.setObjectName("menuitem")
                button.setGeometry(1, i.box.y - top + 1, i.box.width, i.box.height)
                button.clicked.connect(lambda _=False, iid=i.id: self._trigger(iid))
                self.widgets[i.id] = button
            drop.hide()
            self.dropdowns[m.id] = drop

    def _build_dialog(self, parts: list[Widget]) -> None:
        self.dialog_open = False
        if not parts:
            return
        panel_w = next(w for w in parts if w.kind == "dialog")
        self.backdrop = _Blocker(self)
        self.backdrop.setObjectName("backdrop")
        self.backdrop.setGeometry(0, 0, self.layout_.width, self.layout_.height)
        panel = QtWidgets.QFrame(self)
        panel.setObjectName("dialog")
        panel.setStyleSheet(f"#dialog {{ background: {panel_w.colour}; border: 1px solid "
                            f"{_darker(panel_w.colour, 170)}; border-radius: 8px; }}")
        self._place(panel, panel_w)
        self.widgets[panel_w.id] = panel
        for w in parts:
            if w.kind == "dialog":
                continue
            made = self._make(w, panel, panel_w.box.x, panel_w.box.y)
            if w.kind == "label":
                font = made.font()
                font.setBold(True)
                made.setFont(font)
            self.widgets[w.id] = made
        self.dialog_panel = panel
        self.dialog_open = True

    # --- reacting -----------------------------------------------------------------------

    def _describe(self, widget_id: str, event: str) -> str:
        label = self.layout_.widget(widget_id).label
        return {"click": f"Clicked {label}", "double_click": f"Double-clicked {label}",
                "right_click": f"Right-clicked {label}", "hover": f"Pointer on {label}",
                "trigger": f"Chose {label}"}.get(event, f"{event} {label}")

    def _event(self, widget_id: str, event: str) -> None:
        self.events.append({"widget": widget_id, "event": event, "values": dict(self.values)})
        if hasattr(self, "status"):
            self.status.setText(self._describe(widget_id, event))
        self._changed()

    def _hover(self, widget_id: str) -> None:
        self.hovered.add(widget_id)
        card = self.widgets.get(widget_id)
        if card is not None:
            card.setText(f"{self.layout_.widget(widget_id).label} (seen)")
        self._event(widget_id, "hover")

    def _set(self, key: str, value) -> None:
        self.values[key] = value
        self._changed()

    def _toggle_menu(self, menu_id: str) -> None:
        self._show_menu(None if self.open_menu == menu_id else menu_id)

    def _close_menu(self) -> None:
        self._show_menu(None)

    def _show_menu(self, menu_id: str | None) -> None:
        self.open_menu = menu_id
        for mid, drop in self.dropdowns.items():
            drop.setVisible(mid == menu_id)
            title = self.menu_titles[mid]
            title.setProperty("open", mid == menu_id)
            title.style().unpolish(title)
            title.style().polish(title)
        self.menu_catcher.setVisible(menu_id is not None)
        if menu_id is not None:
            self.menu_catcher.raise_()
            self.menu_bar.raise_()
            self.dropdowns[menu_id].raise_()
        self._changed()

    def _trigger(self, item_id: str) -> None:
        self._event(item_id, "trigger")
        self._close_menu()

    def _close_dialog(self) -> None:
        self.dialog_open = False
        self.backdrop.hide()
        self.dialog_panel.hide()
        self._changed()

    def _changed(self, *_args) -> None:
        if self.on_change is not None:
            self.on_change()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        if event.type() in (QtCore.QEvent.Type.FocusIn, QtCore.QEvent.Type.FocusOut):
            QtCore.QTimer.singleShot(0, self._changed)  # once focusWidget() has moved
        return super().eventFilter(watched, event)

    def moveEvent(self, event) -> None:  # noqa: N802 - geometry is part of the state
        super().moveEvent(event)
        self._changed()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.setFocus(Qt.FocusReason.OtherFocusReason)
        # The window manager may still move the window after the first show.
        QtCore.QTimer.singleShot(200, self._changed)

    # --- state --------------------------------------------------------------------------

    def _origin(self) -> tuple[int, int]:
        if self.origin is not None:
            return self.origin()
        top_left = self.mapToGlobal(QtCore.QPoint(0, 0))
        return top_left.x(), top_left.y()

    def _rect(self, widget: QtWidgets.QWidget, local: QtCore.QRect | None = None) -> dict:
        """A widget's rect (or a sub-rect of it) in screen pixels."""
        local = local or widget.rect()
        top_left = widget.mapTo(self, local.topLeft())
        ox, oy = self._origin()
        dpr = self.devicePixelRatioF()
        return rect((ox + top_left.x()) * dpr, (oy + top_left.y()) * dpr,
                    local.width() * dpr, local.height() * dpr)

    def _click_rect(self, q: QtWidgets.QWidget, kind: str) -> QtCore.QRect | None:
        """Where a checkbox or radio button reacts: its indicator and text, not its box."""
        element = {"checkbox": QtWidgets.QStyle.SubElement.SE_CheckBoxClickRect,
                   "radio": QtWidgets.QStyle.SubElement.SE_RadioButtonClickRect}.get(kind)
        if element is None:
            return None
        option = QtWidgets.QStyleOptionButton()
        q.initStyleOption(option)
        return q.style().subElementRect(element, option, q)

    def _slider_handle(self, slider: QtWidgets.QSlider) -> QtCore.QRect:
        option = QtWidgets.QStyleOptionSlider()
        slider.initStyleOption(option)
        return slider.style().subControlRect(QtWidgets.QStyle.ComplexControl.CC_Slider, option,
                                             QtWidgets.QStyle.SubControl.SC_SliderHandle, slider)

    def _list_rows(self, lw: QtWidgets.QListWidget, items: tuple[str, ...]) -> list[dict]:
        viewport = lw.viewport()
        area = viewport.rect()
        rows = []
        first = lw.indexAt(QtCore.QPoint(2, 2)).row()
        for row in range(max(0, first), len(items)):
            r = lw.visualItemRect(lw.item(row))
            if r.top() >= area.bottom():
                break
            if area.contains(r):  # fully visible only
                rows.append({"row": row, "label": items[row], **self._rect(viewport, r)})
        return rows

    def _shown(self, w: Widget) -> bool:
        if w.kind == "tab":
            return True
        q = self.widgets.get(w.id)
        return bool(q is not None and q.isVisibleTo(self))

    def state(self) -> dict:
        widgets = {}
        for w in self.layout_.widgets:
            entry = {"kind": w.kind, "label": w.label, "shown": self._shown(w)}
            if w.kind == "tab":
                index = self.tab_ids.index(w.id)
                entry.update(self._rect(self.tab_bar, self.tab_bar.tabRect(index)))
            else:
                q = self.widgets[w.id]
                entry.update(self._rect(q, self._click_rect(q, w.kind)))
                if w.kind == "list":
                    entry["rows"] = self._list_rows(q, w.items)
                elif w.kind == "slider":
                    entry["handle"] = self._rect(q, self._slider_handle(q))
            widgets[w.id] = entry
        # The window's own focus child: without a window manager the window may never
        # become "active", yet X still delivers the keys to it.
        focus = self.focusWidget()
        focus_id = next((wid for wid, q in self.widgets.items()
                         if q is focus and isinstance(q, QtWidgets.QLineEdit)), None)
        return {
            "version": STATE_VERSION,
            "task_seed": self.task.seed,
            "title": self.windowTitle(),  # the instruction
            "visible": self.isVisible(),
            "device_pixel_ratio": self.devicePixelRatioF(),
            "window": self._rect(self),
            "widgets": widgets,
            "values": dict(self.values),
            "focus": focus_id,
            "selection": focus.selectedText() if focus_id else "",
            "open_menu": self.open_menu,
            "dialog_open": self.dialog_open,
            "events": [dict(e) for e in self.events],
        }
