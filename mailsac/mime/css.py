"""Inline CSS (``style="..."``) of untrusted mail, reduced to what cannot fetch or run.

A declaration is kept when its property is on :data:`STYLE_PROPERTIES` and its value has no
escapes, no at-rules and no functions other than colours, ``calc`` and gradients (so no
``url()``, ``image-set()``, ``expression()``, ``attr()``, ``var()``...). Positioning is never
kept, nor negative margins, so nothing is placed outside its box.

Partner rule: a background and the text colour drawn on it go together. When a background
declaration is dropped, its colour is kept as ``background-color`` if the value names one;
otherwise the element's ``color`` is dropped too (light text would end up on the page's
white), unless that colour reads on both white and black. When a ``color`` is dropped, the
backgrounds go as well.

Every step is a single forward pass (no backtracking patterns), and styles longer than
:data:`MAX_STYLE_CHARS` are dropped whole, so cost is linear and bounded.
"""

from __future__ import annotations

import re

__all__ = ["MAX_STYLE_CHARS", "STYLE_PROPERTIES", "sanitize_style"]

MAX_STYLE_CHARS = 16_384
MAX_VALUE_CHARS = 1_024

_SIDES = ("top", "right", "bottom", "left")
_CORNERS = ("top-left", "top-right", "bottom-right", "bottom-left")
STYLE_PROPERTIES = frozenset(
    {
        "color", "background", "background-color",
        "font", "font-family", "font-size", "font-style", "font-weight", "font-variant",
        "line-height", "letter-spacing", "word-spacing", "text-align", "text-decoration",
        "text-decoration-color", "text-decoration-line", "text-decoration-style",
        "text-indent", "text-transform", "text-shadow", "text-overflow", "vertical-align",
        "white-space", "word-wrap", "word-break", "overflow-wrap", "direction",
        "margin", "padding", "border", "border-color", "border-style", "border-width",
        "border-collapse", "border-spacing", "border-radius", "box-shadow", "box-sizing",
        "outline", "width", "height", "max-width", "min-width", "max-height", "min-height",
        "display", "table-layout", "float", "clear", "list-style-type", "list-style-position",
        "caption-side", "empty-cells",
    }
    | {f"margin-{s}" for s in _SIDES} | {f"padding-{s}" for s in _SIDES}
    | {f"border-{s}{p}" for s in _SIDES for p in ("", "-color", "-style", "-width")}
    | {f"border-{c}-radius" for c in _CORNERS}
)  # fmt: skip
_FUNCTIONS = frozenset(
    {
        "rgb", "rgba", "hsl", "hsla", "calc", "linear-gradient", "radial-gradient",
        "repeating-linear-gradient", "repeating-radial-gradient",
    }
)  # fmt: skip
_DISPLAY = frozenset(
    {
        "none", "block", "inline", "inline-block", "list-item", "flex", "inline-flex",
        "table", "inline-table", "table-row", "table-cell", "table-row-group",
        "table-header-group", "table-footer-group", "table-column", "table-column-group",
        "table-caption",
    }
)  # fmt: skip
_QUOTES_OK = frozenset({"font", "font-family"})
# CSS's named colours (lower case), for finding the colour in a dropped background.
_NAMED_COLOURS = frozenset(
    """aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue
    blueviolet brown burlywood cadetblue chartreuse chocolate coral cornflowerblue cornsilk
    crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen darkgrey darkkhaki
    darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
    darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue
    dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite
    gold goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory khaki
    lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
    lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen
    lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime limegreen linen
    magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream
    mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
    palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum
    powderblue purple rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown
    seagreen seashell sienna silver skyblue slateblue slategray slategrey snow springgreen
    steelblue tan teal thistle tomato turquoise violet wheat white whitesmoke yellow
    yellowgreen""".split()
)

# Tokenisers: every alternative starts with a different character class and the greedy
# runs exclude what ends them, so a match never backtracks (linear on any input).
_STYLE_TOKEN = re.compile(
    r"""/\*.*?(?:\*/|\Z)|"[^"]*"?|'[^']*'?|;|[^"';/]+|/""", re.DOTALL
)
_VALUE_TOKEN = re.compile(r"[A-Za-z0-9_-]+\(?|\(|[^A-Za-z0-9_(-]+")
_FORBIDDEN = re.compile(r"[\\@<>{}\[\];!`\x00-\x08\x0b\x0e-\x1f\x7f]")
# Words that never belong in a kept value, even where a browser would not call them.
_BANNED = re.compile(r"url|image-set|expression|javascript|binding|behavior", re.IGNORECASE)
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}")
_FUNCTION_COLOUR = re.compile(r"(?:rgba?|hsla?)\([0-9a-zA-Z.,%/ +-]{1,80}\)", re.IGNORECASE)
_BACKGROUNDS = ("background", "background-color")
_RGB_FUNCTION = re.compile(r"rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)")
_BASIC_COLOURS = {
    "black": "000000", "silver": "c0c0c0", "gray": "808080", "grey": "808080",
    "white": "ffffff", "maroon": "800000", "red": "ff0000", "purple": "800080",
    "fuchsia": "ff00ff", "magenta": "ff00ff", "green": "008000", "lime": "00ff00",
    "olive": "808000", "yellow": "ffff00", "navy": "000080", "blue": "0000ff",
    "teal": "008080", "aqua": "00ffff", "cyan": "00ffff", "orange": "ffa500",
}  # fmt: skip


