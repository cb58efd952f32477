"""The report: targets checked, a rich table for people, one JSON object for machines."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from rich.table import Table

from api.bench import fold

Check = tuple[str, str, Callable[[dict[str, Any]], bool]]

# scenario -> (what is compared, target as text, test)
TARGETS: dict[str, Check] = {
    "ingest": (
        "ratio",
        "≥ 0.15 x raw COPY and ≥ 2 x eventsourcing's plain save",
        lambda s: (
            s["ratio"] >= s["target_ratio"]
            and s["plain_save_ratio"] >= s["plain_save_target_ratio"]
        ),
    ),
    "import": ("ratio", "≥ 0.9 x batch path, each backend", lambda s: s["ratio"] >= 0.9),
    "relay": ("ratio", "≥ 0.8 x raw produce", lambda s: s["ratio"] >= 0.8),
    "projections": (
        "ratio",
        "≥ 0.3 x raw consume",
        lambda s: s["ratio"] >= s["target_ratio"],
    ),
    "e2e_lag": ("p99_ms", "p99 ≤ 100 ms", lambda s: s["p99_ms"] <= 100),
    "rebuild": ("events_per_s", "≥ 25,000 events/s", lambda s: s["events_per_s"] >= 25_000),
    "reads": ("p99_ms", "p99 ≤ 10 ms at 500/s", lambda s: s["p99_ms"] <= 10),
    "read_throughput": (
        "ratio",
        "≥ 0.5 x bare ASGI",
        lambda s: s["ratio"] >= s["target_ratio"],
    ),
    "time_travel": ("p99_ms", "p99 ≤ 20 ms", lambda s: s["p99_ms"] <= 20),
    "memory": ("growth_pct", "growth ≤ 10 %", lambda s: s["growth_pct"] <= 10),
    "analytics": ("p99_ms", "p99 ≤ 50 ms", lambda s: s["p99_ms"] <= s["target_p99_ms"]),
    "duplicates": (
        "seconds",
        "full scan of 100k ≤ 120 s; precision ≥ 0.95, recall ≥ 0.90",
        lambda s: s["seconds"] <= 120 and s["precision"] >= 0.95 and s["recall"] >= 0.90,
    ),
    "growing_customer": (
        "ratio",
        "last ≤ 1.25 x fresh customer's batch",
        lambda s: s["ratio"] <= s["target_ratio"],
    ),
}


def mark_targets(report: dict[str, Any]) -> None:
    """Add ``target`` and ``met`` to every scenario that has a target."""
    for name, (_, target, test) in TARGETS.items():
        scenario = report["scenarios"].get(name)
        if scenario is not None:
            scenario["target"] = target
            try:
                scenario["met"] = bool(test(scenario))
            except (KeyError, TypeError):
                scenario["met"] = False


def to_json(report: dict[str, Any]) -> bytes:
    """One JSON object (NaN becomes null)."""
    return orjson.dumps(report, option=orjson.OPT_INDENT_2)


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _stages(stages: dict[str, Any] | None) -> str:
    """The e2e lag's two stages (api.bench.lag_stages), p50 / p99 each; nothing if absent."""
    if not stages:
        return ""
    if "error" in stages:
        return f"; no split at the broker ({stages['error']})"
    ack, shown = stages["ack_to_published_ms"], stages["published_to_visible_ms"]
    return (
        f"; ack → published p50 {_n(ack['p50'], 1)} / p99 {_n(ack['p99'], 1)} ms, "
        f"published → visible p50 {_n(shown['p50'], 1)} / p99 {_n(shown['p99'], 1)} ms "
        f"({stages['matched']:,} of {stages['shown']:,} commands)"
    )


