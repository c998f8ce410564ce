//! The dashboard `serve` renders: one self-contained HTML page per request (inline CSS and
//! SVG, no script, font or stylesheet from anywhere: it works on an air-gapped network). The
//! fleet's summary, a schema x plugin view (grouped by state, filtered, paginated, so it stays
//! fast at 10,000 tenants), the run history with a chart of durations and applied steps, and a
//! page per run with its failures. Every text from the fleet (schema, plugin, step names,
//! messages) is escaped.

use std::fmt::Write as _;

use super::Snapshot;
use crate::control::{RunRecord, RunSchema};
use crate::report::{HealCounters, SchemaStatus, State, summarise};

/// Schemas per page of the schema x plugin view.
pub const PAGE_SIZE: usize = 100;

/// The dashboard's query: `?state=pending&q=acme&page=2`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    /// Only schemas in this state.
    pub state: Option<String>,
    /// Only schemas whose name contains this.
    pub q: Option<String>,
    /// 1-based page of the schema view.
    pub page: Option<usize>,
}

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A query-string value, percent-encoded.
fn url_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 20px}header h1{font-size:18px;margin:0}
main{padding:16px 20px;max-width:1400px}section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f2;white-space:nowrap}
td.what{white-space:normal}.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #dde1e6;border-radius:6px;padding:8px 14px;min-width:110px;text-decoration:none;color:inherit}
.card b{display:block;font-size:22px}.s-up_to_date{color:#1a7f37}.s-pending{color:#9a6700}.s-held{color:#6e7781}.s-failed,.s-drifted,.s-forged{color:#cf222e}
.bad{background:#ffebe9;border:1px solid #cf222e;padding:8px;border-radius:6px}form input,form select{font:inherit}.muted{color:#6e7781}";

fn head(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head>\n<body><header><h1>wasmig &middot; {}</h1></header><main>\n{body}</main></body></html>\n",
        esc(title),
        esc(title)
    )
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How a page is rendered: served (filters, pages, links) or as one static file (`wasmig
/// report --html`: every schema, no links to pages that do not exist in a file), with a
/// report section first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Render<'a> {
    /// A section to show first (escaped already).
    pub report: Option<&'a str>,
    /// One static file.
    pub static_file: bool,
}

/// The dashboard.
pub fn page(snap: &Snapshot, q: &PageQuery, heal: Option<HealCounters>, how: Render<'_>) -> String {
    let mut body = String::new();
    if let Some(section) = how.report {
        body.push_str(section);
    }
    let fleet = match &snap.fleet {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(
                body,
                "<section><p class=\"bad\">The fleet cannot be read: {}</p><p class=\"muted\">Read at {}.</p></section>",
                esc(e),
                rfc3339(snap.read_at)
            );
            return head("fleet", &body);
        }
    };
    let c = &fleet.collected;
    let summary = summarise(&c.specs, &c.rows, &[], 0);
    // Summary cards, each a filter.
    let _ = write!(
        body,
        "<section><h2>Fleet</h2><div class=\"cards\"><a class=\"card\" href=\"/\"><b id=\"schema-count\">{}</b>schemas</a>",
        summary.schema_count
    );
    for st in State::ALL.iter().rev() {
        let n = summary.states.get(st.as_str()).copied().unwrap_or(0);
        let _ = write!(
            body,
            "<a class=\"card s-{s}\" href=\"/?state={s}\"><b id=\"count-{s}\">{n}</b>{label}</a>",
            s = st.as_str(),
            label = st.as_str().replace('_', " ")
        );
    }
    body.push_str("</div>");
    for p in &c.plugin_problems {
        let _ = write!(body, "<p class=\"bad\">{}</p>", esc(p));
    }
    if let Some(h) = heal {
        let _ = write!(
            body,
            "<p class=\"muted\">Healing: {} run(s), {} failed since the server started.</p>",
            h.runs, h.failures
        );
    }
    let _ = write!(
        body,
        "<p class=\"muted\">Read at {} (cached a few seconds).</p></section>",
        rfc3339(snap.read_at)
    );

    // Per plugin: schemas by last applied step.
    body.push_str("<section><h2>Plugins</h2><table><tr><th>Plugin</th><th>Scope</th><th>Last applied step</th><th>Schemas</th></tr>");
    for p in &summary.plugins {
        for (i, a) in p.at.iter().enumerate() {
            let step = a.step.as_deref().unwrap_or("(none)");
            let latest = if a.step == p.latest_step {
                " <span class=\"s-up_to_date\">latest</span>"
            } else {
                ""
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}{latest}</td><td>{}</td></tr>",
                if i == 0 {
                    esc(&p.plugin)
                } else {
                    String::new()
                },
                if i == 0 { p.scope.as_str() } else { "" },
                esc(step),
                a.schema_count
            );
        }
    }
    body.push_str("</table></section>");

    schemas_section(&mut body, &c.specs, &c.rows, q, how.static_file);
    runs_section(&mut body, &fleet.runs, how.static_file);
    head(
        if how.report.is_some() {
            "report"
        } else {
            "fleet"
        },
        &body,
    )
}

