"""``mailsac spam train|score|eval``: build, use and measure spam models.

Wire-up: ``register(subparsers)`` adds the ``spam`` command to an argparse
sub-parsers object; every leaf sets ``args.handler(args) -> int``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from mailsac.spam.api import DEFAULT_MODEL_PATH
from mailsac.spam.bayes import HashArray
from mailsac.spam.corpus import CorpusError, Sample, load_corpus

__all__ = ["register"]


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_PATH, help="model file (default: shipped)"
    )


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``spam`` with its sub-commands to ``subparsers`` (from add_subparsers())."""
    spam: argparse.ArgumentParser = subparsers.add_parser(
        "spam", help="train, apply and evaluate the spam scorer"
    )
    sub = spam.add_subparsers(dest="spam_command", metavar="{train,score,eval}", required=True)

    train = sub.add_parser("train", help="train a model file from a labelled corpus")
    train.add_argument("--corpus", type=Path, required=True, help="corpus dir or .tar.gz")
    train.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    train.add_argument("--seed", type=int, default=0, help="calibration fold seed")
    train.set_defaults(handler=cmd_train)

    score = sub.add_parser("score", help="score a raw message (file or stdin)")
    score.add_argument("file", nargs="?", type=Path, help="raw RFC 5322 message; - = stdin")
    score.add_argument("--explain", action="store_true", help="show the strongest tokens")
    score.add_argument("--json", action="store_true", help="print JSON")
    _add_model_option(score)
    score.set_defaults(handler=cmd_score)

    ev = sub.add_parser("eval", help="cross-validate on a labelled corpus")
    ev.add_argument("--corpus", type=Path, required=True, help="corpus dir or .tar.gz")
    ev.add_argument("--folds", type=int, default=5)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--train-folders",
        help="comma-separated folders to train on for the cross-folder check "
        "(default: the alphabetically first folder of each class)",
    )
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(handler=cmd_eval)
    return spam


def _load(path: Path) -> tuple[list[Sample], list[HashArray], float] | None:
    """Samples, their token hashes and the seconds it took; None after an error."""
    started = time.perf_counter()
    try:
        samples = load_corpus(path)
    except (CorpusError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    from mailsac.spam.train import corpus_hashes

    return samples, corpus_hashes(samples), time.perf_counter() - started


def cmd_train(args: argparse.Namespace) -> int:
    from mailsac.spam.train import fit

    loaded = _load(args.corpus)
    if loaded is None:
        return 2
    samples, docs, elapsed = loaded
    labels = [s.is_spam for s in samples]
    model = fit(docs, labels, seed=args.seed)
    info = {"messages": len(samples), "spam": sum(labels), "seed": args.seed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out, info)
    p = model.params
    print(
        f"trained on {len(samples)} messages ({sum(labels)} spam) in {elapsed:.1f}s: "
        f"{len(model.base)} tokens, a={p.a:.3f} b={p.b:.3f}; "
        f"wrote {args.out} ({args.out.stat().st_size} bytes)"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from mailsac.mime import parse_message
    from mailsac.spam.bayes import SpamModel
    from mailsac.spam.features import extract_tokens

    if args.file is None or str(args.file) == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        model = SpamModel.load(args.model)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokens = extract_tokens(parse_message(raw), raw)
    score = model.score_tokens(tokens)
    explained = model.explain(tokens, limit=300) if args.explain else []
    strong = len(explained)
    pad = max(0, math.ceil(model.params.evidence) - strong)
    if args.json:
        out: dict[str, object] = {"spam": round(score, 4), "isSpam": score > 0.5}
        if args.explain:
            out["tokens"] = explained[:15]
            out["strongTokens"] = strong
        print(json.dumps(out))
    else:
        print(f"{score:.4f} {'spam' if score > 0.5 else 'ham'}")
        for token, logit in explained[:15]:
            print(f"  {logit:+.3f}  {token}")
        if args.explain and pad:
            print(
                f"  {model.params.prior:+.3f}  x{pad} (low evidence: {strong} strong tokens, "
                f"padded to {model.params.evidence:g} with the ham-leaning prior)"
            )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mailsac.spam.evaluate import cross_validate, default_folder_split, folder_split

    loaded = _load(args.corpus)
    if loaded is None:
        return 2
    samples, docs, _ = loaded
    labels = [s.is_spam for s in samples]
    folders = [s.folder for s in samples]
    cv, _scores = cross_validate(docs, labels, args.folds, args.seed)
    train_folders = (
        {f.strip() for f in args.train_folders.split(",") if f.strip()}
        if args.train_folders
        else default_folder_split(folders, labels)
    )
    split: dict[str, Any] = {}
    try:
        split = folder_split(docs, labels, folders, train_folders) if train_folders else {}
    except ValueError as exc:
        print(f"cross-folder check skipped: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "cross_validation": {"folds": args.folds, "seed": args.seed, **cv.to_json()},
            "folder_split": {
                "train": sorted(train_folders), **{k: v.to_json() for k, v in split.items()}
            },
        }, indent=2))  # fmt: skip
        return 0
    print(f"{args.folds}-fold stratified CV (seed {args.seed}): {cv.line()}")
    if split:
        print(f"cross-folder: train on {', '.join(sorted(train_folders))}; test on the rest")
        for name, m in split.items():
            print(f"  {name:12s} {m.line()}")
    else:
        print("cross-folder check: needs at least two folders of one class")
    return 0