def _rows(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, measured, baseline, ratio, target) rows for whatever ran."""
    rows = []
    for name, label, base in (
        ("ingest", "ingest, batch path (rows/s)", "raw COPY"),
        ("relay", "relay store → broker (events/s)", "raw produce"),
        ("projections", "projections topic → every read model (events/s)", "raw consume"),
    ):
        if name in s:
            x = s[name]
            rows.append(
                (
                    label,
                    _n(x["events_per_s"]),
                    f"{base} {_n(x['baseline_events_per_s'])}",
                    f"{x['ratio']:.3f}",
                    x["target"],
                )
            )
            ceiling = x["cpu_ceiling_events_per_s"]
            rows.append(
                (
                    f"  … per CPU-second of our process ({name})",
                    _n(ceiling),
                    f"ceiling if I/O were free: {ceiling / x['baseline_events_per_s']:.3f} x {base}",
                    "",
                    "",
                )
            )
        if name == "ingest" and name in s:
            x = s["ingest"]
            rows.append(
                (
                    "  … against eventsourcing's batched save of plain events",
                    _n(x["events_per_s"]),
                    f"plain save {_n(x['plain_save_events_per_s'])}",
                    f"{x['plain_save_ratio']:.3f}",
                    f"≥ {x['plain_save_target_ratio']:g} x plain save",
                )
            )
            w = x["writers"]
            rows.append(
                (
                    f"  … {w['processes']} writer processes routed by customer",
                    _n(w["events_per_s"]),
                    f"raw COPY {_n(x['baseline_events_per_s'])}",
                    f"{w['ratio']:.3f}",
                    f"{_n(w['cpu_us_per_row'])} µs CPU per row",
                )
            )
            rows.append(("ingest, naive (1 tx/command)", _n(x["naive_events_per_s"]), "", "", ""))
            r = x["registrations"]
            rows.append(
                (
                    "ingest, registrations (cmd/s)",
                    _n(r["commands_per_s"]),
                    f"mix {_n(r['mix_commands_per_s'])} cmd/s",
                    f"{r['ratio']:.3f}",
                    "≥ 0.5 x mix " + ("✓" if r["ratio"] >= r["target_ratio"] else "✗"),
                )
            )
            h = x["http"]
            rows.append(
                (
                    f"HTTP single-command writes, {h['concurrency']} clients (cmd/s)",
                    _n(h["commands_per_s"]),
                    f"p50 {_n(h['p50_ms'], 1)} / p99 {_n(h['p99_ms'], 1)} ms",
                    "",
                    "",
                )
            )
    if "import" in s:
        x = s["import"]
        for backend in ("postgresql", "sqlite"):
            b = x[backend]
            rows.append(
                (
                    f"import {x['customers']:,} customers + {x['purchases']:,} purchases, "
                    f"{backend} (rows/s)",
                    _n(b["rows_per_s"]),
                    f"batch path, same commands {_n(b['baseline_rows_per_s'])}",
                    f"{b['ratio']:.3f}",
                    x["target"] if backend == "sqlite" else "",
                )
            )
    if "e2e_lag" in s:
        for x, target in ((s["e2e_lag"], s["e2e_lag"]["target"]), (s["e2e_lag"]["lower_load"], "")):
            rows.append(
                (
                    f"e2e lag at {x['offered_per_s']} cmd/s (achieved {_n(x['achieved_per_s'])})",
                    f"p50 {_n(x['p50_ms'], 1)} / p99 {_n(x['p99_ms'], 1)} ms",
                    f"ack p99 {_n(x['ack_ms']['p99'], 1)} ms; "
                    f"CPU {_n(x.get('cpu_busy_pct'))} % busy{_stages(x.get('stages'))}",
                    "",
                    target,
                )
            )
    if "rebuild" in s:
        x = s["rebuild"]
        rows.append(
            (
                f"rebuild {x['events']:,} events (events/s)",
                _n(x["events_per_s"]),
                f"per CPU-second of the rebuilder: {_n(x['cpu_ceiling_events_per_s'])}",
                "",
                x["target"],
            )
        )
    if "reads" in s:
        x = s["reads"]
        rows.append(
            (
                f"GET profile at {x['offered_per_s']}/s",
                f"p50 {_n(x['p50_ms'], 1)} / p99 {_n(x['p99_ms'], 1)} ms",
                "",
                "",
                x["target"],
            )
        )
        p = x["segment_pages"]
        rows.append(
            (
                f"segment member pages, {p['concurrency']} clients",
                f"p50 {_n(p['p50_ms'], 1)} / p99 {_n(p['p99_ms'], 1)} ms",
                f"{_n(p['pages_per_s'])} pages/s",
                "",
                "",
            )
        )
    if "read_throughput" in s:
        x = s["read_throughput"]
        rows.append(
            (
                f"GET profile, as fast as answered, {x['connections']} connections (req/s)",
                _n(x["requests_per_s"]),
                f"bare ASGI, same row and bytes: {_n(x['baseline_requests_per_s'])}; "
                f"CPU per request {_n(x['cpu_us_per_request'])} vs "
                f"{_n(x['baselines']['bare']['cpu_us_per_request'])} µs",
                f"{x['ratio']:.3f}",
                x["target"],
            )
        )
    if "time_travel" in s:
        x = s["time_travel"]
        rows.append(
            (
                f"time travel, customer with {x['events']} events",
                f"p50 {_n(x['p50_ms'], 1)} / p99 {_n(x['p99_ms'], 1)} ms",
                "",
                "",
                x["target"],
            )
        )
    if "memory" in s:
        x = s["memory"]
        detail = ", ".join(
            f"{name} {p['peak_rss_mb']:.0f} MB / {p['growth_pct']:+.1f} %"
            for name, p in x["processes"].items()
        )
        rows.append(
            (
                "memory: peak RSS / growth",
                f"{x['peak_rss_mb']:.0f} MB / {x['growth_pct']:+.1f} %",
                detail,
                "",
                x["target"],
            )
        )
    if "growing_customer" in s:
        x = s["growing_customer"]
        rows.append(
            (
                f"batch of {x['commands_per_batch']:,} purchases on one customer, "
                f"batch 1 → {x['batches']} (ack ms)",
                f"{_n(x['first_ack_ms'])} → {_n(x['last_ack_ms'])}",
                f"fresh customer {_n(x['baseline_ack_ms'])}; visible {x['visible_ratio']:.2f} x",
                f"{x['ratio']:.2f}",
                x["target"],
            )
        )
    if "cli_start" in s:
        x = s["cli_start"]
        rows.append(
            (
                f"CLI start, median of {x['runs']} fresh processes (ms)",
                f"--help {_n(x['help_ms'])} / keys list {_n(x['trivial_ms'])}",
                f"fastest {_n(x['help_min_ms'])} / {_n(x['trivial_min_ms'])}",
                "",
                "",
            )
        )
    return rows + _feature_rows(s)


def _feature_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Rows of the feature groups (analytics, policies, campaigns, duplicates) and of the
    read models' CPU per event (``fold``) that ran."""
    rows = _analytics_rows(s["analytics"]) if "analytics" in s else []
    rows += fold.rows(s)
    if "policy_sweep" in s:
        rows += _policy_rows(s["policy_sweep"], s["policy_lag"])
    if "campaign_launch" in s:
        rows.append(_campaign_row(s["campaign_launch"]))
    if "duplicates" in s:
        rows.append(_duplicates_row(s["duplicates"]))
    return rows


