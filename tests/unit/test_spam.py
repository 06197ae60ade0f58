"""Spam scorer: shipped model, calibration range, online learning, poisoning guard, CLI,
and the out-of-distribution check on hand-written present-day mail (``data/spam/modern``)."""

from __future__ import annotations

import argparse
import math
import tarfile
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest

from mailsac.mime import parse_message
from mailsac.spam import DEFAULT_MODEL_PATH, SpamModel, check_spam, default_model, score_message
from mailsac.spam.bayes import message_hashes
from mailsac.spam.cli import register
from mailsac.spam.evaluate import auc
from mailsac.spam.features import extract_tokens
from mailsac.spam.scoring import Params, token_logits

DATA = Path(__file__).resolve().parent.parent / "data" / "spam"
SPAM = sorted(DATA.glob("spam_*.eml"))
HAM = sorted(DATA.glob("ham_*.eml"))
MODERN_HAM = sorted((DATA / "modern" / "ham").glob("*.eml"))
MODERN_SPAM = sorted((DATA / "modern" / "spam").glob("*.eml"))
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "spam-corpus"


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def fresh() -> SpamModel:
    return default_model().copy()


def test_fixtures_present() -> None:
    assert len(SPAM) >= 2 and len(HAM) >= 2


def test_shipped_model_is_small_and_loads() -> None:
    # Small on disk is what keeps start-up fast; no wall-clock bound in a unit test.
    assert DEFAULT_MODEL_PATH.stat().st_size < 5 * 1024 * 1024
    model = SpamModel.load(DEFAULT_MODEL_PATH)
    assert len(model.base) > 10_000


def test_shipped_model_ranks_obvious_mail() -> None:
    spam = [score_message(p.read_bytes()) for p in SPAM]
    ham = [score_message(p.read_bytes()) for p in HAM]
    assert min(spam) > 0.5, spam
    assert max(ham) < 0.5, ham


def test_scores_graded_not_saturated() -> None:
    for path in SPAM + HAM:
        score = score_message(path.read_bytes())
        assert 0.01 < score < 0.99, (path.name, score)
    for raw in (b"", b"\xff\xfe garbage", b"Subject: hi\r\n\r\nhello"):
        assert 0.0 <= score_message(raw) <= 1.0


def test_parsed_and_raw_scores_agree() -> None:
    raw = SPAM[0].read_bytes()
    assert score_message(raw) == score_message(raw, parse_message(raw))


def test_list_headers_are_not_features() -> None:
    raw = (
        HAM[0]
        .read_bytes()
        .replace(
            b"MIME-Version:",
            b"List-Id: <secret-list.example.org>\r\nX-Spam-Status: Yes\r\nMIME-Version:",
        )
    )
    tokens = extract_tokens(parse_message(raw), raw)
    assert not [t for t in tokens if "secret-list" in t or "x-spam" in t]


def test_learning_moves_score_and_survives_round_trip() -> None:
    raw = HAM[1].read_bytes()
    model = fresh()
    before = model.score(raw)
    for _ in range(30):
        model.learn(raw, is_spam=True)
    after = model.score(raw)
    assert after > before + 0.2
    restored = fresh()
    assert restored.score(raw) == pytest.approx(before)
    restored.apply_updates(model.export_state())
    assert restored.score(raw) == pytest.approx(after)
    # ham learning moves the other way
    spam_raw = SPAM[0].read_bytes()
    other = fresh()
    other.learn(spam_raw, is_spam=False, weight=20.0)
    assert other.score(spam_raw) < default_model().score(spam_raw)


def test_stored_updates_replay() -> None:
    raw = HAM[0].read_bytes()
    model = fresh()
    records = [model.learn(raw, True, account_id=f"acct{i}").to_json() for i in range(3)]
    replayed = fresh()
    replayed.apply_updates(records)
    assert replayed.score(raw) == pytest.approx(model.score(raw))
    with pytest.raises(ValueError):
        replayed.apply_updates([{"account": "x", "docs": [1, 0], "tokens": [[1, -5.0, 0]]}])


