//! Rendering of results, for people (aligned tables) and for programs (one JSON object each).
//!
//! Every command produces one [`Report`]; [`Report::human`] renders it as text ending in a
//! newline, [`Report::json`] as one JSON value printed on one line. Numbers in tables are grouped
//! by thousands and right-aligned; JSON keeps them raw. Decimals stay exact strings in JSON, and
//! timestamps are Unix milliseconds in JSON but ISO 8601 (UTC) in tables.

use std::fmt::Write as _;

use portrait_client::proto::{self as v1, value::Kind as ValueKind};
use portrait_client::{Error as ClientError, OverlapMatrix as _};
use serde_json::{Map, Value as Json, json};

mod behaviour;

/// One result of a command, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `portrait tables`
    Tables(Vec<v1::Table>),
    /// `portrait tags`
    Tree(v1::TreeNode),
    /// `portrait field`
    Field(v1::Field),
    /// `portrait count`
    Count(u64),
    /// One batch of `portrait members`.
    Members(v1::MembersBatch),
    /// `portrait contains`
    Contains { key: String, contains: bool },
    /// `portrait portrait`
    Portrait(v1::Portrait),
    /// `portrait group`
    Group(v1::GroupResponse),
    /// `portrait top`
    Top(v1::TopResponse),
    /// `portrait dist`
    Distribution(v1::DistributionResponse),
    /// `portrait agg`
    Aggregate(v1::AggregateResponse),
    /// `portrait overlap`, with the expressions in request order.
    Overlap {
        exprs: Vec<String>,
        response: v1::OverlapResponse,
    },
    /// `portrait sample`
    Sample(v1::SampleResponse),
    /// `portrait explain`
    Explain(v1::ExplainResponse),
    /// `portrait retention`, with the period of its offsets.
    Retention {
        period: v1::Period,
        response: v1::RetentionResponse,
    },
    /// `portrait funnel`
    Funnel(v1::FunnelResponse),
    /// `portrait freq`
    Frequency(v1::FrequencyResponse),
    /// `portrait active`, with the period of its series.
    Active {
        period: v1::Period,
        response: v1::ActiveResponse,
    },
    /// `portrait stats`
    Stats(Vec<v1::TableStats>),
    /// `portrait version`
    Version {
        client: String,
        server: v1::VersionResponse,
    },
}

impl Report {
    /// The report as text for a terminal, ending in a newline (empty for an empty members
    /// batch).
    pub fn human(&self) -> String {
        match self {
            Report::Tables(tables) => tables_human(tables),
            Report::Tree(root) => tree_human(root),
            Report::Field(field) => field_human(field),
            Report::Count(count) => format!("{count}\n"),
            Report::Members(batch) => batch.keys.iter().map(|k| format!("{k}\n")).collect(),
            Report::Contains { contains, .. } => format!("{contains}\n"),
            Report::Portrait(portrait) => portrait_human(portrait),
            Report::Group(group) => group_human(group),
            Report::Top(top) => top_human(top),
            Report::Distribution(dist) => distribution_human(dist),
            Report::Aggregate(agg) => aggregate_human(agg),
            Report::Overlap { exprs, response } => overlap_human(exprs, response),
            Report::Sample(sample) => sample.keys.iter().map(|k| format!("{k}\n")).collect(),
            Report::Explain(explain) => explain_human(explain),
            Report::Retention { period, response } => behaviour::retention_human(*period, response),
            Report::Funnel(funnel) => behaviour::funnel_human(funnel),
            Report::Frequency(freq) => behaviour::frequency_human(freq),
            Report::Active { period, response } => behaviour::active_human(*period, response),
            Report::Stats(stats) => stats_human(stats),
            Report::Version { client, server } => version_human(client, server),
        }
    }

