//! The team's incident list, the ground truth a backtest is scored against: when each incident
//! started and ended and which service it hit, as YAML or as the CSV a postmortem tracker
//! exports.
//!
//! ```yaml
//! incidents:
//!   - id: INC-101                       # optional
//!     title: Checkout timeouts          # optional
//!     start: 2026-11-02T03:10:00Z
//!     end: 2026-11-02T04:05:00Z
//!     labels: {service: checkout}       # which alerts count for it
//! ```
//!
//! ```csv
//! id,title,start,end,service
//! INC-101,Checkout timeouts,2026-11-02T03:10:00Z,2026-11-02T04:05:00Z,checkout
//! ```
//!
//! In a CSV, `start` and `end` are required columns, `id` and `title` optional (any case),
//! and every other column is a label (an empty cell sets none): drop the columns of an
//! export that no alert carries (`status`, `owner`), or the score names the incidents no rule
//! can page for. Times are RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` read as UTC (the form
//! spreadsheets write).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// One incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// An alert counts for the incident when its labels carry every one of these.
    pub labels: BTreeMap<String, String>,
}

impl Incident {
    /// Whether labels (an alert's, with `alertname`) say it is about this incident's service.
    pub fn concerns(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlFile {
    incidents: Vec<YamlIncident>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlIncident {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: String,
    start: String,
    end: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A time as postmortem trackers write it: RFC 3339, or a UTC `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{text:?} is not a time (RFC 3339, or YYYY-MM-DD HH:MM[:SS] in UTC)"
    ))
}

fn incident(
    at: &str,
    id: Option<String>,
    index: usize,
    title: String,
    start: &str,
    end: &str,
    labels: BTreeMap<String, String>,
) -> Result<Incident, String> {
    let start = parse_time(start).map_err(|e| format!("{at}: start: {e}"))?;
    let end = parse_time(end).map_err(|e| format!("{at}: end: {e}"))?;
    if end <= start {
        return Err(format!("{at}: end {end} is not after start {start}"));
    }
    Ok(Incident {
        id: id
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("#{}", index + 1)),
        title,
        start,
        end,
        labels,
    })
}

/// Loads an incident list; `origin` names it in errors, and a `.csv` name (or text whose first
/// line is a CSV header with `start` and `end`) is read as CSV, anything else as YAML.
pub fn load(origin: &str, text: &str) -> Result<Vec<Incident>, String> {
    // Spreadsheets save UTF-8 with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or_default();
    let header = |name: &str| {
        first
            .split(',')
            .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case(name))
    };
    let csv_header = first.contains(',') && header("start") && header("end");
    let mut out = if origin.ends_with(".csv") || csv_header {
        load_csv(origin, text)?
    } else {
        load_yaml(origin, text)?
    };
    out.sort_by_key(|i| i.start);
    Ok(out)
}

fn load_yaml(origin: &str, text: &str) -> Result<Vec<Incident>, String> {
    let file: YamlFile =
        vigil_shared::config::parse_yaml(origin, text).map_err(|e| e.to_string())?;
    file.incidents
        .into_iter()
        .enumerate()
        .map(|(i, y)| {
            let at = format!(
                "{origin}: incidents[{i}]{}",
                y.id.as_deref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default()
            );
            incident(&at, y.id, i, y.title, &y.start, &y.end, y.labels)
        })
        .collect()
}

fn load_csv(origin: &str, text: &str) -> Result<Vec<Incident>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{origin}: the header row: {e}"))?
        .iter()
        .map(|h| h.to_owned())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(start), Some(end)) = (column("start"), column("end")) else {
        return Err(format!(
            "{origin}: the header row needs `start` and `end` columns (it has {})",
            headers.join(", ")
        ));
    };
    let (id, title) = (column("id"), column("title"));
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| p.line() as usize);
        let record = record.map_err(|e| format!("{origin}:{line}: {e}"))?;
        let cell = |c: usize| record.get(c).unwrap_or_default().to_owned();
        let labels: BTreeMap<String, String> = headers
            .iter()
            .enumerate()
            .filter(|(c, h)| {
                ![Some(start), Some(end), id, title].contains(&Some(*c)) && !h.is_empty()
            })
            .map(|(c, h)| (h.clone(), cell(c)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        out.push(incident(
            &format!("{origin}:{line}"),
            id.map(cell),
            i,
            title.map(cell).unwrap_or_default(),
            &cell(start),
            &cell(end),
            labels,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn yaml_and_csv_say_the_same_thing() {
        let yaml = r#"
incidents:
  - id: INC-2
    start: 2026-11-03T10:00:00Z
    end: 2026-11-03T10:30:00Z
    labels: {service: search}
  - id: INC-1
    title: Checkout timeouts
    start: 2026-11-02T03:10:00+01:00
    end: 2026-11-02T04:05:00+01:00
    labels: {service: checkout}
"#;
        let csv = "id,title,start,end,service,team\n\
                   INC-1,Checkout timeouts,2026-11-02 02:10,2026-11-02 03:05:00,checkout,\n\
                   INC-2,,2026-11-03T10:00:00Z,2026-11-03T10:30:00Z,search,\n";
        let a = load("incidents.yaml", yaml).expect("yaml");
        let b = load("incidents.csv", csv).expect("csv");
        assert_eq!(a, b);
        assert_eq!(a[0].id, "INC-1", "sorted by start");
        assert_eq!(a[0].start, t("2026-11-02T02:10:00Z"));
        assert_eq!(
            a[0].labels,
            BTreeMap::from([("service".to_owned(), "checkout".to_owned())]),
            "an empty cell sets no label"
        );
        assert_eq!(load("export", csv).expect("sniffed as CSV"), b);
        let excel = format!(
            "\u{feff}ID,Title,\"Start\",End,service,team\n{}",
            csv.lines().skip(1).collect::<Vec<_>>().join("\n")
        );
        let from_excel = load("export", &excel).expect("a byte-order mark, other case");
        assert_eq!(from_excel.len(), 2);
        assert_eq!(from_excel[0].id, "INC-1");
    }

    /// The README's example, and the CSV its comment shows, say the same of INC-101.
    #[test]
    fn the_example_file_loads_and_its_csv_agrees() {
        let text = include_str!("../../config/incidents.example.yaml");
        let all = load("config/incidents.example.yaml", text).expect("example");
        assert_eq!(all.len(), 2);
        let csv: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("#   "))
            .map(|l| format!("{l}\n"))
            .collect();
        let from_csv = load("incidents.csv", &csv).expect("the comment's CSV");
        assert_eq!(from_csv[0].start, all[0].start);
        assert_eq!(from_csv[0].end, all[0].end);
        assert_eq!(from_csv[0].labels, all[0].labels);
        assert_eq!(from_csv[0].id, "INC-101");
    }

    #[test]
    fn quoted_csv_cells_keep_their_commas() {
        let csv = "start,end,title,service\n\
                   2026-11-02T03:10:00Z,2026-11-02T04:05:00Z,\"Slow, then down\",checkout\n";
        let got = load("i.csv", csv).expect("csv");
        assert_eq!(got[0].title, "Slow, then down");
        assert_eq!(got[0].id, "#1", "numbered when the file has no id");
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let cases = [
            (
                "i.csv",
                "start,end\n2026-11-02T03:10:00Z,2026-11-02T03:00:00Z\n",
                "i.csv:2: end",
            ),
            (
                "i.csv",
                "start,end\nyesterday,2026-11-02T03:00:00Z\n",
                "i.csv:2: start",
            ),
            ("i.csv", "id,begin\n1,2\n", "needs `start` and `end`"),
            ("i.csv", "start,end\n2026-11-02T03:10:00Z\n", "i.csv:2"),
            (
                "i.yaml",
                "incidents:\n  - id: X\n    start: 2026-11-02T03:10:00Z\n",
                "end",
            ),
            (
                "i.yaml",
                "incidents:\n  - id: X\n    start: 2026-11-02T03:10:00Z\n    end: soon\n",
                "incidents[0] (X): end",
            ),
        ];
        for (origin, text, want) in cases {
            let err = load(origin, text).expect_err(want);
            assert!(err.contains(want), "{origin}: {err}");
        }
    }

    #[test]
    fn an_incident_concerns_the_alerts_with_its_labels() {
        let i = load(
            "i.csv",
            "start,end,service\n2026-11-02T03:10:00Z,2026-11-02T04:00:00Z,checkout\n",
        )
        .expect("csv")
        .remove(0);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(i.concerns(&labels(&[("service", "checkout"), ("severity", "page")])));
        assert!(!i.concerns(&labels(&[("service", "search")])));
        assert!(!i.concerns(&labels(&[("severity", "page")])));
    }
}