def test_one_account_cannot_push_past_cap() -> None:
    raw = HAM[0].read_bytes()
    model = fresh()
    base = model.score(raw)
    first = model.learn(raw, is_spam=True, account_id="mallory")
    assert first.tokens
    for _ in range(50):
        again = model.learn(raw, is_spam=True, weight=1.0, account_id="mallory")
        assert not again.tokens  # per-token cap: repeats are no-ops
    poisoned = model.score(raw)
    assert poisoned > base
    assert logit(poisoned) - logit(base) <= model.shift_per_account + 1e-9
    # the cap also holds after a restart (replay), and a second account lifts it
    replay = fresh()
    replay.apply_updates(model.export_state())
    assert replay.score(raw) == pytest.approx(poisoned)
    model.learn(raw, is_spam=True, account_id="trudy")
    assert logit(model.score(raw)) - logit(base) <= 2 * model.shift_per_account + 1e-9


def test_account_budget_is_bounded() -> None:
    model = fresh()
    model.account_docs = 3.0
    applied = [model.learn([f"w:token{i}", "w:common"], True, account_id="a") for i in range(6)]
    assert sum(u.spam_docs for u in applied) <= 3.0 + 1e-9
    assert not applied[-1].tokens


def test_check_spam_shape() -> None:
    spam = check_spam(
        "you@example.com",
        "Pharmacy <deals@promo.example>",
        "LOWEST PRICES!!! 80% OFF viagra",
        "Order now! No prescription needed. Click here, limited time offer, free shipping!",
    )
    ham = check_spam(
        ["tom@example.net"],
        "anna@example.com",
        "Re: build failures",
        "I reverted the fixture change and the test suite passed; can you check the logs?",
    )
    assert set(spam) == {"spamminess", "spam"}
    assert isinstance(spam["spamminess"], float) and isinstance(spam["spam"], bool)
    assert spam["spam"] is True and ham["spam"] is False
    assert 0.0 <= ham["spamminess"] < spam["spamminess"] <= 1.0


