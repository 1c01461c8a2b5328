"""XML elements <-> JSON nodes, so an annotation file's exact content can be kept and rewritten.

A node is ``{"t": tag, "x": text, "c": [children], "a": {attributes}}``; ``x`` is the stripped
text (absent when the element has none), ``c`` and ``a`` are absent when empty.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

__all__ = ["from_node", "same_content", "to_node"]

Node = dict[str, Any]


def to_node(el: ET.Element) -> Node:
    """An element (recursively) as a JSON-ready node."""
    node: Node = {"t": el.tag}
    text = (el.text or "").strip()
    if text:
        node["x"] = text
    children = [to_node(c) for c in el]
    if children:
        node["c"] = children
    if el.attrib:
        node["a"] = dict(el.attrib)
    return node


def from_node(node: Node) -> ET.Element:
    """A node (recursively) as an element."""
    el = ET.Element(node["t"], dict(node.get("a", {})))
    if node.get("x") is not None:
        el.text = node["x"]
    for child in node.get("c", []):
        el.append(from_node(child))
    return el


def same_content(a: ET.Element, b: ET.Element) -> bool:
    """True when two elements have the same tags, stripped texts, attributes and children."""
    return to_node(a) == to_node(b)