    /// The report as one JSON value.
    pub fn json(&self) -> Json {
        match self {
            Report::Tables(tables) => {
                json!({ "tables": tables.iter().map(table_json).collect::<Vec<_>>() })
            }
            Report::Tree(root) => tree_json(root),
            Report::Field(field) => field_json(field),
            Report::Count(count) => json!({ "count": count }),
            Report::Members(batch) => {
                json!({ "keys": batch.keys, "next_cursor": batch.next_cursor })
            }
            Report::Contains { key, contains } => json!({ "key": key, "contains": contains }),
            Report::Portrait(portrait) => portrait_json(portrait),
            Report::Group(group) => group_json(group),
            Report::Top(top) => top_json(top),
            Report::Distribution(dist) => distribution_json(dist),
            Report::Aggregate(agg) => aggregate_json(agg),
            Report::Overlap { exprs, response } => overlap_json(exprs, response),
            Report::Sample(sample) => json!({ "keys": sample.keys, "seed": sample.seed }),
            Report::Explain(explain) => json!({
                "plan": explain.plan,
                "root": explain.root.as_ref().map(plan_json),
            }),
            Report::Retention { period, response } => behaviour::retention_json(*period, response),
            Report::Funnel(funnel) => behaviour::funnel_json(funnel),
            Report::Frequency(freq) => behaviour::frequency_json(freq),
            Report::Active { period, response } => behaviour::active_json(*period, response),
            Report::Stats(stats) => stats_json(stats),
            Report::Version { client, server } => json!({
                "client_version": client,
                "server_version": server.server_version,
                "api_version": server.api_version,
                "format_version": server.format_version,
                "oldest_supported_format_version": server.oldest_supported_format_version,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plain-text tables
// ---------------------------------------------------------------------------------------------

/// Horizontal alignment of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells, rendered with columns padded to their widest cell and separated by
/// two spaces. Trailing spaces are trimmed.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| display_width(h)).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - display_width(cell));
                match self.align[i] {
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&pad);
                    }
                    Align::Right => {
                        text.push_str(&pad);
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Terminal columns taken by `text`: East Asian wide characters count 2, combining marks 0.
pub fn display_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    match u32::from(c) {
        0x0300..=0x036F | 0x200B..=0x200F | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

/// `1234567` as `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A fraction in `[0, 1]` as a percentage with two decimals.
pub fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// A TGI index with one decimal.
pub fn tgi(value: f64) -> String {
    format!("{value:.1}")
}

/// A byte count in binary units (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Unix milliseconds as ISO 8601 UTC: `2026-11-25T08:30:00Z`, with `.mmm` when not whole.
pub fn format_unix_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (days, secs_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
    );
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if millis != 0 {
        let _ = write!(out, ".{millis:03}");
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A `Value` for people; `-` when absent.
pub fn value_human(value: Option<&v1::Value>) -> String {
    match value.and_then(|v| v.kind.as_ref()) {
        None => "-".to_owned(),
        Some(ValueKind::FlagValue(flag)) => flag.to_string(),
        Some(ValueKind::StringValue(s)) | Some(ValueKind::DecimalValue(s)) => s.clone(),
        Some(ValueKind::SetValue(set)) => set.values.join(", "),
        Some(ValueKind::IntValue(i)) => i.to_string(),
        Some(ValueKind::TimestampUnixMs(ms)) => format_unix_ms(*ms),
    }
}

/// A `Value` as JSON: booleans, strings, arrays and integers as such, decimals as exact strings,
/// timestamps as Unix milliseconds; `null` when absent.
pub fn value_json(value: Option<&v1::Value>) -> Json {
    match value.and_then(|v| v.kind.as_ref()) {
        None => Json::Null,
        Some(ValueKind::FlagValue(flag)) => json!(flag),
        Some(ValueKind::StringValue(s)) | Some(ValueKind::DecimalValue(s)) => json!(s),
        Some(ValueKind::SetValue(set)) => json!(set.values),
        Some(ValueKind::IntValue(i)) => json!(i),
        Some(ValueKind::TimestampUnixMs(ms)) => json!(ms),
    }
}

fn field_kind(kind: v1::FieldKind) -> &'static str {
    match kind {
        v1::FieldKind::Unspecified => "-",
        v1::FieldKind::Flag => "flag",
        v1::FieldKind::Enum => "enum",
        v1::FieldKind::Set => "set",
        v1::FieldKind::Int => "int",
        v1::FieldKind::Decimal => "decimal",
        v1::FieldKind::Timestamp => "timestamp",
        v1::FieldKind::Event => "event",
    }
}

fn key_kind(kind: v1::KeyKind) -> &'static str {
    match kind {
        v1::KeyKind::Unspecified => "-",
        v1::KeyKind::String => "string",
        v1::KeyKind::U64 => "u64",
    }
}

fn freshness(freshness: v1::Freshness) -> &'static str {
    match freshness {
        v1::Freshness::Unspecified => "-",
        v1::Freshness::Offline => "offline",
        v1::Freshness::Realtime => "realtime",
    }
}

fn sensitivity(sensitivity: v1::Sensitivity) -> &'static str {
    match sensitivity {
        v1::Sensitivity::Unspecified => "-",
        v1::Sensitivity::Public => "public",
        v1::Sensitivity::Internal => "internal",
        v1::Sensitivity::Sensitive => "sensitive",
    }
}

/// Renders `label: value` lines with the values aligned.
fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:width$}  {v}\n", format!("{k}:")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

fn tables_human(tables: &[v1::Table]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("KEYS", Align::Left),
        ("USERS", Align::Right),
        ("FIELDS", Align::Right),
        ("CREATED", Align::Left),
    ]);
    for t in tables {
        table.row(vec![
            t.name.clone(),
            key_kind(t.key_kind()).to_owned(),
            group_digits(t.users),
            group_digits(t.fields),
            format_unix_ms(t.created_unix_ms),
        ]);
    }
    table.render()
}

fn table_json(t: &v1::Table) -> Json {
    json!({
        "name": t.name,
        "key_kind": key_kind(t.key_kind()),
        "users": t.users,
        "fields": t.fields,
        "created_unix_ms": t.created_unix_ms,
    })
}

