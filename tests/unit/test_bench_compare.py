"""``python -m mailsac bench --compare maildev``: arguments, the MailDev command line and
probe paths, the npm cache check, the report and its table. Nothing here installs or
runs MailDev (that needs npm and the registry; the benchmark does it, not the tests)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from mailsac.bench import maildev
from mailsac.bench.cli import options_from_args, register
from mailsac.bench.compare import build_report, order_of, render_compare, versus
from mailsac.bench.open_loop import probe_endpoints
from mailsac.bench.report import flood_json
from mailsac.bench.smtp_load import FloodResult
from mailsac.bench.stats import LatencyStats


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_compare_arguments() -> None:
    args = _parse("--spawn", "--compare", "maildev", "--runs", "3", "--messages", "100")
    opts = options_from_args(args)
    assert args.compare == "maildev" and args.maildev_version is None
    assert opts.runs == 3 and opts.scenario.messages == 100 and opts.spawn
    assert _parse("--spawn").compare is None
    assert _parse("--spawn", "--compare", "maildev",
                  "--maildev-version", "2.2.1").maildev_version == "2.2.1"
    with pytest.raises(SystemExit):
        _parse("--spawn", "--compare", "mailhog")


@pytest.mark.parametrize("argv", [
    ("--spawn", "--compare", "maildev", "--processes", "2"),
    ("--spawn", "--compare", "maildev", "--scenario", "d"),  # MailDev has no store to seed
])
def test_compare_rejects(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="--compare"):
        options_from_args(_parse(*argv))


def test_order_alternates_maildev_first() -> None:
    assert [order_of(k) for k in range(4)] == [
        ("maildev", "mailsac"), ("mailsac", "maildev"), ("maildev", "mailsac"),
        ("mailsac", "maildev")]


def test_command_is_loopback_headless_and_silent() -> None:
    cmd = maildev.command("node", Path("/x/maildev.js"), 2600, 2700, 1000)
    assert cmd[:2] == ["node", "/x/maildev.js"]
    pairs = dict(zip(cmd[2::2], cmd[3::2], strict=False))
    assert pairs["--smtp"] == "2600" and pairs["--web"] == "2700"
    assert pairs["--ip"] == pairs["--web-ip"] == "127.0.0.1"
    assert pairs["--max-message-size"] == "1000" and cmd[-1] == "--silent"
    assert not any(a.startswith("--incoming") or a == "--mail-directory" for a in cmd)


def test_probe_paths_follow_mailsac_probe_order() -> None:
    targets = [(f"b1x{i}@a.test", f"id{i}/+") for i in range(7)]
    lists, gets = maildev.endpoints(targets, seed=3)
    ours = probe_endpoints(targets, seed=3)
    assert (lists.name, gets.name) == ("list", "get")
    assert [p.split("=", 1)[1] for p in lists.paths] == [p.split("/")[3] for p in ours[0].paths]
    assert lists.paths[0].startswith("/api/email?to.address=b1x")
    assert all(p.startswith("/api/email/id") and p.endswith("%2F%2B") for p in gets.paths)
    assert maildev.inbox_query("a b@c.test") == "/api/email?to.address=a%20b@c.test"


def test_tokens_of_summary_page() -> None:
    page = [{"id": "m1", "subject": "Hello [bench abc1r0-5]"}, {"id": "m2", "subject": "other"},
            {"id": "m3"}]
    assert maildev.tokens_of(page) == {"abc1r0-5": "m1"}


def test_install_reuses_the_cache_without_npm(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "9.9.9"
    package = prefix / "node_modules" / "maildev"
    (package / "dist" / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "maildev", "version": "9.9.9"}))
    (package / "dist" / "bin" / "maildev.js").write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm, no node
    assert maildev.installed_version(prefix) == "9.9.9"
    assert maildev.install("9.9.9", tmp_path) == package / "dist" / "bin" / "maildev.js"
    assert maildev.installed_version(tmp_path / "1.0.0") is None
    with pytest.raises(RuntimeError, match="npm"):
        maildev.install("1.0.0", tmp_path)  # not cached, and npm is not on the PATH


def test_cache_dir_honours_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert maildev.cache_dir() == tmp_path / "mailsac-bench" / "maildev"


def _run(k: int, rate: float, list_p99: float, cpu_ms: float, load: float) -> dict[str, Any]:
    result = FloodResult(accepted=list(range(100)), accepted_bytes=100 * 4096, attempted=100,
                         started=1000.0, finished=1000.0 + 100 / rate, latencies_ms=[2.0] * 100)
    latency = {"list": LatencyStats.of([1.0, list_p99]).to_json(),
               "get": LatencyStats.of([1.0, 2.0]).to_json()}
    return {"run": k, "flood": flood_json(result, 100, 1),
            "latency": {"idle": latency, "flood": latency, "flood_slow": 0},
            "verification": {"loss": 0, "raw_mismatched": 0},
            "server": {"rss_max_mib": 100.0, "cpu_ms_per_msg": cpu_ms}, "loadavg": [load, 1, 1]}


def test_report_medians_ratios_and_table() -> None:
    opts = options_from_args(_parse("--spawn", "--compare", "maildev", "--runs", "3"))
    runs = {"mailsac": [_run(k, r, 20.0, 4.0, 2.0 + k) for k, r in enumerate((300, 330, 310))],
            "maildev": [_run(k, r, 10.0, 2.0, 3.0) for k, r in enumerate((200, 180, 190))]}
    runs["maildev"][1]["verification"]["loss"] = 2
    report = build_report(opts, runs, {
        "host": {"cpus": 2, "node": "v20", "loadavg_start": [3.0], "loadavg_end": [4.0]},
        "maildev": {"version": "3.0.0", "semantics": {"durability": "none"}}})
    json.dumps(report)
    rows = {row["metric"]: row for row in report["versus"]}
    assert rows["msgs_per_s"]["mailsac"] == 310.0 and rows["msgs_per_s"]["maildev"] == 190.0
    assert rows["msgs_per_s"]["ratio"] == round(310 / 190, 3)
    assert rows["msgs_per_s"]["better"] == "mailsac"
    assert rows["cpu_ms_per_msg"]["ratio"] == 2.0 and rows["cpu_ms_per_msg"]["better"] == "maildev"
    assert rows["flood_list_p99_ms"]["better"] == "maildev"
    assert report["order"] == [["maildev", "mailsac"], ["mailsac", "maildev"],
                               ["maildev", "mailsac"]]
    assert report["summary"] == {"loss_total": 0, "maildev_loss_total": 2}
    assert report["sides"]["mailsac"]["summary"]["loadavg_1m"]["median"] == 3.0
    table = render_compare(report)
    assert "MailDev 3.0.0" in table and "stored msg/s" in table and "1.63" in table
    assert "run 2: mailsac 330" in table and "durability: none" in table


def test_versus_without_a_maildev_value() -> None:
    rows = versus({"mailsac": {"msgs_per_s": {"median": 5.0}}, "maildev": {}})
    first = rows[0]
    assert first["metric"] == "msgs_per_s" and first["ratio"] is None and first["better"] is None
