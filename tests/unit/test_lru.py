from __future__ import annotations

from mailsac.lru import ByteLRU


def test_evicts_least_recently_used_by_bytes() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(10, len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now most recent
    cache.put("c", b"1234")  # 12 bytes > 10: evict b
    assert cache.get("b") is None
    assert cache.get("a") == b"1234"
    assert cache.get("c") == b"1234"
    assert cache.bytes == 8
    assert len(cache) == 2


def test_oversized_values_are_not_cached_and_replace_updates_size() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(10, len)
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None
    cache.put("a", b"12")
    cache.put("a", b"123456")
    assert cache.bytes == 6
    cache.discard("a")
    assert cache.bytes == 0
    assert cache.hits == 0 and cache.misses == 1