fn tree_human(root: &v1::TreeNode) -> String {
    fn label(node: &v1::TreeNode) -> String {
        if node.is_field {
            format!("{} ({})", node.name, field_kind(node.kind()))
        } else {
            format!("{}/", node.name)
        }
    }
    fn walk(node: &v1::TreeNode, prefix: &str, out: &mut String) {
        for (i, child) in node.children.iter().enumerate() {
            let last = i + 1 == node.children.len();
            let (branch, indent) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            let _ = writeln!(out, "{prefix}{branch}{}", label(child));
            walk(child, &format!("{prefix}{indent}"), out);
        }
    }
    let mut out = if root.path.is_empty() {
        "/\n".to_owned()
    } else if root.is_field {
        format!("{} ({})\n", root.path, field_kind(root.kind()))
    } else {
        format!("{}/\n", root.path)
    };
    walk(root, "", &mut out);
    out
}

fn tree_json(node: &v1::TreeNode) -> Json {
    let mut object = Map::new();
    object.insert("name".into(), json!(node.name));
    object.insert("path".into(), json!(node.path));
    object.insert("is_field".into(), json!(node.is_field));
    if node.is_field {
        object.insert("kind".into(), json!(field_kind(node.kind())));
    }
    object.insert(
        "children".into(),
        node.children.iter().map(tree_json).collect(),
    );
    Json::Object(object)
}