def _declarations(style: str) -> list[str]:
    """``style`` split at the semicolons outside strings, comments removed."""
    parts: list[str] = []
    current: list[str] = []
    for match in _STYLE_TOKEN.finditer(style):
        token = match.group()
        if token == ";":
            parts.append("".join(current))
            current = []
        elif token.startswith("/*"):
            current.append(" ")
        else:
            current.append(token)
    parts.append("".join(current))
    return parts


def _safe_value(name: str, value: str) -> bool:
    if not value or len(value) > MAX_VALUE_CHARS or _FORBIDDEN.search(value):
        return False
    if _BANNED.search(value):
        return False
    if ('"' in value or "'" in value) and name not in _QUOTES_OK:
        return False
    if value.count('"') % 2 or value.count("'") % 2:
        return False
    if name == "display":
        return value.lower() in _DISPLAY
    if name.startswith("margin") and "-" in value:
        return False  # negative margins move content over what surrounds it
    for match in _VALUE_TOKEN.finditer(value):
        token = match.group()
        if token.endswith("(") and token[:-1].lower() not in _FUNCTIONS:
            return False  # url(, image-set(, expression(, attr(, var(, a bare "(" ...
    return True


def _colour_in(value: str) -> str | None:
    """The first thing in a background shorthand that is plainly a colour, if any."""
    if _FORBIDDEN.search(value):
        return None
    depth, start, words = 0, 0, []
    for i, ch in enumerate(value):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch in " \t\n\r\f," and depth == 0:
            words.append(value[start:i])
            start = i + 1
    words.append(value[start:])
    for word in words:
        if (
            _HEX_COLOUR.fullmatch(word)
            or _FUNCTION_COLOUR.fullmatch(word)
            or word.lower() in _NAMED_COLOURS
        ) and _safe_value("background-color", word):
            return word
    return None


def _luminance(colour: str) -> float | None:
    """WCAG relative luminance of an opaque hex, ``rgb()`` or basic named colour."""
    colour = _split_important(colour)[0].lower()
    colour = "#" + _BASIC_COLOURS[colour] if colour in _BASIC_COLOURS else colour
    if _HEX_COLOUR.fullmatch(colour) and len(colour) in (4, 7):
        digits = colour[1:] if len(colour) == 7 else "".join(c * 2 for c in colour[1:])
        channels = [int(digits[i : i + 2], 16) for i in (0, 2, 4)]
    elif found := _RGB_FUNCTION.fullmatch(colour):
        channels = [min(255, int(g)) for g in found.groups()]
    else:
        return None
    linear = [c / 3294 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _reads_anywhere(colour: str) -> bool:
    """Contrast of at least 3:1 against both white and black (mid-luminance colours)."""
    lum = _luminance(colour)
    return lum is not None and 0.1 <= lum <= 0.3


def _split_important(value: str) -> tuple[str, str]:
    bang = value.rfind("!")
    if bang >= 0 and value[bang + 1 :].strip().lower() == "important":
        return value[:bang].strip(), " !important"
    return value, ""


def sanitize_style(style: str) -> str | None:
    """The declarations of ``style`` that are safe to show, or None if none are."""
    return None if len(style) > MAX_STYLE_CHARS else _sanitize(style)


def _sanitize(style: str) -> str | None:
    """:func:`sanitize_style` without the length bound (linear in ``len(style)``)."""
    kept: list[tuple[str, str]] = []
    background_lost = colour_lost = False
    for declaration in _declarations(style):
        name, colon, raw = declaration.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            continue
        value, important = _split_important(" ".join(raw.split()))
        if name in STYLE_PROPERTIES and _safe_value(name, value):
            kept.append((name, value + important))
        elif name.startswith("background"):
            colour = _colour_in(value) if name in _BACKGROUNDS else None
            if colour is not None:
                kept.append(("background-color", colour + important))
            else:
                background_lost = True
                if name == "background":  # the shorthand resets the colour set before it
                    kept = [(n, v) for n, v in kept if n not in _BACKGROUNDS]
        elif name == "color":
            colour_lost = True
    has_background = any(name in _BACKGROUNDS for name, _ in kept)
    if background_lost and not has_background:
        kept = [(n, v) for n, v in kept if n != "color" or _reads_anywhere(v)]
    if colour_lost:
        kept = [(n, v) for n, v in kept if n not in _BACKGROUNDS]
    return "; ".join(f"{n}: {v}" for n, v in kept) or None
