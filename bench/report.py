"""Summaries, the targets of issue 5, the SVG chart and the RESULTS.md section of a bench run.

    python3 bench/report.py bench/run/results/STAMP.json [--record]

re-renders a finished run (and with --record writes it into bench/RESULTS.md).
"""

import json
import os
import statistics
import sys

ORDER = ["direct", "thv", "nginx", "haproxy", "mcp-proxy"]
NAMES = {"direct": "direct", "thv": "thv", "nginx": "nginx", "haproxy": "HAProxy", "mcp-proxy": "mcp-proxy 0.6",
         "thv-authz": "thv + 10 Cedar policies", "thv-audit": "thv + audit log"}
# MCP policy rows (bench/run.py): workload -> (its configured thv, label)
POLICY_ROWS = {
    "authz_tput": ("thv-authz", "tools/call ~300 B through 10 Cedar policies (permitted), req/s"),
    "list_json": ("thv-authz", "tools/list of 100 tools (~47 KB), JSON; filtered to 50 by the policies, req/s"),
    "list_sse": ("thv-authz", "tools/list of 100 tools (~47 KB), one SSE event; filtered to 50, req/s"),
    "audit_tput": ("thv-audit", "tools/call ~300 B with --audit-config (every event to a file), req/s"),
}
MARK = "<!-- bench runs: newest first; bench/run.py inserts here -->"
# Telemetry rows (bench/run.py tel_tput, tel_latency): target -> (label, the plain row it is divided by)
TELEMETRY_ROWS = {
    "thv": ("thv, telemetry off", "thv"),
    "thv-metrics": ("thv, Prometheus metrics (/metrics on the diagnostics port)", "thv"),
    "thv-trace01": ("thv, metrics + OTLP traces at 0.1 (+ OTLP metrics every 5 s)", "thv"),
    "thv-trace1": ("thv, metrics + OTLP traces at 1.0 (+ OTLP metrics every 5 s)", "thv"),
    "haproxy": ("HAProxy", "haproxy"),
    "haproxy-prom": ("HAProxy, Prometheus exporter on", "haproxy"),
    "haproxy-ot10": ("HAProxy, OpenTracing filter + Datadog tracer at 10%", "haproxy"),
    "haproxy-ot100": ("HAProxy, OpenTracing filter + Datadog tracer at 100%", "haproxy"),
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def per_round(results, workload, target, key):
    out = []
    for rnd in results["rounds"]:
        v = rnd.get(workload, {}).get(target, {})
        out.append(v.get(key) if isinstance(v, dict) else None)
    return out


def ratios(a, b):
    return [x / y if x is not None and y else None for x, y in zip(a, b)]


def diffs(a, b):
    return [x - y if x is not None and y is not None else None for x, y in zip(a, b)]


def d_cap(results, wl, t):
    cpu = per_round(results, wl, t, "cpu_us_per_req")
    ocpu = per_round(results, wl, t, "origin_cpu_us_per_req")
    return [1e6 / (c + (o if t != "direct" else 0)) if c and o is not None else None for c, o in zip(cpu, ocpu)]


def summarize(results):
    s = {"tput": {}, "latency": {}, "sse": {}, "jwt": {}, "lifecycle": {}, "hold": {}}
    for wl in ("mcp_tput", "raw_tput"):
        d = {}
        for t in ORDER:
            rps = per_round(results, wl, t, "rps")
            if all(v is None for v in rps):
                continue
            cpu = per_round(results, wl, t, "cpu_us_per_req")
            # One-core capacity implied by CPU time alone (proxy + origin per request): steadier than
            # req/s when other work shares the machine, since waiting for the CPU costs no CPU time.
            ocpu = per_round(results, wl, t, "origin_cpu_us_per_req")
            cap = [1e6 / (c + (o if t != "direct" else 0)) if c and o is not None else None for c, o in zip(cpu, ocpu)]
            d[t] = {
                "capacity": med(cap),
                "capacity_x_direct": med(ratios(cap, d_cap(results, wl, "direct"))),
                "capacity_x_nginx": med(ratios(cap, d_cap(results, wl, "nginx"))),
                "rps": med(rps),
                "x_direct": med(ratios(rps, per_round(results, wl, "direct", "rps"))),
                "x_nginx": med(ratios(rps, per_round(results, wl, "nginx", "rps"))),
                "x_haproxy": med(ratios(rps, per_round(results, wl, "haproxy", "rps"))),
                "x_mcp_proxy": med(ratios(rps, per_round(results, wl, "mcp-proxy", "rps"))),
                "cpu_us": med(cpu),
                "cpu_x_direct": med(ratios(cpu, per_round(results, wl, "direct", "cpu_us_per_req"))),
                "cpu_x_nginx": med(ratios(cpu, per_round(results, wl, "nginx", "cpu_us_per_req"))),
                "cpu_x_haproxy": med(ratios(cpu, per_round(results, wl, "haproxy", "cpu_us_per_req"))),
                "errors": sum(v or 0 for v in per_round(results, wl, t, "errors")),
            }
        s["tput"][wl] = d
    for wl, pcts, dest in (("latency", ("p50", "p99", "p999"), ("latency", None)),
                           ("sse1", ("p50", "p99"), ("sse", "1")), ("sse100", ("p50", "p99"), ("sse", "100")),
                           ("sse100_loaded", ("p50", "p99"), ("sse", "100_loaded"))):
        d = {}
        for t in ORDER:
            if all(v is None for v in per_round(results, wl, t, "p50_us")):
                continue
            row = {}
            for p in pcts:
                v = per_round(results, wl, t, f"{p}_us")
                row[p] = med(v)
                row[f"{p}_added"] = med(diffs(v, per_round(results, wl, "direct", f"{p}_us")))
                row[f"{p}_x_direct"] = med(ratios(v, per_round(results, wl, "direct", f"{p}_us")))
                row[f"{p}_x_nginx"] = med(ratios(v, per_round(results, wl, "nginx", f"{p}_us")))
            row["errors"] = sum(v or 0 for v in per_round(results, wl, t, "errors"))
            d[t] = row
        for t, row in d.items():  # added latency relative to nginx's added latency (ratio of medians)
            for p in pcts:
                n = d.get("nginx", {}).get(f"{p}_added")
                row[f"{p}_added_x_nginx"] = row[f"{p}_added"] / n if n and n > 0 and row[f"{p}_added"] is not None \
                    else None
        if dest[1] is None:
            s["latency"] = d
        else:
            s["sse"][dest[1]] = d
    # JWT rows
    jwt = {}
    for t in ("thv", "haproxy"):
        same = [((r.get("jwt", {}).get(t) or {}).get("same") or {}).get("rps") for r in results["rounds"]]
        fresh = [((r.get("jwt", {}).get(t) or {}).get("fresh") or {}).get("rps") for r in results["rounds"]]
        if all(v is None for v in same + fresh):
            continue
        # Paired: the no-auth run measured right before the JWT ones (bench/run.py wl_jwt);
        # results from before 2026-12-05 have none and fall back to the round's mcp_tput.
        paired = [((r.get("jwt", {}).get(t) or {}).get("noauth") or {}).get("rps") for r in results["rounds"]]
        noauth = paired if any(v is not None for v in paired) else per_round(results, "mcp_tput", t, "rps")
        wraps = sum(((r.get("jwt", {}).get(t) or {}).get("fresh") or {}).get("wraps") or 0 for r in results["rounds"])
        jwt[t] = {"same_rps": med(same), "fresh_rps": med(fresh), "noauth_rps": med(noauth),
                  "same_x_noauth": med(ratios(same, noauth)), "fresh_x_noauth": med(ratios(fresh, noauth)),
                  "same_cpu_us": med([((r.get("jwt", {}).get(t) or {}).get("same") or {}).get("cpu_us_per_req")
                                      for r in results["rounds"]]),
                  "fresh_cpu_us": med([((r.get("jwt", {}).get(t) or {}).get("fresh") or {}).get("cpu_us_per_req")
                                       for r in results["rounds"]]),
                  "token_reuse": wraps}
    if "thv" in jwt and "haproxy" in jwt:
        thv_f = [((r.get("jwt", {}).get("thv") or {}).get("fresh") or {}).get("rps") for r in results["rounds"]]
        hap_f = [((r.get("jwt", {}).get("haproxy") or {}).get("fresh") or {}).get("rps") for r in results["rounds"]]
        thv_s = [((r.get("jwt", {}).get("thv") or {}).get("same") or {}).get("rps") for r in results["rounds"]]
        hap_s = [((r.get("jwt", {}).get("haproxy") or {}).get("same") or {}).get("rps") for r in results["rounds"]]
        jwt["thv"]["fresh_x_haproxy"] = med(ratios(thv_f, hap_f))
        jwt["thv"]["same_x_haproxy"] = med(ratios(thv_s, hap_s))
    s["jwt"] = jwt
    s["policy"] = summarize_policy(results)
    s["telemetry"] = summarize_telemetry(results)
    s["lifecycle"] = results.get("once", {}).get("lifecycle", {})
    s["hold"] = results.get("once", {}).get("hold", {})
    s["skipped"] = results.get("skipped", {})
    s["targets"] = verdicts(s)
    return s


def summarize_policy(results):
    """The MCP policy rows: each target measured in the same round as plain thv and nginx."""
    out = {}
    for wl, (conf, _) in POLICY_ROWS.items():
        d = {}
        for t in ("direct", "thv", conf, "nginx"):
            rps = per_round(results, wl, t, "rps")
            if all(v is None for v in rps):
                continue
            d[t] = {"rps": med(rps),
                    "x_thv": med(ratios(rps, per_round(results, wl, "thv", "rps"))),
                    "x_nginx": med(ratios(rps, per_round(results, wl, "nginx", "rps"))),
                    "x_direct": med(ratios(rps, per_round(results, wl, "direct", "rps"))),
                    "per_round": rps,
                    "cpu_us": med(per_round(results, wl, t, "cpu_us_per_req")),
                    "errors": sum(v or 0 for v in per_round(results, wl, t, "errors")),
                    "non_2xx": sum(v or 0 for v in per_round(results, wl, t, "status"))}
            if t == "thv-audit":
                lines = per_round(results, wl, t, "audit_lines")
                reqs = per_round(results, wl, t, "requests")
                d[t]["audit_lines_x_requests"] = med(ratios(lines, reqs))
        if d:
            out[wl] = d
    return out


def summarize_telemetry(results):
    """The telemetry rows: every ratio is per round against plain thv (and its peer against plain
    HAProxy) of the same round, then the median over rounds."""
    out = {}
    for t, (_, base) in TELEMETRY_ROWS.items():
        rps = per_round(results, "tel_tput", t, "rps")
        if all(v is None for v in rps):
            continue
        reqs = per_round(results, "tel_tput", t, "requests")
        sinks = per_round(results, "tel_tput", t, "sink")
        posts = [sum(v["posts"] for p, v in (k or {}).items() if p.endswith("traces")) if k is not None else None
                 for k in sinks]
        tbytes = [sum(v["bytes"] for p, v in (k or {}).items() if p.endswith("traces")) if k is not None else None
                  for k in sinks]
        mposts = [sum(v["posts"] for p, v in (k or {}).items() if p.endswith("metrics")) if k is not None else None
                  for k in sinks]
        row = {"rps": med(rps), "per_round": rps,
               "x_thv": med(ratios(rps, per_round(results, "tel_tput", "thv", "rps"))),
               "x_base": med(ratios(rps, per_round(results, "tel_tput", base, "rps"))),
               "x_haproxy": med(ratios(rps, per_round(results, "tel_tput", "haproxy", "rps"))),
               "cpu_us": med(per_round(results, "tel_tput", t, "cpu_us_per_req")),
               # One-core capacity from CPU time alone (proxy + origin per request), against the
               # plain row's: steadier than req/s when other work shares the host.
               "cap_x_base": med(ratios(d_cap(results, "tel_tput", t), d_cap(results, "tel_tput", base))),
               "cpu_added_us": med(diffs(per_round(results, "tel_tput", t, "cpu_us_per_req"),
                                         per_round(results, "tel_tput", base, "cpu_us_per_req"))),
               "wrk_p99_us": med(per_round(results, "tel_tput", t, "p99_us")),
               "errors": sum(v or 0 for v in per_round(results, "tel_tput", t, "errors")),
               "non_2xx": sum(v or 0 for v in per_round(results, "tel_tput", t, "status")),
               "trace_posts_per_s": med([p / results["meta"]["duration_s"] if p is not None else None for p in posts]),
               "trace_bytes_per_req": med(ratios(tbytes, reqs)),
               "metric_posts": sum(v or 0 for v in mposts)}
        for p in ("p50", "p99", "p999"):
            v = per_round(results, "tel_latency", t, f"{p}_us")
            row[f"lat_{p}"] = med(v)
            row[f"lat_{p}_added"] = med(diffs(v, per_round(results, "tel_latency", base, f"{p}_us")))
        row["lat_errors"] = sum(v or 0 for v in per_round(results, "tel_latency", t, "errors"))
        out[t] = row
    return out


def telemetry_markdown(results, s):
    tel = s.get("telemetry") or {}
    if not tel:
        return []
    rate = results["meta"].get("rate")
    lines = [f"| telemetry rows, tools/call ~300 B (wrk -c32; oha -q {rate} for latency) | req/s | × plain "
             "(same round) | CPU µs/req (+ vs plain) | capacity from CPU time × plain | wrk p99 at saturation, ms | p50 / p99 at "
             f"{rate} req/s, µs (p99 − plain's) | trace export to the sink |",
             "|---|---|---|---|---|---|---|---|"]
    for t, (label, base) in TELEMETRY_ROWS.items():
        r = tel.get(t)
        if not r:
            continue
        x = "1.00× (the base)" if t == base else f"**{fmt_x(r['x_base'])} {'thv' if base == 'thv' else 'HAProxy'}**"
        if t.startswith("haproxy") and r.get("x_thv") is not None:
            x += f", {fmt_x(r['x_thv'])} thv"
        cpu = fmt_n(r["cpu_us"]) + ("" if t == base or r["cpu_added_us"] is None else f" ({r['cpu_added_us']:+.1f})")
        p99 = "–" if r["wrk_p99_us"] is None else f"{r['wrk_p99_us'] / 1000:.2f}"
        lat = "–" if r["lat_p50"] is None else (f"{r['lat_p50']:.0f} / {r['lat_p99']:.0f}" +
                                                ("" if t == base else f" ({r['lat_p99_added']:+.0f})"))
        exp = "–"
        if r["trace_posts_per_s"]:
            exp = f"{r['trace_posts_per_s']:.1f} POST/s, {r['trace_bytes_per_req']:.0f} B per request"
            if r["metric_posts"]:
                exp += f"; {r['metric_posts']} metric POSTs in all"
        err = "" if not (r["errors"] or r["non_2xx"]) else f" ({r['errors']} errors, {r['non_2xx']} non-2xx)"
        cap = "–" if t == base else fmt_x(r["cap_x_base"])
        lines.append(f"| {label}{err} | {fmt_n(r['rps'])} | {x} | {cpu} | {cap} | {p99} | {lat} | {exp} |")
    lines.append("")
    per = "; ".join(f"{t} " + ", ".join(fmt_n(v) for v in r["per_round"]) for t, r in tel.items())
    lines.append(f"Per round, req/s: {per}")
    lines.append("")
    return lines


def verdicts(s):
    out = []

    def add(name, value, ok, note=""):
        out.append({"target": name, "measured": value,
                    "verdict": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "note": note})

    thv = s["tput"].get("mcp_tput", {}).get("thv")
    if thv:
        # A peer left out by --targets has no ratio: its row is n/a, not a crash.
        for peer, key in (("nginx", "x_nginx"), ("HAProxy", "x_haproxy")):
            name = f"throughput ≥ 1.0× {peer} (MCP POST)"
            if thv.get(key) is None:
                add(name, "not measured", None, "not among --targets")
            else:
                add(name, f"{thv[key]:.2f}×", thv[key] >= 1.0)
        if thv.get("x_mcp_proxy"):
            add("throughput ≥ 2× mcp-proxy (MCP POST)", f"{thv['x_mcp_proxy']:.2f}×", thv["x_mcp_proxy"] >= 2.0)
        else:
            add("throughput ≥ 2× mcp-proxy (MCP POST)", "not measured", None, s["skipped"].get("mcp-proxy", ""))
    lat = s["latency"].get("thv")
    ng = s["latency"].get("nginx")
    if lat:
        add("added latency p50 ≤ 50 µs", f"{lat['p50_added']:.0f} µs", lat["p50_added"] <= 50)
        add("added latency p99 ≤ 150 µs", f"{lat['p99_added']:.0f} µs", lat["p99_added"] <= 150)
        if ng:
            worse = [p for p in ("p50", "p99", "p999") if lat[f"{p}_added"] > max(ng[f"{p}_added"], 0)]
            add("added latency never worse than nginx's (p50/p99/p99.9)",
                " / ".join(f"{lat[f'{p}_added']:.0f} vs {ng[f'{p}_added']:.0f}" for p in ("p50", "p99", "p999"))
                + " µs", not worse, ("worse at " + ", ".join(worse)) if worse else "")
    if thv and thv.get("cpu_x_nginx"):
        add("CPU per request ≤ nginx's (MCP POST)",
            f"{thv['cpu_us']:.1f} vs {s['tput']['mcp_tput']['nginx']['cpu_us']:.1f} µs ({thv['cpu_x_nginx']:.2f}×)",
            thv["cpu_x_nginx"] <= 1.0)
    j = s["jwt"].get("thv")
    if j:
        add("JWT same token ≥ 0.95× no-auth throughput", f"{j['same_x_noauth']:.2f}×", j["same_x_noauth"] >= 0.95)
        if j.get("fresh_x_haproxy"):
            add("JWT fresh token ≥ 1.0× HAProxy jwt_verify", f"{j['fresh_x_haproxy']:.2f}×",
                j["fresh_x_haproxy"] >= 1.0, "token pool reused" if j["token_reuse"] else "")
    elif thv:  # a run without the main rows (--suite) has no JWT verdicts either
        why = s["skipped"].get("thv-jwt") or s["skipped"].get("jwt") or "not measured"
        add("JWT same token ≥ 0.95× no-auth throughput", "skipped", None, why)
        add("JWT fresh token ≥ 1.0× HAProxy jwt_verify", "skipped", None, why)
    tr = s.get("telemetry", {}).get("thv-trace01")
    if tr and tr.get("x_base") is not None:
        add("metrics + tracing at 0.1 ≥ 0.9× telemetry-off thv (same round)", f"{tr['x_base']:.2f}×",
            tr["x_base"] >= 0.9)
    a = s.get("policy", {}).get("authz_tput", {}).get("thv-authz")
    if a:
        add("tools/call through 10 Cedar policies ≥ 0.9× plain thv (same round)", f"{a['x_thv']:.2f}×",
            a["x_thv"] >= 0.9)
    sse = s["sse"].get("100", {}).get("thv")
    if sse:
        add("SSE added per-event p99 ≤ 100 µs at 100 streams", f"{sse['p99_added']:.0f} µs", sse["p99_added"] <= 100)
    h = s["hold"].get("thv")
    if h:
        held = h.get("held", 0)
        per = h.get("rss_per_stream_kib")
        add("10,000 concurrent SSE streams held", f"{held} of {h['streams']} requested",
            held >= 10000 if h["streams"] >= 10000 else None,
            "" if h["streams"] >= 10000 else
            f"only {h['streams']} attempted: RLIMIT_NOFILE hard limit here; a proxied stream needs 2 descriptors")
        if per is not None:
            add("RSS per open stream ≤ 10 KiB", f"{per:.1f} KiB", per <= 10)
    life = s["lifecycle"].get("thv")
    if life:
        add("idle RSS ≤ 10 MiB", f"{life['idle_rss_kib'] / 1024:.1f} MiB", life["idle_rss_kib"] <= 10 * 1024)
        add("ready to serve ≤ 20 ms after start", f"{life['ready_ms_median']:.1f} ms", life["ready_ms_median"] <= 20)
        g = life.get("body_5mib_peak_growth_kib")
        if g is not None:
            extra = g / 1024 - 5
            add("5 MiB body: peak RSS growth < 5 MiB (the buffered body) + 2 MiB",
                f"{g / 1024:.1f} MiB (+{extra:.1f} MiB beyond the body)", extra < 2,
                f"HTTP {life.get('body_5mib_status')}")
    return out


# ---------------------------------------------------------------- formatting

def fmt_n(v, unit=""):
    if v is None:
        return "–"
    if abs(v) >= 10000:
        return f"{v / 1000:.1f}k{unit}"
    if abs(v) >= 100:
        return f"{v:.0f}{unit}"
    return f"{v:.1f}{unit}"


def fmt_x(v):
    return "–" if v is None else f"{v:.2f}×"


def markdown(results, s, chart_name):
    m = results["meta"]
    lines = []
    dirty = " (+ uncommitted changes in src/Cargo)" if m.get("dirty") else ""
    lines.append(f"## {m['date']} — commit `{m['commit']}`{dirty}")
    lines.append("")
    lines.append(f"- Command: `{m['command']}` — {m['rounds']} rounds × {m['duration_s']} s per measurement "
                 f"(+{m['warmup_s']} s warm-up), targets shuffled per round; {m.get('elapsed_s', '?')} s in all")
    lines.append(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, load before "
                 f"{', '.join(f'{x:.2f}' for x in m['load_before'])}, after "
                 f"{', '.join(f'{x:.2f}' for x in m.get('load_after', []))}; RLIMIT_NOFILE {m['nofile']}; "
                 f"bench processes at nice {m.get('nice', 0)}")
    lines.append("- Pinning: wrk/oha/sse_client on CPU 0; origin + proxy under test on CPU 1, each proxy with one "
                 "worker (thv `TOKIO_WORKER_THREADS=1`, nginx `worker_processes 1`, HAProxy `nbthread 1`)")
    v = m["versions"]
    lines.append(f"- Versions: {v['nginx']}; {v['haproxy']}; {v['wrk']}; {v['oha']}; {v['mcp-proxy']}; {v['rustc']}")
    lines.append("- Figures: median over rounds; in parentheses the median of per-round ratios against direct "
                 "(`d`) and nginx (`n`) of the same round; added latency = target − direct of the same round")
    if s["skipped"]:
        for k, why in s["skipped"].items():
            lines.append(f"- Skipped **{k}**: {why}")
    lines.append("")
    cols = [t for t in ORDER if t in s["tput"].get("mcp_tput", {}) or t in s["tput"].get("raw_tput", {})]
    if cols:
        lines.append("| throughput (wrk -c32) and CPU | " + " | ".join(NAMES[t] for t in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
    for wl, label in (("mcp_tput", "MCP tools/call POST ~300 B, req/s"), ("raw_tput", "raw GET (nginx origin), req/s")):
        d = s["tput"].get(wl, {})
        if not d:
            continue
        cells = []
        for t in cols:
            r = d.get(t)
            cells.append("–" if not r else (fmt_n(r["rps"]) if t == "direct" else
                                            f"{fmt_n(r['rps'])} ({fmt_x(r['x_direct'])} d, {fmt_x(r['x_nginx'])} n)"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        cells = []
        for t in cols:
            r = d.get(t)
            cells.append("–" if not r else (f"{r['cpu_us']:.1f} (origin)" if t == "direct" else
                                            f"{r['cpu_us']:.1f} ({fmt_x(r['cpu_x_nginx'])} n)"))
        lines.append(f"| ↳ CPU µs/request of that process | " + " | ".join(cells) + " |")
        cells = []
        for t in cols:
            r = d.get(t)
            cells.append("–" if not r or r.get("capacity") is None else
                         fmt_n(r["capacity"]) if t == "direct" else
                         f"{fmt_n(r['capacity'])} ({fmt_x(r['capacity_x_direct'])} d, {fmt_x(r['capacity_x_nginx'])} n)")
        lines.append(f"| ↳ one-core capacity from CPU time (1 s ÷ (proxy + origin) CPU per request) | "
                     + " | ".join(cells) + " |")
    lines.append("")
    lat = s["latency"]
    lcols = [t for t in ORDER if t in lat and t != "direct"]
    if lat:
        rate = m.get("rate")
        lines.append(f"| added latency over direct, µs (oha -q {rate} --latency-correction -c16) | direct (abs) | "
                     + " | ".join(NAMES[t] for t in lcols) + " |")
        lines.append("|---|---|" + "---|" * len(lcols))
        for p, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            cells = [f"{fmt_n(lat[t][f'{p}_added'])} ({fmt_x(lat[t][f'{p}_x_direct'])} d, "
                     f"{fmt_x(lat[t][f'{p}_x_nginx'])} n)" for t in lcols]
            lines.append(f"| {label} | {fmt_n(lat.get('direct', {}).get(p))} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"![added latency per target]({chart_name})")
        lines.append("")
    if any(s["sse"].values()):
        scols = [t for t in ORDER if t in s["sse"].get("100", {}) and t != "direct"]
        lines.append("| SSE per-event latency added over direct, µs | direct (abs) | "
                     + " | ".join(NAMES[t] for t in scols) + " |")
        lines.append("|---|---|" + "---|" * len(scols))
        labels = {"1": "1 stream, 100 events/s", "100": "100 streams, 1,000 events/s in all",
                  "100_loaded": "100 streams, 10,000 events/s in all"}
        for k in ("1", "100", "100_loaded"):
            d = s["sse"].get(k, {})
            if not d:
                continue
            for p in ("p50", "p99"):
                cells = [f"{fmt_n(d.get(t, {}).get(f'{p}_added'))} ({fmt_x(d.get(t, {}).get(f'{p}_x_direct'))} d)"
                         for t in scols]
                lines.append(f"| {labels[k]}, {p} | {fmt_n(d.get('direct', {}).get(p))} | "
                             + " | ".join(cells) + " |")
        lines.append("")
    if s["jwt"]:
        lines.append("| incoming JWT (RS256, local JWKS), wrk -c32 | no auth req/s, measured right before | same token req/s | "
                     "fresh token per request req/s | CPU µs/req same / fresh |")
        lines.append("|---|---|---|---|---|")
        for t in ("thv", "haproxy"):
            j = s["jwt"].get(t)
            if not j:
                continue
            extra = f", {fmt_x(j['fresh_x_haproxy'])} HAProxy" if j.get("fresh_x_haproxy") else ""
            lines.append(f"| {NAMES[t]}{' (jwt_verify, static PEM)' if t == 'haproxy' else ''} | "
                         f"{fmt_n(j['noauth_rps'])} | {fmt_n(j['same_rps'])} ({fmt_x(j['same_x_noauth'])} no-auth) | "
                         f"{fmt_n(j['fresh_rps'])} ({fmt_x(j['fresh_x_noauth'])} no-auth{extra}) | "
                         f"{fmt_n(j['same_cpu_us'])} / {fmt_n(j['fresh_cpu_us'])} |")
        if "thv" not in s["jwt"]:
            lines.append(f"| thv | – | skipped | skipped | – |")
        lines.append("")
    if s.get("policy"):
        lines.append("| MCP policy rows (wrk -c32), req/s (× plain thv, × nginx, same round) | direct | thv | "
                     "thv configured | nginx | CPU µs/req thv / configured |")
        lines.append("|---|---|---|---|---|---|")
        for wl, (conf, label) in POLICY_ROWS.items():
            d = s["policy"].get(wl)
            if not d:
                continue

            def cell(t):
                r = d.get(t)
                if not r:
                    return "–"
                if t == "thv":
                    return f"{fmt_n(r['rps'])} ({fmt_x(r['x_nginx'])} n)"
                if t == conf:
                    extra = ""
                    if r.get("audit_lines_x_requests") is not None:
                        extra = f"; {r['audit_lines_x_requests']:.2f} audit lines per request"
                    return f"{fmt_n(r['rps'])} (**{fmt_x(r['x_thv'])} thv**, {fmt_x(r['x_nginx'])} n{extra})"
                return fmt_n(r["rps"])
            cpu = f"{fmt_n(d.get('thv', {}).get('cpu_us'))} / {fmt_n(d.get(conf, {}).get('cpu_us'))}"
            lines.append(f"| {label} | {cell('direct')} | {cell('thv')} | {cell(conf)} | {cell('nginx')} | {cpu} |")
        lines.append("")
    lines += telemetry_markdown(results, s)
    life, hold = s["lifecycle"], s["hold"]
    if life or hold:
        pcols = [t for t in ORDER if t in life or t in hold]
        lines.append("| process figures | " + " | ".join(NAMES[t] for t in pcols) + " |")
        lines.append("|---|" + "---|" * len(pcols))

        def row(label, fn):
            lines.append(f"| {label} | " + " | ".join(fn(t) for t in pcols) + " |")

        def life_v(t, k, scale=1.0, unit=""):
            v = life.get(t, {}).get(k)
            return "–" if v is None else f"{v / scale:.1f}{unit}"

        row("idle RSS", lambda t: life_v(t, "idle_rss_kib", 1024, " MiB"))
        row("start → first request served (median)", lambda t: life_v(t, "ready_ms_median", 1, " ms"))
        row("5 MiB request body: peak RSS growth", lambda t: life_v(t, "body_5mib_peak_growth_kib", 1024, " MiB"))
        row("SSE streams held (of requested)",
            lambda t: "–" if t not in hold else f"{hold[t].get('held', 0)} / {hold[t]['streams']}")
        row("RSS per open stream",
            lambda t: "–" if hold.get(t, {}).get("rss_per_stream_kib") is None
            else f"{hold[t]['rss_per_stream_kib']:.1f} KiB" + (" (origin)" if t == "direct" else ""))
        lines.append("")
    lines.append("| issue-5 target (thv) | measured | verdict | note |")
    lines.append("|---|---|---|---|")
    for v in s["targets"]:
        lines.append(f"| {v['target']} | {v['measured']} | **{v['verdict']}** | {v['note']} |")
    lines.append("")
    return "\n".join(lines)


def record(path, section):
    head = ("# Benchmark results\n\n"
            "Produced by `bench/run.sh` (method and how to read it: `bench/README.md`). "
            "The latest run is on top; earlier runs stay below so regressions are visible.\n\n")
    text = open(path).read() if os.path.exists(path) else head + MARK + "\n"
    if MARK not in text:
        text = text.rstrip() + "\n\n" + MARK + "\n"
    before, after = text.split(MARK, 1)
    text = before + MARK + "\n\n" + section.strip() + "\n" + after
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- chart (plain SVG)

def chart(s):
    lat = s["latency"]
    targets = [t for t in ORDER if t in lat and t != "direct"]
    pcts = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]
    colors = {"thv": "#d9480f", "nginx": "#2b8a3e", "haproxy": "#1864ab", "mcp-proxy": "#862e9c"}
    vals = [lat[t][f"{p}_added"] or 0 for t in targets for p, _ in pcts]
    if not vals:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    hi, lo = max(max(vals), 1), min(min(vals), 0)
    W, H, left, right, top, bottom = 760, 360, 60, 20, 40, 60
    pw, ph = W - left - right, H - top - bottom
    y = lambda v: top + ph * (hi - v) / (hi - lo)
    group_w = pw / len(pcts)
    bar_w = group_w * 0.8 / max(1, len(targets))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">Added latency over direct '
           f'(µs, median of rounds; fixed rate, latency-corrected)</text>']
    step = nice_step((hi - lo) / 5)
    v = (lo // step) * step
    while v <= hi + 1e-9:
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
    for gi, (p, label) in enumerate(pcts):
        gx = left + gi * group_w + group_w * 0.1
        for ti, t in enumerate(targets):
            val = lat[t][f"{p}_added"] or 0
            x = gx + ti * bar_w
            y0, y1 = sorted((y(0), y(val)))
            out.append(f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bar_w * 0.9:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                       f'fill="{colors.get(t, "#666")}"/>')
            out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{(y0 - 4) if val >= 0 else (y1 + 12):.1f}" '
                       f'text-anchor="middle" font-size="10">{val:.0f}</text>')
        out.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{H - bottom + 18}" '
                   f'text-anchor="middle">{label}</text>')
    lx = left
    for t in targets:
        out.append(f'<rect x="{lx}" y="{H - 22}" width="12" height="12" fill="{colors.get(t, "#666")}"/>'
                   f'<text x="{lx + 16}" y="{H - 12}">{NAMES[t]}</text>')
        lx += 130
    out.append("</svg>")
    return "\n".join(out)


def nice_step(raw):
    if raw <= 0:
        return 1
    mag = 10 ** len(str(int(raw))) / 10
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


if __name__ == "__main__":
    path = sys.argv[1]
    res = json.load(open(path))
    summ = summarize(res)
    svg_path = path.replace(".json", "-latency.svg")
    open(svg_path, "w").write(chart(summ))
    md = markdown(res, summ, "latency-added.svg")
    print(md)
    if "--record" in sys.argv:
        bench = os.path.dirname(os.path.abspath(__file__))
        open(os.path.join(bench, "latency-added.svg"), "w").write(chart(summ))
        record(os.path.join(bench, "RESULTS.md"), md)
