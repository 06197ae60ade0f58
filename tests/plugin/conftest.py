"""The plugin tests use pytester, whose fixture removes from ``sys.modules`` every module
first imported while a test ran. httpx imports httpcore lazily, on its first client: do
that now, so a test of this directory that is the first to make an HTTP request does not
leave later tests with a second copy of httpcore (whose exceptions httpx no longer maps)."""

import httpx

httpx.Client().close()
