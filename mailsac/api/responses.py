"""JSON responses whose size grows with stored mail (message lists), encoded off the loop.

A message object carries its links and address lists (each capped by the parser, see
:mod:`mailsac.mime.links` and :mod:`mailsac.mime.parse`), so a page of a thousand
messages can be megabytes of JSON. Encoding that on the event loop would stall every
other request; short lists stay on the loop, where a thread hop would cost more than it
saves.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import JSONResponse, Response

OFFLOAD_OVER = 20
"""Lists of more messages than this are encoded in a worker thread."""


def _encode(content: Any) -> bytes:
    # Exactly what starlette's JSONResponse.render produces.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


async def json_response(content: Any, *, items: int) -> Response:
    """``content`` as JSON; ``items`` is how many message objects it holds."""
    if items <= OFFLOAD_OVER:
        return JSONResponse(content)
    return Response(await asyncio.to_thread(_encode, content), media_type="application/json")
