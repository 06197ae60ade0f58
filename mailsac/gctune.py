"""Garbage-collector settings that keep the event loop's pauses short.

CPython's cyclic collector stops the whole process while it runs. A full (generation 2)
collection walks every tracked object, and after start-up the heap holds hundreds of
thousands that live forever (modules, the public-suffix list, the spam model's
vocabulary, SQLAlchemy's metadata and compiled caches). Measured during a 4 KiB SMTP
flood (``python -m mailsac bench``): five full collections of up to 220 ms each, the
slowest API requests of the run. :func:`settle_heap`, called once the service has
started, moves everything alive at that moment into the permanent generation
(``gc.freeze()``), which collections skip; objects created later are collected as usual.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Collect once, then exempt the start-up heap from every later collection."""
    gc.collect()
    gc.freeze()
    log.debug("gc: %d start-up objects frozen", gc.get_freeze_count())
