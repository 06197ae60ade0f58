"""``python -m mailsac bench``: a load generator and report for a mailsac deployment.

Modules: :mod:`~mailsac.bench.workload` (deterministic realistic mail),
:mod:`~mailsac.bench.smtp_load` (the SMTP flood, in its own process),
:mod:`~mailsac.bench.http_probe` (API latency and loss verification),
:mod:`~mailsac.bench.baseline` (a bare aiosmtpd accept-and-discard server),
:mod:`~mailsac.bench.spawn` (a fresh local server, RSS/CPU sampling),
:mod:`~mailsac.bench.seed` (bulk-loading a large store), :mod:`~mailsac.bench.runner`
(one benchmark, end to end), :mod:`~mailsac.bench.report` and :mod:`~mailsac.bench.cli`.
"""