fn field_human(field: &v1::Field) -> String {
    let stats = field.stats.unwrap_or_default();
    let mut out = key_values(&[
        ("path", field.path.clone()),
        ("kind", field_kind(field.kind()).to_owned()),
        ("description", field.description.clone()),
        ("owner", field.owner.clone()),
        ("freshness", freshness(field.freshness()).to_owned()),
        ("sensitivity", sensitivity(field.sensitivity()).to_owned()),
        ("created", format_unix_ms(field.created_unix_ms)),
        ("updated", format_unix_ms(field.updated_unix_ms)),
        ("users covered", group_digits(stats.users_covered)),
        ("distinct values", group_digits(stats.distinct_values)),
    ]);
    if !field.versions.is_empty() {
        out.push_str("\nversions:\n");
        let mut table = Table::new(&[
            ("LABEL", Align::Left),
            ("CREATED", Align::Left),
            ("ROWS", Align::Right),
        ]);
        for version in &field.versions {
            table.row(vec![
                version.label.clone(),
                format_unix_ms(version.created_unix_ms),
                group_digits(version.rows),
            ]);
        }
        for line in table.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn field_json(field: &v1::Field) -> Json {
    let stats = field.stats.unwrap_or_default();
    json!({
        "path": field.path,
        "kind": field_kind(field.kind()),
        "description": field.description,
        "owner": field.owner,
        "freshness": freshness(field.freshness()),
        "sensitivity": sensitivity(field.sensitivity()),
        "created_unix_ms": field.created_unix_ms,
        "updated_unix_ms": field.updated_unix_ms,
        "versions": field.versions.iter().map(|v| json!({
            "label": v.label,
            "created_unix_ms": v.created_unix_ms,
            "rows": v.rows,
        })).collect::<Vec<_>>(),
        "stats": {
            "users_covered": stats.users_covered,
            "distinct_values": stats.distinct_values,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

fn portrait_human(portrait: &v1::Portrait) -> String {
    let mut table = Table::new(&[("PATH", Align::Left), ("VALUE", Align::Left)]);
    for value in &portrait.values {
        table.row(vec![value.path.clone(), value_human(value.value.as_ref())]);
    }
    format!("key: {}\n\n{}", portrait.key, table.render())
}

fn portrait_json(portrait: &v1::Portrait) -> Json {
    let values: Map<String, Json> = portrait
        .values
        .iter()
        .map(|v| (v.path.clone(), value_json(v.value.as_ref())))
        .collect();
    json!({ "key": portrait.key, "values": values })
}

// ---------------------------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------------------------

fn group_human(group: &v1::GroupResponse) -> String {
    let mut columns: Vec<(&str, Align)> = group
        .dims
        .iter()
        .map(|d| (d.as_str(), Align::Left))
        .collect();
    columns.extend([
        ("COUNT", Align::Right),
        ("SHARE", Align::Right),
        ("BASE COUNT", Align::Right),
        ("BASE SHARE", Align::Right),
        ("TGI", Align::Right),
    ]);
    let mut table = Table::new(&columns);
    for row in &group.rows {
        let mut cells: Vec<String> = (0..group.dims.len())
            .map(|i| value_human(row.values.get(i)))
            .collect();
        cells.extend([
            group_digits(row.count),
            percent(row.share),
            group_digits(row.base_count),
            percent(row.base_share),
            tgi(row.tgi),
        ]);
        table.row(cells);
    }
    format!(
        "{}\ncrowd: {} users, base: {} users\n",
        table.render(),
        group_digits(group.total),
        group_digits(group.base_total)
    )
}

fn group_json(group: &v1::GroupResponse) -> Json {
    json!({
        "dims": group.dims,
        "total": group.total,
        "base_total": group.base_total,
        "rows": group.rows.iter().map(|row| json!({
            "values": row.values.iter().map(|v| value_json(Some(v))).collect::<Vec<_>>(),
            "count": row.count,
            "share": row.share,
            "base_count": row.base_count,
            "base_share": row.base_share,
            "tgi": row.tgi,
        })).collect::<Vec<_>>(),
    })
}

fn top_human(top: &v1::TopResponse) -> String {
    let mut table = Table::new(&[
        ("PATH", Align::Left),
        ("VALUE", Align::Left),
        ("COUNT", Align::Right),
        ("SHARE", Align::Right),
        ("TGI", Align::Right),
    ]);
    for row in &top.rows {
        table.row(vec![
            row.path.clone(),
            value_human(row.value.as_ref()),
            group_digits(row.count),
            percent(row.share),
            tgi(row.tgi),
        ]);
    }
    format!(
        "{}\ncrowd: {} users\n",
        table.render(),
        group_digits(top.total)
    )
}

fn top_json(top: &v1::TopResponse) -> Json {
    json!({
        "total": top.total,
        "rows": top.rows.iter().map(|row| json!({
            "path": row.path,
            "value": value_json(row.value.as_ref()),
            "count": row.count,
            "share": row.share,
            "tgi": row.tgi,
        })).collect::<Vec<_>>(),
    })
}

/// Width of the widest histogram bar, in characters.
const BAR_WIDTH: usize = 30;

fn distribution_human(dist: &v1::DistributionResponse) -> String {
    let mut table = Table::new(&[
        ("RANGE", Align::Left),
        ("COUNT", Align::Right),
        ("SHARE", Align::Right),
        ("", Align::Left),
    ]);
    let peak = dist.buckets.iter().map(|b| b.count).max().unwrap_or(0);
    for bucket in &dist.buckets {
        let lower = bucket.lower.as_ref().filter(|v| v.kind.is_some());
        let upper = bucket.upper.as_ref().filter(|v| v.kind.is_some());
        let range = format!(
            "[{}, {})",
            lower.map_or("-inf".to_owned(), |v| value_human(Some(v))),
            upper.map_or("+inf".to_owned(), |v| value_human(Some(v))),
        );
        let share = if dist.total == 0 {
            0.0
        } else {
            bucket.count as f64 / dist.total as f64
        };
        let bar = if peak == 0 {
            0
        } else {
            ((bucket.count as f64 / peak as f64) * BAR_WIDTH as f64).round() as usize
        };
        table.row(vec![
            range,
            group_digits(bucket.count),
            percent(share),
            "█".repeat(bar),
        ]);
    }
    format!(
        "{}\nwith a value: {}, without: {}\n",
        table.render(),
        group_digits(dist.total),
        group_digits(dist.missing)
    )
}

fn distribution_json(dist: &v1::DistributionResponse) -> Json {
    json!({
        "total": dist.total,
        "missing": dist.missing,
        "buckets": dist.buckets.iter().map(|b| json!({
            "lower": value_json(b.lower.as_ref()),
            "upper": value_json(b.upper.as_ref()),
            "count": b.count,
        })).collect::<Vec<_>>(),
    })
}

/// `50` as `p50`, `99.9` as `p99.9`.
fn percentile_label(p: f64) -> String {
    format!("p{p}")
}

fn aggregate_human(agg: &v1::AggregateResponse) -> String {
    let mut pairs = vec![
        ("count", group_digits(agg.count)),
        ("sum", value_human(agg.sum.as_ref())),
        ("avg", format!("{:.4}", agg.avg)),
        ("min", value_human(agg.min.as_ref())),
        ("max", value_human(agg.max.as_ref())),
    ];
    let labels: Vec<String> = agg
        .percentiles
        .iter()
        .map(|p| percentile_label(p.percentile))
        .collect();
    for (label, p) in labels.iter().zip(&agg.percentiles) {
        pairs.push((label.as_str(), value_human(p.value.as_ref())));
    }
    key_values(&pairs)
}

fn aggregate_json(agg: &v1::AggregateResponse) -> Json {
    json!({
        "count": agg.count,
        "sum": value_json(agg.sum.as_ref()),
        "avg": agg.avg,
        "min": value_json(agg.min.as_ref()),
        "max": value_json(agg.max.as_ref()),
        "percentiles": agg.percentiles.iter().map(|p| json!({
            "percentile": p.percentile,
            "value": value_json(p.value.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

fn overlap_human(exprs: &[String], response: &v1::OverlapResponse) -> String {
    let n = response.n as usize;
    let labels: Vec<String> = (1..=n).map(|i| format!("#{i}")).collect();
    let mut columns = vec![("", Align::Left)];
    columns.extend(labels.iter().map(|l| (l.as_str(), Align::Right)));
    let mut table = Table::new(&columns);
    for (i, label) in labels.iter().enumerate() {
        let mut cells = vec![label.clone()];
        cells.extend((0..n).map(|j| response.get(i, j).map_or("?".to_owned(), group_digits)));
        table.row(cells);
    }
    let mut out = table.render();
    out.push('\n');
    for (label, expr) in labels.iter().zip(exprs) {
        let _ = writeln!(out, "{label} = {expr}");
    }
    out
}

fn overlap_json(exprs: &[String], response: &v1::OverlapResponse) -> Json {
    let n = response.n as usize;
    let matrix: Vec<Vec<Option<u64>>> = (0..n)
        .map(|i| (0..n).map(|j| response.get(i, j)).collect())
        .collect();
    json!({ "exprs": exprs, "matrix": matrix })
}

fn explain_human(explain: &v1::ExplainResponse) -> String {
    fn stats(node: &v1::PlanNode) -> String {
        let mut s = format!("est {}", group_digits(node.estimated_cardinality));
        if let Some(actual) = node.actual_cardinality {
            let _ = write!(s, ", actual {}", group_digits(actual));
        }
        if let Some(us) = node.time_us {
            let _ = write!(s, ", {} µs", group_digits(us));
        }
        s
    }
    fn walk(node: &v1::PlanNode, prefix: &str, out: &mut String) {
        for (i, child) in node.children.iter().enumerate() {
            let last = i + 1 == node.children.len();
            let (branch, indent) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            let _ = writeln!(out, "{prefix}{branch}{}  ({})", child.label, stats(child));
            walk(child, &format!("{prefix}{indent}"), out);
        }
    }
    let mut out = String::new();
    if let Some(root) = &explain.root {
        let _ = writeln!(out, "{}  ({})", root.label, stats(root));
        walk(root, "", &mut out);
    } else {
        out.push_str(&explain.plan);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn plan_json(node: &v1::PlanNode) -> Json {
    json!({
        "label": node.label,
        "estimated_cardinality": node.estimated_cardinality,
        "actual_cardinality": node.actual_cardinality,
        "time_us": node.time_us,
        "children": node.children.iter().map(plan_json).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------------------------

fn stats_human(stats: &[v1::TableStats]) -> String {
    let mut table = Table::new(&[
        ("TABLE", Align::Left),
        ("USERS", Align::Right),
        ("FIELDS", Align::Right),
        ("ON DISK", Align::Right),
    ]);
    for t in stats {
        table.row(vec![
            t.name.clone(),
            group_digits(t.users),
            group_digits(t.fields),
            human_bytes(t.bytes_on_disk),
        ]);
    }
    table.render()
}

fn stats_json(stats: &[v1::TableStats]) -> Json {
    json!({
        "tables": stats.iter().map(|t| json!({
            "name": t.name,
            "users": t.users,
            "fields": t.fields,
            "bytes_on_disk": t.bytes_on_disk,
        })).collect::<Vec<_>>(),
    })
}

fn version_human(client: &str, server: &v1::VersionResponse) -> String {
    key_values(&[
        ("client", client.to_owned()),
        ("server", server.server_version.clone()),
        ("api", server.api_version.clone()),
        (
            "format",
            format!(
                "{} (opens {} and later)",
                server.format_version, server.oldest_supported_format_version
            ),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The error and its causes joined by `: `, leaving out a cause whose text the previous one
/// already ends with (error types that print their source as part of themselves).
pub fn cause_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if previous.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        previous = text;
    }
    out
}

/// An error for stderr: `error: ` and the cause chain, plus, when the server located the problem
/// in `expr`, the offending line with a caret under the column.
pub fn error_human(error: &anyhow::Error, expr: Option<&str>) -> String {
    let mut out = format!("error: {}\n", cause_chain(error));
    let position = error
        .downcast_ref::<ClientError>()
        .and_then(ClientError::position);
    if let (Some(position), Some(expr)) = (position, expr) {
        let line_index = position.line.saturating_sub(1) as usize;
        if let Some(line) = expr.lines().nth(line_index) {
            // Tabs are kept so the caret lines up whatever the terminal's tab width.
            let pad: String = line
                .chars()
                .take(position.column.saturating_sub(1) as usize)
                .map(|c| {
                    if c == '\t' {
                        "\t".to_owned()
                    } else {
                        " ".repeat(char_width(c))
                    }
                })
                .collect();
            let number = position.line.to_string();
            let gutter = " ".repeat(number.len());
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{number} | {line}");
            let _ = writeln!(out, "{gutter} | {pad}^");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use portrait_client::proto::StringSet;
    use tonic::{Code, Status, metadata::MetadataMap};

    use super::*;

    fn int(i: i64) -> v1::Value {
        v1::Value {
            kind: Some(ValueKind::IntValue(i)),
        }
    }

    fn string(s: &str) -> v1::Value {
        v1::Value {
            kind: Some(ValueKind::StringValue(s.into())),
        }
    }

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("X", Align::Left),
        ]);
        table.row(vec!["a".into(), "1".into(), String::new()]);
        table.row(vec!["long".into(), "1,000".into(), "z".into()]);
        assert_eq!(
            table.render(),
            "NAME      N  X\na         1\nlong  1,000  z\n"
        );
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(display_width("北京"), 4);
        assert_eq!(display_width("e\u{301}"), 1);
        let mut table = Table::new(&[("CITY", Align::Left), ("N", Align::Right)]);
        table.row(vec!["北京".into(), "1".into()]);
        table.row(vec!["Paris".into(), "2".into()]);
        assert_eq!(table.render(), "CITY   N\n北京   1\nParis  2\n");
    }

    #[test]
    fn scalars_format_for_people() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(percent(0.12345), "12.35%");
        assert_eq!(tgi(123.45), "123.5");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_ms(1_795_564_800_000), "2026-11-25T00:00:00Z");
        assert_eq!(format_unix_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_unix_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn values_render_by_kind() {
        let set = v1::Value {
            kind: Some(ValueKind::SetValue(StringSet {
                values: vec!["a".into(), "b".into()],
            })),
        };
        let decimal = v1::Value {
            kind: Some(ValueKind::DecimalValue("12.50".into())),
        };
        let flag = v1::Value {
            kind: Some(ValueKind::FlagValue(true)),
        };
        let ts = v1::Value {
            kind: Some(ValueKind::TimestampUnixMs(0)),
        };
        assert_eq!(value_human(Some(&set)), "a, b");
        assert_eq!(value_json(Some(&set)), json!(["a", "b"]));
        assert_eq!(value_human(Some(&decimal)), "12.50");
        assert_eq!(value_json(Some(&decimal)), json!("12.50"));
        assert_eq!(value_json(Some(&flag)), json!(true));
        assert_eq!(value_human(Some(&ts)), "1970-01-01T00:00:00Z");
        assert_eq!(value_json(Some(&ts)), json!(0));
        assert_eq!(value_json(Some(&int(-3))), json!(-3));
        assert_eq!(value_human(None), "-");
        assert_eq!(value_json(Some(&v1::Value { kind: None })), Json::Null);
    }

    #[test]
    fn count_is_a_bare_number_or_one_object() {
        assert_eq!(Report::Count(1234).human(), "1234\n");
        assert_eq!(Report::Count(1234).json().to_string(), r#"{"count":1234}"#);
    }

    #[test]
    fn members_batches_print_keys_or_keys_with_cursor() {
        let batch = v1::MembersBatch {
            keys: vec!["u1".into(), "u2".into()],
            next_cursor: "c".into(),
            ..Default::default()
        };
        assert_eq!(Report::Members(batch.clone()).human(), "u1\nu2\n");
        assert_eq!(
            Report::Members(batch).json(),
            json!({"keys": ["u1", "u2"], "next_cursor": "c"})
        );
    }

    #[test]
    fn contains_reports_a_boolean() {
        let report = Report::Contains {
            key: "u1".into(),
            contains: false,
        };
        assert_eq!(report.human(), "false\n");
        assert_eq!(report.json(), json!({"key": "u1", "contains": false}));
    }

    #[test]
    fn tables_list_renders_kinds_and_counts() {
        let report = Report::Tables(vec![v1::Table {
            name: "users".into(),
            key_kind: v1::KeyKind::U64 as i32,
            users: 1_500_000,
            fields: 42,
            created_unix_ms: 0,
        }]);
        assert_eq!(
            report.human(),
            "NAME   KEYS      USERS  FIELDS  CREATED\n\
             users  u64   1,500,000      42  1970-01-01T00:00:00Z\n"
        );
        assert_eq!(report.json()["tables"][0]["key_kind"], "u64");
        assert_eq!(report.json()["tables"][0]["users"], 1_500_000);
    }

    fn tree() -> v1::TreeNode {
        let leaf = |name: &str, kind: v1::FieldKind| v1::TreeNode {
            name: name.into(),
            path: format!("interest/{name}"),
            children: vec![],
            is_field: true,
            kind: kind as i32,
        };
        v1::TreeNode {
            name: String::new(),
            path: String::new(),
            is_field: false,
            kind: 0,
            children: vec![
                v1::TreeNode {
                    name: "interest".into(),
                    path: "interest".into(),
                    is_field: false,
                    kind: 0,
                    children: vec![
                        leaf("music", v1::FieldKind::Flag),
                        leaf("sports", v1::FieldKind::Set),
                    ],
                },
                v1::TreeNode {
                    name: "vip".into(),
                    path: "vip".into(),
                    is_field: true,
                    kind: v1::FieldKind::Flag as i32,
                    children: vec![],
                },
            ],
        }
    }

    #[test]
    fn tree_draws_branches() {
        assert_eq!(
            Report::Tree(tree()).human(),
            "/\n├── interest/\n│   ├── music (flag)\n│   └── sports (set)\n└── vip (flag)\n"
        );
        let json = Report::Tree(tree()).json();
        assert_eq!(json["children"][0]["children"][1]["kind"], "set");
        assert_eq!(json["children"][0].get("kind"), None);
    }

    #[test]
    fn field_lists_metadata_and_versions() {
        let field = v1::Field {
            path: "demographic/gender".into(),
            kind: v1::FieldKind::Enum as i32,
            description: "Declared gender".into(),
            owner: "growth".into(),
            freshness: v1::Freshness::Offline as i32,
            sensitivity: v1::Sensitivity::Internal as i32,
            created_unix_ms: 0,
            updated_unix_ms: 1_795_564_800_000,
            versions: vec![v1::FieldVersion {
                label: "2026-11-25".into(),
                created_unix_ms: 1_795_564_800_000,
                rows: 12_000,
            }],
            stats: Some(v1::FieldStats {
                users_covered: 11_000,
                distinct_values: 3,
            }),
        };
        let human = Report::Field(field.clone()).human();
        assert!(
            human.starts_with("path:             demographic/gender\nkind:             enum\n"),
            "{human}"
        );
        assert!(human.contains("users covered:    11,000\n"), "{human}");
        assert!(
            human.contains("  2026-11-25  2026-11-25T00:00:00Z  12,000\n"),
            "{human}"
        );
        let json = Report::Field(field).json();
        assert_eq!(json["sensitivity"], "internal");
        assert_eq!(json["versions"][0]["rows"], 12_000);
        assert_eq!(json["stats"]["users_covered"], 11_000);
    }

    #[test]
    fn portrait_json_is_keyed_by_path() {
        let portrait = v1::Portrait {
            key: "u42".into(),
            values: vec![
                v1::FieldValue {
                    path: "age".into(),
                    value: Some(int(31)),
                },
                v1::FieldValue {
                    path: "city".into(),
                    value: Some(string("Shanghai")),
                },
            ],
        };
        assert_eq!(
            Report::Portrait(portrait.clone()).human(),
            "key: u42\n\nPATH  VALUE\nage   31\ncity  Shanghai\n"
        );
        assert_eq!(
            Report::Portrait(portrait).json(),
            json!({"key": "u42", "values": {"age": 31, "city": "Shanghai"}})
        );
    }

    #[test]
    fn group_has_a_column_per_dimension() {
        let group = v1::GroupResponse {
            dims: vec!["gender".into()],
            rows: vec![
                v1::GroupRow {
                    values: vec![string("female")],
                    count: 600,
                    share: 0.6,
                    base_count: 5_000,
                    base_share: 0.5,
                    tgi: 120.0,
                },
                v1::GroupRow {
                    values: vec![v1::Value { kind: None }],
                    count: 400,
                    share: 0.4,
                    base_count: 5_000,
                    base_share: 0.5,
                    tgi: 80.0,
                },
            ],
            total: 1_000,
            base_total: 10_000,
        };
        assert_eq!(
            Report::Group(group.clone()).human(),
            "gender  COUNT   SHARE  BASE COUNT  BASE SHARE    TGI\n\
             female    600  60.00%       5,000      50.00%  120.0\n\
             -         400  40.00%       5,000      50.00%   80.0\n\
             \ncrowd: 1,000 users, base: 10,000 users\n"
        );
        let json = Report::Group(group).json();
        assert_eq!(json["rows"][0]["values"], json!(["female"]));
        assert_eq!(json["rows"][1]["values"], json!([null]));
        assert_eq!(json["base_total"], 10_000);
    }

    #[test]
    fn top_rows_show_path_value_and_index() {
        let top = v1::TopResponse {
            rows: vec![v1::TopRow {
                path: "interest".into(),
                value: Some(string("golf")),
                count: 50,
                share: 0.05,
                tgi: 250.0,
            }],
            total: 1_000,
        };
        assert_eq!(
            Report::Top(top.clone()).human(),
            "PATH      VALUE  COUNT  SHARE    TGI\ninterest  golf      50  5.00%  250.0\n\ncrowd: 1,000 users\n"
        );
        assert_eq!(Report::Top(top).json()["rows"][0]["value"], "golf");
    }

    #[test]
    fn distribution_draws_unbounded_ends_and_bars() {
        let dist = v1::DistributionResponse {
            buckets: vec![
                v1::Bucket {
                    lower: None,
                    upper: Some(int(18)),
                    count: 10,
                },
                v1::Bucket {
                    lower: Some(int(18)),
                    upper: None,
                    count: 30,
                },
            ],
            total: 40,
            missing: 2,
        };
        let human = Report::Distribution(dist.clone()).human();
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines[0], "RANGE       COUNT   SHARE");
        assert_eq!(
            lines[1],
            format!("[-inf, 18)     10  25.00%  {}", "█".repeat(10))
        );
        assert_eq!(
            lines[2],
            format!("[18, +inf)     30  75.00%  {}", "█".repeat(30))
        );
        assert_eq!(lines[4], "with a value: 40, without: 2");
        let json = Report::Distribution(dist).json();
        assert_eq!(
            json["buckets"][0],
            json!({"lower": null, "upper": 18, "count": 10})
        );
    }

    #[test]
    fn aggregate_lists_statistics_and_percentiles() {
        let agg = v1::AggregateResponse {
            count: 3,
            sum: Some(int(60)),
            avg: 20.0,
            min: Some(int(10)),
            max: Some(int(30)),
            percentiles: vec![
                v1::Percentile {
                    percentile: 50.0,
                    value: Some(int(20)),
                },
                v1::Percentile {
                    percentile: 99.9,
                    value: Some(int(30)),
                },
            ],
        };
        assert_eq!(
            Report::Aggregate(agg.clone()).human(),
            "count:  3\nsum:    60\navg:    20.0000\nmin:    10\nmax:    30\np50:    20\np99.9:  30\n"
        );
        let json = Report::Aggregate(agg).json();
        assert_eq!(
            json["percentiles"][1],
            json!({"percentile": 99.9, "value": 30})
        );
    }

    #[test]
    fn overlap_is_a_labelled_matrix() {
        let report = Report::Overlap {
            exprs: vec!["vip".into(), "age >= 30".into()],
            response: v1::OverlapResponse {
                n: 2,
                matrix: vec![1_000, 250, 250, 4_000],
            },
        };
        assert_eq!(
            report.human(),
            "       #1     #2\n#1  1,000    250\n#2    250  4,000\n\n#1 = vip\n#2 = age >= 30\n"
        );
        assert_eq!(report.json()["matrix"], json!([[1000, 250], [250, 4000]]));
    }

    #[test]
    fn explain_renders_the_plan_tree() {
        let leaf = |label: &str, est| v1::PlanNode {
            label: label.into(),
            estimated_cardinality: est,
            actual_cardinality: None,
            time_us: None,
            children: vec![],
        };
        let explain = v1::ExplainResponse {
            plan: "AND_NOT(vip, risk)".into(),
            root: Some(v1::PlanNode {
                label: "AND_NOT".into(),
                estimated_cardinality: 900,
                actual_cardinality: Some(880),
                time_us: Some(1_200),
                children: vec![leaf("flag vip", 1_000), leaf("flag risk", 100)],
            }),
        };
        assert_eq!(
            Report::Explain(explain.clone()).human(),
            "AND_NOT  (est 900, actual 880, 1,200 µs)\n\
             ├── flag vip  (est 1,000)\n\
             └── flag risk  (est 100)\n"
        );
        let json = Report::Explain(explain.clone()).json();
        assert_eq!(json["root"]["children"][1]["label"], "flag risk");
        assert_eq!(json["root"]["time_us"], 1_200);
        let text_only = v1::ExplainResponse {
            root: None,
            ..explain
        };
        assert_eq!(Report::Explain(text_only).human(), "AND_NOT(vip, risk)\n");
    }

    #[test]
    fn stats_and_version_render() {
        let stats = Report::Stats(vec![v1::TableStats {
            name: "users".into(),
            users: 10,
            fields: 2,
            bytes_on_disk: 2048,
        }]);
        assert_eq!(
            stats.human(),
            "TABLE  USERS  FIELDS  ON DISK\nusers     10       2  2.0 KiB\n"
        );
        assert_eq!(stats.json()["tables"][0]["bytes_on_disk"], 2048);
        let version = Report::Version {
            client: "0.1.0".into(),
            server: v1::VersionResponse {
                server_version: "0.2.0".into(),
                format_version: 2,
                oldest_supported_format_version: 1,
                api_version: "v1".into(),
            },
        };
        assert_eq!(
            version.human(),
            "client:  0.1.0\nserver:  0.2.0\napi:     v1\nformat:  2 (opens 1 and later)\n"
        );
        assert_eq!(version.json()["format_version"], 2);
    }

    #[test]
    fn sample_prints_keys_and_reports_the_seed() {
        let sample = v1::SampleResponse {
            keys: vec!["a".into(), "b".into()],
            seed: 7,
        };
        assert_eq!(Report::Sample(sample.clone()).human(), "a\nb\n");
        assert_eq!(
            Report::Sample(sample).json(),
            json!({"keys": ["a", "b"], "seed": 7})
        );
    }

    #[test]
    fn expression_errors_point_at_the_column() {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-portrait-line", "2".parse().unwrap());
        metadata.insert("x-portrait-column", "5".parse().unwrap());
        let status = Status::with_metadata(Code::InvalidArgument, "unexpected `>`", metadata);
        let error = anyhow::Error::new(ClientError::from(status));
        assert_eq!(
            error_human(&error, Some("vip\n北京 >> 3")),
            "error: invalid argument: unexpected `>`\n  |\n2 | 北京 >> 3\n  |       ^\n"
        );
        assert_eq!(
            error_human(&error, None),
            "error: invalid argument: unexpected `>`\n"
        );
        assert_eq!(
            error_human(&error, Some("vip\n\tx >> 3")),
            "error: invalid argument: unexpected `>`\n  |\n2 | \tx >> 3\n  | \t   ^\n"
        );
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error: {0}")]
        struct Outer(#[source] std::io::Error);
        let error = anyhow::Error::new(Outer(io_error("invalid URI"))).context("bad address");
        assert_eq!(
            cause_chain(&error),
            "bad address: transport error: invalid URI"
        );
    }

    fn io_error(text: &str) -> std::io::Error {
        std::io::Error::other(text.to_owned())
    }

    #[test]
    fn other_errors_show_their_cause_chain() {
        let error =
            anyhow::Error::new(ClientError::NotFound("table `x`".into())).context("cannot count");
        assert_eq!(
            error_human(&error, Some("vip")),
            "error: cannot count: not found: table `x`\n"
        );
    }
}