/// The schema x plugin view: worst state first, filtered and paginated.
fn schemas_section(
    body: &mut String,
    specs: &[crate::plan::PluginSpec],
    rows: &[SchemaStatus],
    q: &PageQuery,
    static_file: bool,
) {
    let want = q.state.as_deref().and_then(State::parse);
    let needle = q.q.as_deref().unwrap_or("").trim();
    let mut picked: Vec<(State, &SchemaStatus)> = rows
        .iter()
        .map(|r| (State::of(r), r))
        .filter(|(st, r)| {
            want.is_none_or(|w| w == *st) && (needle.is_empty() || r.schema.contains(needle))
        })
        .collect();
    picked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.schema.cmp(&b.1.schema)));
    let page_size = if static_file {
        picked.len().max(1)
    } else {
        PAGE_SIZE
    };
    let pages = picked.len().div_ceil(page_size).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    body.push_str("<section><h2>Schemas</h2>");
    if !static_file {
        let _ = write!(
            body,
            "<form method=\"get\" action=\"/\">Name contains <input name=\"q\" value=\"{}\"> state <select name=\"state\"><option value=\"\">any</option>",
            esc(needle)
        );
        for st in State::ALL {
            let _ = write!(
                body,
                "<option value=\"{s}\"{sel}>{s}</option>",
                s = st.as_str(),
                sel = if want == Some(st) { " selected" } else { "" }
            );
        }
        body.push_str("</select> <button>Filter</button></form>");
    }
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"schema-matches\">{} schema(s) match; page {page} of {pages}.</p>",
        picked.len()
    );
    body.push_str("<table><tr><th>Schema</th><th>State</th>");
    for p in specs {
        let _ = write!(body, "<th>{}</th>", esc(&p.name));
    }
    body.push_str("<th>What</th></tr>");
    for (st, r) in picked.iter().skip((page - 1) * page_size).take(page_size) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"s-{s}\">{s}</td>",
            esc(&r.schema),
            s = st.as_str()
        );
        for p in specs {
            if p.scope != r.scope {
                body.push_str("<td class=\"muted\">&middot;</td>");
                continue;
            }
            let pst = State::of_plugin(r, &p.name);
            let _ = write!(
                body,
                "<td class=\"s-{}\">{}</td>",
                pst.as_str(),
                esc(r.last_applied(&p.name).unwrap_or("(none)"))
            );
        }
        let _ = write!(
            body,
            "<td class=\"what\">{}</td></tr>",
            esc(&crate::report::what_is_wrong(r))
        );
    }
    body.push_str("</table>");
    if pages > 1 {
        body.push_str("<p>");
        let link = |n: usize| {
            format!(
                "/?page={n}{}{}",
                q.state
                    .as_deref()
                    .map(|s| format!("&state={}", url_value(s)))
                    .unwrap_or_default(),
                if needle.is_empty() {
                    String::new()
                } else {
                    format!("&q={}", url_value(needle))
                }
            )
        };
        if page > 1 {
            let _ = write!(
                body,
                "<a href=\"{}\">&larr; previous</a> ",
                esc(&link(page - 1))
            );
        }
        if page < pages {
            let _ = write!(body, "<a href=\"{}\">next &rarr;</a>", esc(&link(page + 1)));
        }
        body.push_str("</p>");
    }
    body.push_str("</section>");
}

