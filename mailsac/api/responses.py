"""JSON responses whose size grows with stored mail (message lists), encoded off the loop.

A message object carries its links and address lists (each capped by the parser, see
:mod:`mailsac.mime.links` and :mod:`mailsac.mime.parse`), so a page of a thousand
messages can be megabytes of JSON. Encoding that on the event loop would stall every
other request; short lists stay on the loop, where a thread hop would cost more than it
saves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

OFFLOAD_OVER = 20
"""Lists of more messages than this are encoded in a worker thread."""


def encode(content: Any) -> bytes:
    """Compact UTF-8 JSON: for what message objects hold (string keys; strings, ints,
    finite floats, booleans, None, lists and objects of them) byte for byte what
    starlette's ``JSONResponse`` renders, in about a tenth of the time (orjson)."""
    return orjson.dumps(content)


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` rendered by :func:`encode`: for message objects, the API's
    most frequent answers."""

    def render(self, content: Any) -> bytes:
        return encode(content)


async def json_response(content: Any, *, items: int) -> Response:
    """``content`` as JSON; ``items`` is how many message objects it holds."""
    if items <= OFFLOAD_OVER:
        return FastJSONResponse(content)
    return Response(await asyncio.to_thread(encode, content), media_type="application/json")
