"""The model file: a byte-reproducible ``.npz`` of sorted token hashes and counts.

Arrays (no pickles; loaded with ``allow_pickle=False``):

* ``hash_gaps`` uint32 - differences of the sorted 32-bit token hashes (compress well);
* ``spam``, ``ham`` - per-token document counts (uint16 when integral, else float32);
* ``meta`` uint8 - UTF-8 JSON: document counts, feature version, scoring parameters.

Zip entries carry a fixed timestamp, so training twice on the same corpus produces
the same file.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Counts", "load", "save"]

FORMAT = "mailsac-spam-model/1"
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Counts:
    """Per-token document counts: ``hashes`` sorted and unique, aligned with the counts."""

    hashes: npt.NDArray[np.uint32]
    spam: npt.NDArray[np.float64]
    ham: npt.NDArray[np.float64]
    spam_docs: float
    ham_docs: float

    def __len__(self) -> int:
        return int(self.hashes.size)

    def lookup(
        self, hashes: npt.NDArray[np.uint32]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Fresh (writable) spam and ham counts of ``hashes``; 0 for unknown tokens."""
        idx, found = self.positions(hashes)
        if idx.size == 0 or self.hashes.size == 0:
            return np.zeros(hashes.size), np.zeros(hashes.size)
        return np.where(found, self.spam[idx], 0.0), np.where(found, self.ham[idx], 0.0)

    def positions(
        self, hashes: npt.NDArray[np.uint32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """For each of ``hashes``: an index into the count arrays, and whether the token is
        really there (an unknown token gets a valid index and ``False``)."""
        size = self.hashes.size
        if size == 0 or hashes.size == 0:
            return np.zeros(hashes.size, dtype=np.intp), np.zeros(hashes.size, dtype=bool)
        idx = np.searchsorted(self.hashes, hashes)
        np.minimum(idx, size - 1, out=idx)
        return idx, self.hashes[idx] == hashes


def _compact(values: npt.NDArray[np.float64]) -> npt.NDArray[np.generic]:
    if values.size and (values.max() >= 65536 or np.any(values != np.round(values))):
        return values.astype(np.float32)
    return values.astype(np.uint16)


def save(path: str | Path, counts: Counts, meta: dict[str, object]) -> None:
    order = np.argsort(counts.hashes, kind="stable")
    hashes = counts.hashes[order].astype(np.uint32)
    if hashes.size > 1 and np.any(np.diff(hashes.astype(np.int64)) <= 0):
        raise ValueError("token hashes must be unique")
    gaps = np.diff(hashes, prepend=np.uint32(0)).astype(np.uint32)
    full_meta = {
        "format": FORMAT,
        "spam_docs": counts.spam_docs,
        "ham_docs": counts.ham_docs,
        "tokens": int(hashes.size),
        **meta,
    }
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "hash_gaps": gaps,
        "spam": _compact(counts.spam[order]),
        "ham": _compact(counts.ham[order]),
        "meta": np.frombuffer(json.dumps(full_meta, sort_keys=True).encode(), dtype=np.uint8),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data.getvalue(), compresslevel=9)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(target)


def load(path: str | Path) -> tuple[Counts, dict[str, object]]:
    """Read a model file; raises ``ValueError`` on anything malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            gaps = data["hash_gaps"]
            spam = data["spam"].astype(np.float64)
            ham = data["ham"].astype(np.float64)
            meta = json.loads(data["meta"].tobytes().decode("utf-8"))
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a spam model file ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown spam model format")
    if not (gaps.ndim == 1 and gaps.shape == spam.shape == ham.shape):
        raise ValueError(f"{path}: inconsistent array shapes")
    hashes = np.cumsum(gaps.astype(np.uint64))
    if hashes.size and (hashes[-1] > 0xFFFFFFFF or (hashes.size > 1 and gaps[1:].min() == 0)):
        raise ValueError(f"{path}: token hashes are not sorted and unique")
    counts = Counts(
        hashes=hashes.astype(np.uint32),
        spam=spam,
        ham=ham,
        spam_docs=float(meta.get("spam_docs", 0.0)),
        ham_docs=float(meta.get("ham_docs", 0.0)),
    )
    return counts, meta
