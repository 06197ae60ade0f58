"""``mailsac spam train|score|eval|learn``: build, use, measure and teach spam models.

``eval`` cross-validates one corpus, or with ``--cross OTHER`` trains on one corpus and
tests on the other (both ways), or with ``--stream`` replays a corpus through a model in
delivery order, learning each message after scoring it (:mod:`mailsac.spam.online`).

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


def register(subparsers: Any, learn_handler: Any = None) -> argparse.ArgumentParser:
    """Add ``spam`` with its sub-commands to ``subparsers`` (from add_subparsers()).

    ``learn_handler(settings, args)`` runs ``spam learn`` against the service's
    database; it is supplied by :mod:`mailsac.cli` (which owns the database set-up) and
    its parser sets ``with_settings`` so the caller loads the settings first.
    """
    spam: argparse.ArgumentParser = subparsers.add_parser(
        "spam", help="train, apply and evaluate the spam scorer"
    )
    sub = spam.add_subparsers(dest="spam_command", metavar="{train,score,eval,learn}",
                              required=True)

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
    ev.add_argument("--cross", type=Path, metavar="OTHER",
                    help="cross-corpus mode: train on --corpus, test on OTHER, and back")
    ev.add_argument("--stream", action="store_true",
                    help="online mode: score each message of --corpus in delivery order "
                    "with --model, then learn its label (TREC spam-track style)")
    ev.add_argument("--learn", choices=("operator", "account", "none"), default="operator",
                    help="stream mode: who teaches (operator = trusted layer, account = "
                    "one capped tenant account, none = no learning)")
    ev.add_argument("--order", choices=("date", "file", "shuffle"), default="date",
                    help="stream mode: delivery order (default: the Date header)")
    ev.add_argument("--warmup", type=int, default=1000,
                    help="stream mode: also report the messages after the first N")
    ev.add_argument("--learn-limit", type=int, default=None, metavar="N",
                    help="stream mode: learn only the first N messages")
    _add_model_option(ev)
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(handler=cmd_eval)

    if learn_handler is not None:
        learn = sub.add_parser(
            "learn", help="teach the service's model (operator layer) with a mail store")
        learn.add_argument("--corpus", type=Path, required=True,
                           help="Maildir, mbox file, directory of raw messages, or a "
                           "labelled corpus (labels.tsv / .tar.gz)")
        learn.add_argument("--label", choices=("spam", "ham"),
                           help="label of every message (default: labels.tsv)")
        learn.set_defaults(handler=learn_handler, with_settings=True)
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

    if args.cross is not None:
        return _eval_cross(args)
    if args.stream:
        return _eval_stream(args)
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


def _eval_cross(args: argparse.Namespace) -> int:
    from mailsac.spam.online import cross_corpus

    first, second = _load(args.corpus), _load(args.cross)
    if first is None or second is None:
        return 2
    results: dict[str, Any] = {}
    for (a_name, a), (b_name, b) in (((args.corpus, first), (args.cross, second)),
                                     ((args.cross, second), (args.corpus, first))):
        m = cross_corpus(a[1], [s.is_spam for s in a[0]], b[1], [s.is_spam for s in b[0]])
        results[f"{a_name.name} -> {b_name.name}"] = m
    if args.json:
        print(json.dumps({k: v.to_json() for k, v in results.items()}, indent=2))
        return 0
    for name, m in results.items():
        print(f"train {name}: {m.line()}")
    return 0


def _eval_stream(args: argparse.Namespace) -> int:
    from mailsac.spam.bayes import SpamModel
    from mailsac.spam.online import delivery_order, stream

    loaded = _load(args.corpus)
    if loaded is None:
        return 2
    try:
        model = SpamModel.load(args.model)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    samples, docs, _ = loaded
    order = delivery_order(samples, args.order, args.seed)
    result = stream(model, [docs[i] for i in order], [samples[i].is_spam for i in order],
                    learn=args.learn, warmup=args.warmup, learn_limit=args.learn_limit)
    if args.json:
        print(json.dumps({
            "learn": args.learn, "order": args.order, "overall": result.overall.to_json(),
            "after_warmup": result.after_warmup.to_json() if result.after_warmup else None,
            "warmup": result.warmup,
        }, indent=2))  # fmt: skip
        return 0
    m = result.overall
    print(f"stream ({args.order} order, learn={args.learn}): 1-AUC={1 - m.auc:.4f} {m.line()}")
    if result.after_warmup is not None:
        t = result.after_warmup
        print(f"  after the first {result.warmup}: 1-AUC={1 - t.auc:.4f} {t.line()}")
    return 0