def _message(i: int, spam: bool) -> bytes:
    if spam:
        body = f"Buy cheap pills now {i}! Limited offer, click here for free money and prizes."
        subject, sender = f"WIN BIG prize {i}", f"promo{i}@deals.example"
    else:
        body = f"Notes from meeting {i}: the parser patch landed, please review the tests."
        subject, sender = f"meeting notes {i}", f"dev{i}@team.example"
    return (
        f"From: {sender}\r\nTo: me@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 1 Jul 2024 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def _corpus(root: Path) -> Path:
    lines = []
    for label in ("ham", "spam"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            (root / label / f"{i:03d}").write_bytes(_message(i, label == "spam"))
            lines.append(f"{label}/{i:03d}\t{label}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    return root


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result = args.handler(args)
    assert isinstance(result, int)
    return result


def test_train_tiny_corpus_dir_and_tarball(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "m1.npz"
    assert _run(["spam", "train", "--corpus", str(corpus), "--out", str(out)]) == 0
    model = SpamModel.load(out)
    assert model.score(_message(99, True)) > 0.5 > model.score(_message(99, False))
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus, arcname="packed")
    out2 = tmp_path / "m2.npz"
    assert _run(["spam", "train", "--corpus", str(archive), "--out", str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()  # same corpus -> byte-identical model
    assert _run(["spam", "score", "--model", str(out), str(DATA / SPAM[0].name)]) == 0
    assert _run(["spam", "eval", "--corpus", str(corpus), "--folds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "AUC=" in printed and "trained on 24 messages" in printed
    assert _run(["spam", "train", "--corpus", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_score_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["spam", "score", "--json", "--explain", str(SPAM[0])]) == 0
    printed = capsys.readouterr().out
    assert '"isSpam": true' in printed and '"tokens"' in printed


def test_hashes_are_stable() -> None:
    raw = HAM[0].read_bytes()
    a, b = message_hashes(raw), message_hashes(raw)
    assert a.dtype == np.uint32 and np.array_equal(a, b) and np.all(np.diff(a) > 0)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared spam corpus not available")
def test_real_corpus_subsample_auc() -> None:
    from mailsac.spam.corpus import load_corpus
    from mailsac.spam.evaluate import cross_validate

    samples = load_corpus(CORPUS)[::4]  # every 4th message: ~1500, a few seconds
    docs = [message_hashes(s.raw) for s in samples]
    result, _ = cross_validate(docs, [s.is_spam for s in samples], 5, 0)
    assert result.auc >= 0.99


# -- present-day mail (out of distribution for the 2002 training corpus) ----------------


def _qa_message(subject: str, body: str, sender: str = "Alice <alice@example.org>") -> bytes:
    """A message as tests/helpers.py:make_message builds it, with our Received header."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "t1234@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = "<0f6d3c1e9a7b4b8c8d2e5f60718293a4@example.org>"
    msg.set_content(body)
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    received = (
        b"Received: from mail.example.org ([198.51.100.7])\r\n"
        b"\tby mx.mailsac.test (mailsac) with ESMTP id 4c1d9e0f2a3b4c5d\r\n"
        b"\tfor <t1234@example.test>;\r\n\tMon, 03 Mar 2025 09:00:04 +0000\r\n"
    )
    return received + raw


def test_modern_fixtures_present() -> None:
    assert len(MODERN_HAM) >= 30 and len(MODERN_SPAM) >= 15


def test_modern_ham_all_below_half() -> None:
    scores = {p.stem: score_message(p.read_bytes()) for p in MODERN_HAM}
    flagged = {k: round(v, 3) for k, v in scores.items() if v >= 0.5}
    assert not flagged, flagged


def test_modern_spam_mostly_detected_and_ranked() -> None:
    spam = np.array([score_message(p.read_bytes()) for p in MODERN_SPAM])
    ham = np.array([score_message(p.read_bytes()) for p in MODERN_HAM])
    assert (spam > 0.5).mean() > 0.5, spam.round(3)
    labels = np.array([False] * ham.size + [True] * spam.size)
    assert auc(np.concatenate([ham, spam]), labels) >= 0.95


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("m2", "Hi there"),
        (
            "Your order has shipped",
            "Hi Bob,\n\nyour order 1234 has shipped and should arrive "
            "on Tuesday.\n\nThanks,\nThe shop team",
        ),
        ("test", "hello test"),
        ("Your verification code", "Your code is 604128. It expires in 10 minutes."),
        ("", ""),
    ],
)
def test_short_qa_mail_is_ham(subject: str, body: str) -> None:
    assert score_message(_qa_message(subject, body)) < 0.5


def test_display_name_and_mime_plumbing_are_not_features() -> None:
    raw = _qa_message("hello", "Hi there")
    tokens = extract_tokens(parse_message(raw), raw)
    assert not [t for t in tokens if t.startswith(("fn:", "cte:", "cs:", "ct:", "len:"))], tokens
    named = raw.replace(b"From: Alice <", b'From: "bob@evil.example" <')
    assert "fn:has_addr" in extract_tokens(parse_message(named), named)


def test_rare_tokens_are_not_discriminators() -> None:
    params = default_model().params
    spam = np.array([1.0, 0.0, 30.0, 0.0])
    ham = np.array([0.0, 1.0, 0.0, 30.0])
    logits = token_logits(spam, ham, 1900.0, 4100.0, params)
    assert logits[0] == 0.0 and logits[1] == 0.0  # seen in one message: no evidence
    assert logits[2] > 2.0 and logits[3] < -2.0


def test_two_tokens_cannot_make_a_verdict() -> None:
    model = default_model()
    base = model.base
    logits = token_logits(
        base.spam.copy(), base.ham.copy(), base.spam_docs, base.ham_docs, model.params
    )
    strongest = base.hashes[np.argsort(-logits)[:2]]
    assert model.score_hashes(np.sort(strongest)) < 0.5
    assert model.score_hashes(np.zeros(0, np.uint32)) < 0.5  # no evidence at all: ham
    # ... while a message with plenty of spam evidence still is spam
    assert model.score_hashes(np.sort(base.hashes[np.argsort(-logits)[:40]])) > 0.9


def test_params_round_trip_and_old_files() -> None:
    params = Params(strength=0.3, prior=-0.5, a=2.0, b=-0.1)
    assert Params.from_json(params.to_json()) == params
    assert Params.from_json({"a": 1.0}) == Params(a=1.0)  # missing keys: defaults
    with pytest.raises(ValueError):
        Params.from_json({"prior": "x"})


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared spam corpus not available")
def test_real_corpus_bar_all_seeds() -> None:
    """The corpus bar: 5-fold AUC >= 0.995 and FPR <= 0.5 % at 0.5, seeds 0-2."""
    from mailsac.spam.corpus import load_corpus
    from mailsac.spam.evaluate import cross_validate

    samples = load_corpus(CORPUS)
    docs = [message_hashes(s.raw) for s in samples]
    labels = [s.is_spam for s in samples]
    for seed in (0, 1, 2):
        result, _ = cross_validate(docs, labels, 5, seed)
        assert result.auc >= 0.995 and result.fpr <= 0.005, (seed, result.line())
