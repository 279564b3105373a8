"""A small, safe XML reader for WeChat pushes.

WeChat's XML is flat (``<xml><Field>value</Field>…</xml>``) with a few nested blocks
(``SendPicsInfo``, ``SubscribeMsgPopupEvent/List``). We parse it with expat and refuse any
DOCTYPE outright: that single rule stops entity expansion (billion laughs) and external
entities (XXE), since neither can be declared without one. WeChat never sends a DOCTYPE.
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat


class XmlRejected(ValueError):
    """The body is not acceptable XML; the message names the problem."""


def _refuse_doctype(*_args: object) -> None:
    raise XmlRejected("DOCTYPE is not allowed (entity declarations are refused)")


def _refuse_entity(*_args: object) -> None:
    raise XmlRejected("entity declarations are not allowed")


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """The children of the root element as a dict: leaf text as ``str``, nested elements as
    dicts, repeated elements as lists. Raises :class:`XmlRejected`."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[tuple[str, dict[str, Any], list[str]]] = [("", {}, [])]
    depth_limit = 8  # WeChat nests three levels at most; deep nesting is an attack, not a message

    def start(name: str, _attrs: dict[str, str]) -> None:
        if len(stack) > depth_limit:
            raise XmlRejected("XML nested too deeply")
        stack.append((name, {}, []))

    def end(name: str) -> None:
        _, children, texts = stack.pop()
        value: Any = children if children else "".join(texts)
        parent = stack[-1][1]
        if name in parent:
            existing = parent[name]
            parent[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            parent[name] = value

    def chars(data: str) -> None:
        stack[-1][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise XmlRejected(f"malformed XML: {exc}") from None
    root = stack[0][1]
    if len(root) != 1:
        raise XmlRejected("expected one root element")
    ((_name, content),) = root.items()
    if not isinstance(content, dict):
        raise XmlRejected("expected an element with children at the root")
    return content


def cdata(text: str) -> str:
    """Wrap text in CDATA; ``]]>`` inside is split so it cannot close the section early."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
