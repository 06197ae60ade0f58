"""Spam scorer carry-over: leaky-header stripping, cross-corpus and stream evaluation on
the two shared corpora (skipped when they are absent), and the eval CLI modes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mailsac.delivery import InboundMessage, received_header
from mailsac.mime import parse_message
from mailsac.spam import default_model
from mailsac.spam.bayes import message_hashes
from mailsac.spam.cli import register
from mailsac.spam.corpus import Sample
from mailsac.spam.features import extract_tokens
from mailsac.spam.headers import is_leaky_header, strip_leaky_headers
from mailsac.spam.online import delivery_order, stream

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SA = SHARED / "spam-corpus"
CSDMC = SHARED / "spam-corpus-csdmc2010"

BASE = (b"From: Shop <deals@shop.example>\r\nTo: bob@example.org\r\n"
        b"Subject: cheap meds now\r\nDate: Tue, 01 Jun 2010 10:00:00 +0000\r\n"
        b"Message-ID: <abc123@shop.example>\r\n"
        b"Received: from relay.shop.example (relay.shop.example [203.0.113.9]) by mx; "
        b"Tue, 01 Jun 2010 10:00:05 +0000\r\n")
LEAKY = (b"X-Spam-Status: Yes, score=12.3\r\nX-Spam-Flag: YES\r\n"
         b"XChecker-Version: SpamAssassin 3.2.5\r\nXStatus: spam\r\n"
         b"X-Mozilla-Status: 0001\r\nX-Mozilla-Keys: Junk\r\nX-UIDL: 1234abcd\r\n"
         b"X-Account-Key: account2\r\nX-Mailsac-Forwarded-From: bob\r\n"
         b"X-Barracuda-Spam-Score: 9\r\nX-Junkmail-Status: yes\r\n")
BODY = b"\r\nBuy viagra and cialis online now, best prices, click here.\r\n"


def test_leaky_header_names() -> None:
    for name in ("X-Spam-Status", "XChecker-Version", "XStatus", "X-Mozilla-Status2",
                 "X-UIDL", "X-Account-Key", "X-Mailsac-Anything", "X-Foo-SpamScore",
                 "X-Virus-Scanned", "Authentication-Results"):
        assert is_leaky_header(name), name
    for name in ("From", "Subject", "Received", "Date", "X-Mailer", "Reply-To"):
        assert not is_leaky_header(name, "from a (b [1.2.3.4]) by c"), name


def test_leaky_headers_do_not_change_tokens_or_score() -> None:
    clean, leaky = BASE + BODY, BASE + LEAKY + BODY
    assert extract_tokens(parse_message(clean)) == extract_tokens(parse_message(leaky))
    model = default_model()
    assert model.score(clean) == model.score(leaky)


def test_our_received_header_is_stripped() -> None:
    msg = InboundMessage.__new__(InboundMessage)
    fields = {"client_helo": "198-51-100-7.dyn.example", "client_ip": "198.51.100.7",
              "tls": False, "authenticated": False, "recipients": []}
    for key, value in fields.items():
        object.__setattr__(msg, key, value)
    ours = received_header(msg, "mx.mailsac.test", "trace1",
                           datetime(2026, 12, 4, tzinfo=UTC))
    parsed = parse_message(ours + BASE + BODY)
    assert len([v for n, v in parsed.headers if n.lower() == "received"]) == 2
    assert len([v for n, v in strip_leaky_headers(parsed.headers)
                if n.lower() == "received"]) == 1
    # the 2026 trace line would otherwise make a 2010 message "dated in the past"
    assert extract_tokens(parsed) == extract_tokens(parse_message(BASE + BODY))


def _sample(i: int, date: str | None, spam: bool) -> Sample:
    head = f"Date: {date}\r\n" if date else ""
    raw = f"{head}From: a{i}@x.example\r\nSubject: s{i}\r\n\r\nbody {i}\r\n".encode()
    return Sample(f"f/{i}", "f", spam, raw)


def test_delivery_order_by_date() -> None:
    samples = [_sample(0, "Tue, 01 Jun 2010 10:00:00 +0000", False),
               _sample(1, "Mon, 31 May 2010 10:00:00 +0000", True),
               _sample(2, None, False),
               _sample(3, "Wed, 02 Jun 2010 10:00:00 +0000", True)]
    assert delivery_order(samples) == [1, 2, 0, 3]  # undated: after its file predecessor
    assert delivery_order(samples, "file") == [0, 1, 2, 3]
    assert sorted(delivery_order(samples, "shuffle", 1)) == [0, 1, 2, 3]


def test_stream_learning_goes_through_the_operator_layer() -> None:
    spam = [message_hashes(BASE + f"\r\nzorblax quintofer offer {i}\r\n".encode())
            for i in range(30)]
    model = default_model().copy()
    result = stream(model, spam, [True] * 30, learn="operator", warmup=0)
    assert result.scores[-1] > result.scores[0]  # it learned from the stream
    capped = default_model().copy()
    stream(capped, spam, [True] * 30, learn="account", warmup=0)
    assert model.score_hashes(spam[0]) > capped.score_hashes(spam[0])


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result = args.handler(args)
    assert isinstance(result, int)
    return result


@pytest.mark.skipif(not (SA.is_dir() and CSDMC.is_dir()), reason="shared corpora absent")
def test_calibration_across_corpora() -> None:
    """The shipped model (trained on the 2002 corpus) on 2010 mail from other senders:
    it ranks well and keeps ham below 0.5; operator teaching fixes the recall."""
    from mailsac.spam.corpus import load_corpus

    samples = load_corpus(CSDMC)[::3]  # ~1,450 messages: a few seconds
    order = delivery_order(samples)
    docs = [message_hashes(samples[i].raw) for i in order]
    labels = [samples[i].is_spam for i in order]
    untaught = stream(default_model().copy(), docs, labels, learn="none", warmup=500)
    taught = stream(default_model().copy(), docs, labels, learn="operator", warmup=500)
    assert untaught.overall.auc >= 0.98 and untaught.overall.fpr <= 0.01
    assert taught.after_warmup is not None and untaught.after_warmup is not None
    assert taught.after_warmup.auc >= 0.995 and taught.after_warmup.fpr <= 0.01
    assert taught.after_warmup.fnr < untaught.after_warmup.fnr
    assert np.isfinite(taught.scores).all()


@pytest.mark.skipif(not CSDMC.is_dir(), reason="shared corpus absent")
def test_eval_stream_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["spam", "eval", "--corpus", str(CSDMC), "--stream", "--learn", "none",
                 "--warmup", "100", "--learn-limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "1-AUC=" in out and "after the first 100" in out


def test_iter_messages_reads_mbox_maildir_and_directories(tmp_path: Path) -> None:
    import mailbox

    from mailsac.spam.corpus import CorpusError, iter_messages

    raws = [BASE + f"\r\nmessage {i}\r\n".encode() for i in range(3)]
    box = mailbox.mbox(tmp_path / "junk.mbox")
    for raw in raws:
        box.add(raw)
    box.close()
    got = list(iter_messages(tmp_path / "junk.mbox", True))
    assert len(got) == 3 and all(spam for _, spam in got)
    assert all(b"message" in raw for raw, _ in got)
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for raw in raws[:2]:
        maildir.add(raw)
    assert [spam for _, spam in iter_messages(tmp_path / "Maildir", False)] == [False] * 2
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.eml").write_bytes(raws[0])
    assert list(iter_messages(plain, True)) == [(raws[0], True)]
    with pytest.raises(CorpusError, match="--label"):
        list(iter_messages(plain, None))


@pytest.mark.skipif(not (SA.is_dir() and CSDMC.is_dir()), reason="shared corpora absent")
def test_cross_corpus_floors_both_directions_and_after_operator_teaching() -> None:
    """The issue-17 bars on the two shipped corpora (all of CSDMC2010, a third of the
    SpamAssassin corpus as the CS->SA test set, to keep this under a minute).

    Full-corpus numbers (README): SA->CS AUC .9963 FPR .17 % FNR 22.8 %; CS->SA AUC
    .9979 FPR .75 % FNR 4.4 %; CS stream taught with 1,000 operator labels AUC .9998
    FPR .04 % FNR 5.5 %. Floors: the issue's targets (AUC >= .95 and FPR <= 1 % out of
    the box; AUC >= .995, FPR <= .5 %, FNR <= 10 % after teaching), AUC tightened to
    .99 (both directions reach .996), FPR loosened to 1.3 % for the sampled CS->SA set
    (1,383 ham: one message is .07 %), and FNR bars that the previous model failed
    (SA->CS 39.6 %, stream 17.4 %).
    """
    from mailsac.spam.corpus import load_corpus
    from mailsac.spam.evaluate import metrics
    from mailsac.spam.online import cross_corpus

    cs = load_corpus(CSDMC)
    sa = load_corpus(SA)[::3]
    cs_docs = [message_hashes(s.raw) for s in cs]
    cs_labels = [s.is_spam for s in cs]
    shipped = default_model()  # trained on the whole SpamAssassin corpus only
    sa_to_cs = metrics(np.array([shipped.score_hashes(d) for d in cs_docs]),
                       np.array(cs_labels))
    assert sa_to_cs.auc >= 0.99 and sa_to_cs.fpr <= 0.01 and sa_to_cs.fnr <= 0.30, \
        sa_to_cs.line()
    cs_to_sa = cross_corpus(cs_docs, cs_labels, [message_hashes(s.raw) for s in sa],
                            [s.is_spam for s in sa])
    assert cs_to_sa.auc >= 0.99 and cs_to_sa.fpr <= 0.013 and cs_to_sa.fnr <= 0.10, \
        cs_to_sa.line()
    order = delivery_order(cs, "shuffle", 0)
    taught = stream(shipped.copy(), [cs_docs[i] for i in order], [cs_labels[i] for i in order],
                    learn="operator", warmup=1000, learn_limit=1000)
    tail = taught.after_warmup
    assert tail is not None
    assert tail.auc >= 0.995 and tail.fpr <= 0.005 and tail.fnr <= 0.10, tail.line()


def test_operator_layer_weighs_more_than_one_shipped_message() -> None:
    """Operator labels count ``operator_weight`` times when scoring; the stored update
    stays unweighted, so replaying it after a restart gives the same score."""
    raw = BASE + b"\r\nHi, the quarterly zyxqwv figures for the zyxqwv review.\r\n"
    plain, heavy = default_model().copy(), default_model().copy()
    plain.operator_weight = 1.0
    assert heavy.operator_weight > 1.0
    untaught = heavy.score(raw)
    for model in (plain, heavy):
        for _ in range(3):
            update = model.learn(raw, True)
    assert untaught < plain.score(raw) < heavy.score(raw)
    assert update.spam_docs == 1.0
    replayed = default_model().copy()
    replayed.apply_updates(heavy.export_state())
    assert replayed.score(raw) == pytest.approx(heavy.score(raw))