def _campaign_row(x: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        f"campaign launch, {x['customers']:,}-customer base (audience members/s)",
        _n(x["members_per_s"]),
        f"batch path, a tag each {_n(x['baseline_commands_per_s'])}",
        f"{x['ratio']:.3f}",
        "",
    )


def _duplicates_row(x: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        f"duplicates scan, {x['customers']:,} customers (full / incremental s)",
        f"{_n(x['seconds'], 1)} / {_n(x['incremental_seconds'], 1)} s; "
        f"peak RSS {_n(x['rss_peak_mb'])} MB (+{_n(x['rss_growth_mb'])})",
        f"precision {x['precision']} recall {x['recall']} "
        f"({x['planted']} planted, {x['candidates']} kept)",
        "",
        x["target"],
    )


def _policy_rows(
    sweep: dict[str, Any], lag: dict[str, Any]
) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, x in sweep["policies"].items():
        rows.append(
            (
                f"{name} sweep, {x['customers']:,} customers (customers/s)",
                f"{_n(x['customers_per_s'])} ({x['recorded']:,} decisions recorded)",
                f"again, nothing due: {_n(x['again_customers_per_s'])}",
                "",
                "",
            )
        )
    rows.append(
        (
            "decision lag: purchase → stage change in the store",
            f"p50 {_n(lag['p50_ms'])} / p99 {_n(lag['p99_ms'])} ms",
            f"{lag['samples']} purchases; runner polls every {lag['poll_interval_s']} s",
            "",
            "",
        )
    )
    return rows


def _analytics_rows(x: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    base = x["baseline_list_page"]
    raw = x["baseline_raw_select"]
    rows = []
    for kind, label in (
        ("rfm_page", f"RFM page of {x['page_size']}, {x['customers']:,} customers"),
        ("rfm_page_year_ago", "RFM page observed a year ago"),
        ("customer_rfm", "one customer's RFM"),
        ("lifecycle", "lifecycle"),
        ("churn", "churn, 12 months"),
    ):
        rows.append(
            (
                f"{label} ({x['concurrency']} clients)",
                f"p50 {_n(x[kind]['p50_ms'], 1)} / p99 {_n(x[kind]['p99_ms'], 1)} ms",
                f"plain list page p99 {_n(base['p99_ms'], 1)} ms; "
                f"raw SELECT p99 {_n(raw['p99_ms'], 2)} ms",
                f"{x[kind]['p99_ms'] / base['p99_ms']:.2f}",
                x["target"],
            )
        )
    cold = x["rfm_page_after_a_purchase"]
    rows.append(
        (
            "RFM page right after a purchase (cuts recomputed)",
            f"p50 {_n(cold['p50_ms'], 1)} / p99 {_n(cold['p99_ms'], 1)} ms",
            "",
            "",
            "",
        )
    )
    return rows


def table(report: dict[str, Any]) -> Table:
    """The human-readable summary (✓/✗ against each target)."""
    scenarios = report["scenarios"]
    title = "clientele bench" + (" --quick" if report["quick"] else "")
    out = Table("scenario", "measured", "baseline / detail", "ratio", "target", "", title=title)
    by_target = {t[1]: name for name, t in TARGETS.items()}
    for row in _rows(scenarios):
        owner = by_target.get(row[4])
        met = scenarios[owner].get("met") if owner else None
        out.add_row(*row, "" if met is None else ("✓" if met else "✗"))
    for group, error in report["errors"].items():
        out.add_row(f"{group}: FAILED", error, "", "", "", "✗")
    return out
