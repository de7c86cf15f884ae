"""Label sets and instruction phrasings for the practice tasks.

Labels come in families of look-alikes ("Save", "Save As", "Autosave"): a task's target
is drawn from one family and its distractors from the same family, so reading the label
exactly is what the task tests. Every instruction has several phrasings, the way people
actually write them.
"""

from __future__ import annotations

BUTTON_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("Save", "Save As", "Save All", "Autosave"),
    ("Open", "Open Recent", "Reopen", "Open Folder"),
    ("Delete", "Delete All", "Undelete"),
    ("Export", "Export PDF", "Import", "Exports"),
    ("Settings", "Reset", "Set Up"),
    ("Print", "Print Preview", "Sprint"),
    ("Next", "Next Page", "Text"),
    ("Copy", "Copy Link", "Copies"),
    ("Refresh", "Refresh All", "Fresh Start"),
    ("Upload", "Upload File", "Unload"),
    ("Share", "Share Link", "Shared"),
    ("Archive", "Archived", "Unarchive"),
    ("Connect", "Disconnect", "Reconnect"),
    ("Preview", "Review", "Previous"),
    ("Rename", "Rename All", "Renew"),
)
CONFIRM_LABELS = ("Submit", "Send", "Apply", "Done", "Confirm", "Continue")
DIALOG_OK = ("OK", "Continue", "Confirm", "Done")
DIALOG_CANCEL = ("Cancel", "Not now", "Close")
DIALOG_TITLES = ("Before you continue", "One more thing", "Preferences", "Sign in",
                 "Almost done")

CHECKBOX_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("Remember me", "Remember password", "Remember device"),
    ("Enable logging", "Enable sync", "Enable sounds"),
    ("Show hidden files", "Show line numbers", "Show toolbar"),
    ("Dark mode", "Dark theme", "Dim screen"),
    ("Auto update", "Auto save", "Auto start"),
    ("Send reports", "Send receipts", "Send alerts"),
    ("Keep me signed in", "Keep history", "Keep backups"),
    ("Notify me", "Notify others", "Notify daily"),
)
FIELD_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("Name", "Username", "Nickname"),
    ("Email", "Backup email", "Work email"),
    ("City", "Country", "Region"),
    ("Title", "Subtitle", "Job title"),
    ("Phone", "Mobile", "Fax"),
    ("Company", "Team", "Department"),
    ("Project", "Project code", "Product"),
    ("Address", "Zip code", "Street"),
)
TYPED_TEXTS = ("hello", "deskpilot", "Berlin", "alice@example.com", "Q3 report", "blue sky",
               "42", "Ada Lovelace", "Tokyo", "build 7", "rosa", "North wing", "A-113",
               "green tea", "Lima", "2026-05-01", "ops team", "hello world")
PREFILLED_TEXTS = ("old value", "TODO", "draft", "n/a", "unknown", "test")

RADIO_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Size", ("Small", "Medium", "Large")),
    ("Priority", ("Low", "Normal", "High")),
    ("Frequency", ("Daily", "Weekly", "Monthly")),
    ("Colour", ("Red", "Green", "Blue")),
    ("Align", ("Left", "Center", "Right")),
    ("Format", ("PNG", "JPEG", "WebP")),
)
MENUS: dict[str, tuple[str, ...]] = {
    "File": ("New", "Open File", "Save Copy", "Close Window"),
    "Edit": ("Undo", "Redo", "Cut", "Paste"),
    "View": ("Zoom In", "Zoom Out", "Full Screen"),
    "Tools": ("Export", "Import", "Options", "Export Log"),
    "Help": ("About", "Docs", "Check Updates"),
}
TAB_NAMES = ("General", "Advanced", "Display", "Network", "Privacy", "Sounds")
HOVER_LABELS = ("Help", "Info", "Tip", "Details", "Hint", "Notes")
SLIDER_CAPTIONS = ("Volume", "Brightness", "Zoom", "Opacity", "Speed", "Contrast")
LIST_STEMS = ("Item", "Track", "Photo", "Order", "Ticket")

# Slider targets: value -> how people say it.
SLIDER_TARGETS: dict[int, tuple[str, ...]] = {
    25: ("about a quarter", "roughly 25%"),
    50: ("halfway", "the middle"),
    75: ("about three quarters", "roughly 75%"),
    100: ("all the way to the right", "the maximum"),
}
SLIDER_TOLERANCE = 8

PHRASES: dict[str, tuple[str, ...]] = {
    "click": ("Click {L}", "Press the {L} button", "Click the '{L}' button", "Hit {L}.",
              "Please click on {L}"),
    "double_click": ("Double-click {L}", "Double-click the {L} button",
                     "Give {L} a double click"),
    "right_click": ("Right-click {L}", "Right-click the {L} button",
                    "Open the context menu of the {L} button"),
    "hover": ("Hover over {L}", "Move the mouse over the {L} card",
              "Rest the pointer on {L}"),
    "tick": ("Tick '{L}'", "Check the '{L}' box", "Turn on {L}"),
    "untick": ("Untick '{L}'", "Clear the '{L}' checkbox", "Turn off {L}"),
    "radio": ("Select '{O}' under {G}", "Choose {O} for {G}", "Set {G} to {O}"),
    "type_submit": ("Type '{T}' into the {F} field and press {B}",
                    "Enter '{T}' as {F}, then click {B}",
                    "Fill in {F} with '{T}' and hit {B}"),
    "form": ("Set {F1} to '{T1}' and {F2} to '{T2}', then click {B}",
             "Fill in {F1} ('{T1}') and {F2} ('{T2}') and press {B}"),
    "scroll_select": ("Scroll the list to {I} and select it", "Find {I} in the list and click it",
                      "Select {I} in the list"),
    "slider_apply": ("Drag the {S} slider to {P}, then press {B}", "Set {S} to {P} and click {B}",
                     "Move {S} to {P} and hit {B}"),
    "menu": ("Open the {M} menu and choose {I}", "From the {M} menu, pick {I}",
             "Choose {M} > {I}"),
    "dialog_tick_ok": ("Tick '{L}', then {OK}", "In the dialog, check '{L}' and press {OK}",
                       "Tick '{L}' in the dialog and confirm with {OK}"),
    "tab_tick": ("On the {T} tab, tick '{L}'", "Switch to the {T} tab and turn on {L}",
                 "Go to {T} and check '{L}'"),
}