/// The last runs, a chart of their durations and applied steps, each linked to its page.
fn runs_section(body: &mut String, runs: &[RunRecord], static_file: bool) {
    body.push_str("<section><h2>Runs</h2>");
    if runs.is_empty() {
        body.push_str("<p class=\"muted\">No runs recorded yet.</p></section>");
        return;
    }
    // Oldest to newest, left to right: bars are durations, dots applied steps.
    let shown: Vec<&RunRecord> = runs.iter().take(60).rev().collect();
    let (w, h, pad) = (900.0_f64, 160.0_f64, 30.0_f64);
    let max_d = shown
        .iter()
        .filter_map(|r| r.duration_s)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let max_a = shown
        .iter()
        .filter_map(|r| r.applied)
        .fold(0, i32::max)
        .max(1);
    let step = ((w - 2.0 * pad) / shown.len() as f64).min(40.0);
    let _ = write!(
        body,
        "<svg id=\"runs-chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"run durations and applied steps\"><line x1=\"{pad}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/>",
        y0 = h - pad,
        x1 = w - pad
    );
    for (i, r) in shown.iter().enumerate() {
        let x = pad + i as f64 * step;
        if let Some(d) = r.duration_s {
            let bh = (h - 2.0 * pad) * d / max_d;
            let colour = if r.outcome.as_deref() == Some("ok") {
                "#8ab4f8"
            } else {
                "#f28b82"
            };
            let _ = write!(
                body,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>run {} {}: {d:.2}s</title></rect>",
                h - pad - bh,
                (step * 0.7).max(1.0),
                r.run_id,
                esc(&r.command)
            );
        }
        if let Some(a) = r.applied {
            let y = h - pad - (h - 2.0 * pad) * f64::from(a) / f64::from(max_a);
            let _ = write!(
                body,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#1d2430\"><title>run {}: {a} step(s) applied</title></circle>",
                x + step * 0.35,
                r.run_id
            );
        }
    }
    let _ = write!(
        body,
        "<text x=\"{pad}\" y=\"14\" font-size=\"11\">bars: duration (max {max_d:.2}s); dots: steps applied (max {max_a})</text></svg>"
    );
    body.push_str("<table><tr><th>Run</th><th>Started</th><th>Command</th><th>Outcome</th><th>Duration</th><th>Applied</th><th>Failed</th></tr>");
    for r in runs.iter().take(50) {
        let _ = write!(
            body,
            "<tr><td>{link}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.started_at),
            esc(&r.command),
            esc(r.outcome.as_deref().unwrap_or("running")),
            r.duration_s.map_or("-".into(), |d| format!("{d:.2}s")),
            r.applied.map_or("-".into(), |n| n.to_string()),
            r.failed.map_or("-".into(), |n| n.to_string()),
            link = if static_file {
                r.run_id.to_string()
            } else {
                format!("<a href=\"/runs/{id}\">{id}</a>", id = r.run_id)
            }
        );
    }
    body.push_str("</table></section>");
}

/// One run: what each schema came to, with its failures.
pub fn run_page(run: &RunRecord, schemas: &[RunSchema]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>Run {} &middot; {} &middot; {}</h2><p>Started {} by {}@{}; {}; {} step(s) applied, {} schema(s) failed.</p><p><a href=\"/\">&larr; fleet</a></p></section>",
        run.run_id,
        esc(&run.command),
        esc(run.outcome.as_deref().unwrap_or("running")),
        esc(&run.started_at),
        esc(run.os_user.as_deref().unwrap_or("?")),
        esc(run.hostname.as_deref().unwrap_or("?")),
        run.duration_s.map_or(
            "still running or ended without a record".into(),
            |d| format!("took {d:.2}s")
        ),
        run.applied.unwrap_or(0),
        run.failed.unwrap_or(0)
    );
    body.push_str("<section><h2>Schemas</h2><table><tr><th>Schema</th><th>Outcome</th><th>Retries</th><th>Seconds</th><th>Applied</th><th>Failures</th></tr>");
    for s in schemas {
        let applied: Vec<String> = s
            .steps
            .iter()
            .map(|(p, st, _)| esc(&format!("{p}/{st}")))
            .collect();
        let failures: Vec<String> = s
            .failures
            .iter()
            .map(|(p, st, code, msg)| {
                format!(
                    "<b>{}</b>: {}{}",
                    esc(&format!("{p}/{st}")),
                    esc(msg),
                    code.as_deref()
                        .map(|c| format!(" (SQLSTATE {})", esc(c)))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td class=\"what\">{}</td><td class=\"what\">{}</td></tr>",
            esc(&s.schema),
            esc(&s.outcome),
            s.retries,
            s.duration_s,
            applied.join(", "),
            failures.join("<br>")
        );
    }
    body.push_str("</table></section>");
    head(&format!("run {}", run.run_id), &body)
}

/// A run that does not exist.
pub fn not_found(id: i64) -> String {
    head(
        "not found",
        &format!(
            "<section><p>There is no run {id}.</p><p><a href=\"/\">&larr; fleet</a></p></section>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_text_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\u{1b}"
        );
        assert_eq!(url_value("a b&c"), "a%20b%26c");
    }

    #[test]
    fn times_are_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_693_700);
        assert_eq!(rfc3339(t), "2026-12-08T01:35:00Z");
    }
}
