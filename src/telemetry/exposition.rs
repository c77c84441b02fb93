//! The two text formats `/metrics` speaks, chosen by the scraper's
//! `Accept` header: OpenMetrics 1.0, which the registry writes, and the
//! Prometheus text format 0.0.4, which older scrapers and Prometheus's own
//! text parser read, made from it.
//!
//! The two differ where a scraper would misread the other: in 0.0.4 a
//! counter's `# HELP` and `# TYPE` name its `_total` series (else the
//! counter is typed `unknown`), `info` is a gauge named `_info`, and there
//! is no `# UNIT`, no `_created` series and no `# EOF`.

use std::collections::HashSet;

/// A text format of the exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header (`None`: no
    /// header): the one of the two it weighs highest; the 0.0.4 text when it
    /// names neither, or weighs them alike.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let (mut open_metrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut quality = 1.0_f32;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    quality = value.trim().parse().unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics > text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a body in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The 0.0.4 text of an OpenMetrics exposition.
pub(crate) fn to_text(open_metrics: &str) -> String {
    // The families whose series names differ from the family's name.
    let mut counters = HashSet::new();
    let mut infos = HashSet::new();
    for line in open_metrics.lines() {
        if let Some((name, kind)) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_once(' '))
        {
            match kind {
                "counter" => counters.insert(name),
                "info" => infos.insert(name),
                _ => false,
            };
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?.split_once(' ')?)));
        match described {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}\n"));
            }
            Some(("# TYPE ", (name, _))) if infos.contains(name) => {
                out.push_str(&format!("# TYPE {name}_info gauge\n"));
            }
            Some(("# HELP ", (name, rest))) if infos.contains(name) => {
                out.push_str(&format!("# HELP {name}_info {rest}\n"));
            }
            Some((_, (_, _))) => {
                out.push_str(line);
                out.push('\n');
            }
            None if is_created(line, &counters) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Whether `line` is a counter's `_created` series, which 0.0.4 has not.
fn is_created(line: &str, counters: &HashSet<&str>) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or_default();
    name.strip_suffix("_created")
        .is_some_and(|family| counters.contains(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_METRICS: &str = "\
# HELP calls Calls made.
# TYPE calls counter
calls_total{code=\"OK\"} 3
calls_created{code=\"OK\"} 1700000000.0
# HELP up Whether up.
# TYPE up gauge
up 1
# HELP build Build.
# TYPE build info
build_info{version=\"1\"} 1
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"+Inf\"} 2
# EOF
";

    #[test]
    fn the_text_format_names_counters_by_their_series() {
        assert_eq!(
            to_text(OPEN_METRICS),
            "\
# HELP calls_total Calls made.
# TYPE calls_total counter
calls_total{code=\"OK\"} 3
# HELP up Whether up.
# TYPE up gauge
up 1
# HELP build_info Build.
# TYPE build_info gauge
build_info{version=\"1\"} 1
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"+Inf\"} 2
"
        );
    }

    #[test]
    fn the_scraper_gets_the_format_it_weighs_highest() {
        // What Prometheus 3 sends, OpenMetrics first.
        let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
            application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;\
            escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        // Prometheus told to scrape the classic format, curl, no header.
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/json, garbage;;q=x")),
            Format::Text
        );
    }
}
