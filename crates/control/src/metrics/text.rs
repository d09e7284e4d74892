//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Why by hand: every value is summed from the workers' counters at scrape time, and
//! the label sets change with each policy snapshot, so the registries of the client
//! crates (built around long-lived counter objects) would only be filled to be read
//! once; see docs/decisions.md for the measurement. This module must never emit a
//! sample before its family's `# HELP`/`# TYPE` lines, nor an unescaped label value.

use std::fmt::Write;

/// The content type a scraper expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: integers print exactly, floats in Go's spelling of the specials.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// A page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: `# HELP` and `# TYPE`. Samples of it follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.name());
        self.out.push('\n');
    }

    /// One sample line; `name` may carry a suffix (`_bucket`, `_sum`, `_count`).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_then_samples_with_escaped_labels() {
        let mut e = Exposition::new();
        e.family("nvlb_x_total", Kind::Counter, "Things.\nMore");
        e.sample("nvlb_x_total", &[("vip", "a\"b\\c\nd"), ("k", "v")], 7u64);
        e.sample("nvlb_x_total", &[], 0.25f64);
        e.sample("nvlb_x_total", &[], f64::INFINITY);
        e.sample("nvlb_x_total", &[], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP nvlb_x_total Things.\\nMore\n# TYPE nvlb_x_total counter\n\
             nvlb_x_total{vip=\"a\\\"b\\\\c\\nd\",k=\"v\"} 7\n\
             nvlb_x_total 0.25\nnvlb_x_total +Inf\nnvlb_x_total NaN\n"
        );
    }
}
