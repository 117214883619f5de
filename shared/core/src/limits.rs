//! Every limit on what one caller may send, store or make the service do, written once.
//!
//! Each limit is a constant here and a row of [`TABLE`]; the README's "Limits" table
//! shows the same rows (a test checks that the two agree), and no other document states
//! a limit's value. Limits a deployment may change name their environment variable; the
//! constant is then the default.

/// How a limit's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A byte count, shown in KiB, MiB or GiB when it divides evenly.
    Bytes,
    /// A plain count.
    Count,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// A ratio (`100×`).
    Ratio,
}

/// One row of the limits table.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// What is limited, as the README's table says it.
    pub name: &'static str,
    /// The value (the default, when `variable` can change it).
    pub value: u64,
    /// How the value reads.
    pub unit: Unit,
    /// The environment variable that changes it, if any.
    pub variable: Option<&'static str>,
    /// What exceeding it answers.
    pub answer: &'static str,
}

impl Limit {
    /// The value as the README shows it.
    pub fn shown(&self) -> String {
        let v = self.value;
        match self.unit {
            Unit::Bytes => {
                for (shift, name) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
                    if v >= 1 << shift && v % (1 << shift) == 0 {
                        return format!("{} {name}", v >> shift);
                    }
                }
                format!("{} bytes", grouped(v))
            }
            Unit::Count => grouped(v),
            Unit::Seconds => format!("{} s", grouped(v)),
            Unit::Millis => format!("{} ms", grouped(v)),
            Unit::Ratio => format!("{v}×"),
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- Request bodies -------------------------------------------------------------------

/// Largest request body: a synchronous Lambda invocation's payload limit.
pub const MAX_BODY_BYTES: usize = 6 << 20;

/// The rows of [`TABLE`], in the README's order.
pub const TABLE: &[Limit] = &[Limit {
    name: "Request body",
    value: MAX_BODY_BYTES as u64,
    unit: Unit::Bytes,
    variable: None,
    answer: "413 `payload-too-large`",
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_people_write_them() {
        let limit = |value, unit| Limit {
            name: "x",
            value,
            unit,
            variable: None,
            answer: "",
        };
        assert_eq!(limit(6 << 20, Unit::Bytes).shown(), "6 MiB");
        assert_eq!(limit(1500, Unit::Bytes).shown(), "1,500 bytes");
        assert_eq!(limit(10_000, Unit::Count).shown(), "10,000");
        assert_eq!(limit(200, Unit::Ratio).shown(), "200×");
    }

    #[test]
    fn every_limit_is_named_once() {
        let mut names: Vec<&str> = TABLE.iter().map(|l| l.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a limit is listed twice");
    }
}
