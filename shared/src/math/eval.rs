//! Evaluation of a parsed expression over the series it names, with the semantics of the
//! CloudWatch User Guide's "Using metric math" page (section "Metric math syntax and
//! functions"):
//! - arithmetic between two series runs over the timestamps of either, a missing value being
//!   0; a point whose result is not a finite number (a division by zero) is dropped;
//! - comparisons and `AND` / `OR` give 1 or 0, a missing value being 0 here too;
//! - `DIFF` and `RATE` take each point against the one before it, so the first point of the
//!   range has none; `RATE` divides by the seconds between the two points;
//! - `SUM`, `AVG`, `MIN`, `MAX` of one series give a number over the whole range; of an array,
//!   one series of the values at each timestamp (`SUM` and `AVG` counting a missing value as
//!   0, as the page says of `AVG`; `MIN` and `MAX` over the series that have one, where the
//!   page is silent);
//! - `FILL` fills the periods of the range (from its start, every period) that have no point:
//!   with a number, a series' value at that time, `REPEAT` (the newest real value before; none
//!   before the first) or `LINEAR` (between the real values on either side; none at the ends);
//! - `IF(c, t, f)` follows the page's tables, point by point over `c`: where `c` is true, `t`
//!   (0 where the series `t` has no point), where false, `f` (dropped where the series `f` has
//!   no point or `f` is left out); a number `c` picks `t` or `f` whole (a `c` that is not a
//!   number, such as the `AVG` of no points, gives no points);
//! - a reduction of one series (`SUM(m)`, `AVG(m)`, ...) runs over the range read, which for
//!   the alert function is the widest look-back of all its rules: the page advises against
//!   such functions in alarms for the same reason.

use std::collections::BTreeMap;

use super::parse::{BinOp, Expr, FillMode, Function, MathError};

/// The most periods `FILL`, `TIME_SERIES` or a number picked by `IF` lay out: the most points
/// one `GetMetricData` call returns.
pub const MAX_GRID: usize = 100_800;

/// Points by Unix second, oldest first.
pub type Points = BTreeMap<i64, f64>;

/// What an expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Series(Points),
    Array(Vec<Points>),
}

/// The range a query read and the series of its ids.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    /// Inclusive, Unix seconds.
    pub start: i64,
    /// Exclusive, Unix seconds.
    pub end: i64,
    /// Seconds; every series of the query has it.
    pub period: i64,
    /// An id with no entry reads as a series with no points.
    pub series: &'a BTreeMap<String, Points>,
}

impl Frame<'_> {
    /// The start of every period of the range.
    fn grid(&self) -> impl Iterator<Item = i64> + '_ {
        let step = self.period.max(1);
        (0..)
            .map(move |k: i64| self.start.saturating_add(k.saturating_mul(step)))
            .take_while(move |t| *t < self.end)
            .take(MAX_GRID)
    }
}

fn error<T>(message: String) -> Result<T, MathError> {
    Err(MathError { at: 0, message })
}

/// Evaluates `expr` over `frame`.
pub fn evaluate(expr: &Expr, frame: &Frame<'_>) -> Result<Value, MathError> {
    match expr {
        Expr::Number(n) => Ok(Value::Scalar(*n)),
        Expr::Id(id) => Ok(Value::Series(
            frame.series.get(id).cloned().unwrap_or_default(),
        )),
        Expr::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match evaluate(item, frame)? {
                    Value::Series(s) => out.push(s),
                    Value::Array(a) => out.extend(a),
                    Value::Scalar(_) => {
                        return error(format!("{item} in an array is a number"));
                    }
                }
            }
            Ok(Value::Array(out))
        }
        Expr::Neg(x) => Ok(map(evaluate(x, frame)?, |v| -v)),
        Expr::Binary(op, a, b) => binary(*op, evaluate(a, frame)?, evaluate(b, frame)?),
        Expr::Call(func, args) => call(*func, args, frame),
        Expr::Mode(_) => error(format!("{expr} is only FILL's second argument")),
    }
}

/// `f` on every value; non-finite results dropped from series.
fn map(value: Value, f: impl Fn(f64) -> f64 + Copy) -> Value {
    let series = |s: Points| -> Points {
        s.into_iter()
            .map(|(t, v)| (t, f(v)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    match value {
        Value::Scalar(v) => Value::Scalar(f(v)),
        Value::Series(s) => Value::Series(series(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(series).collect()),
    }
}

fn truth(v: f64) -> bool {
    v != 0.0
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    let bool = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Pow => a.powf(b),
        BinOp::Eq => bool(a == b),
        BinOp::Ne => bool(a != b),
        BinOp::Lt => bool(a < b),
        BinOp::Le => bool(a <= b),
        BinOp::Gt => bool(a > b),
        BinOp::Ge => bool(a >= b),
        BinOp::And => bool(truth(a) && truth(b)),
        BinOp::Or => bool(truth(a) || truth(b)),
    }
}

/// Two series over the timestamps of either, a missing value 0.
fn zip(op: BinOp, a: &Points, b: &Points) -> Points {
    let mut out = Points::new();
    for (&t, &x) in a {
        let y = b.get(&t).copied().unwrap_or(0.0);
        out.insert(t, apply(op, x, y));
    }
    for (&t, &y) in b {
        if !a.contains_key(&t) {
            out.insert(t, apply(op, 0.0, y));
        }
    }
    out.retain(|_, v| v.is_finite());
    out
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, MathError> {
    let with_scalar = |s: Points, f: &dyn Fn(f64) -> f64| -> Points {
        s.into_iter()
            .map(|(t, v)| (t, f(v)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    Ok(match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(apply(op, x, y)),
        (Value::Series(s), Value::Scalar(y)) => Value::Series(with_scalar(s, &|x| apply(op, x, y))),
        (Value::Scalar(x), Value::Series(s)) => Value::Series(with_scalar(s, &|y| apply(op, x, y))),
        (Value::Series(a), Value::Series(b)) => Value::Series(zip(op, &a, &b)),
        (Value::Array(items), other) if !op.is_boolean() => Value::Array(
            items
                .into_iter()
                .map(|s| match binary(op, Value::Series(s), other.clone()) {
                    Ok(Value::Series(s)) => Ok(s),
                    Ok(_) => error("an array's arithmetic gave no series".to_owned()),
                    Err(e) => Err(e),
                })
                .collect::<Result<_, _>>()?,
        ),
        (other, Value::Array(items)) if !op.is_boolean() => Value::Array(
            items
                .into_iter()
                .map(|s| match binary(op, other.clone(), Value::Series(s)) {
                    Ok(Value::Series(s)) => Ok(s),
                    Ok(_) => error("an array's arithmetic gave no series".to_owned()),
                    Err(e) => Err(e),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return error(format!("{} between these operands", op.symbol())),
    })
}

/// Each point against the one before it.
fn pairwise(s: &Points, f: impl Fn(i64, f64, i64, f64) -> f64) -> Points {
    s.iter()
        .zip(s.iter().skip(1))
        .map(|((&t0, &v0), (&t1, &v1))| (t1, f(t0, v0, t1, v1)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn per_series(value: Value, f: impl Fn(&Points) -> Points) -> Result<Value, MathError> {
    match value {
        Value::Series(s) => Ok(Value::Series(f(&s))),
        Value::Array(a) => Ok(Value::Array(a.iter().map(f).collect())),
        Value::Scalar(_) => error("a function of a time series was given a number".to_owned()),
    }
}

/// One series' values reduced to a number.
fn reduce(func: Function, s: &Points) -> f64 {
    let values = s.values().copied();
    match func {
        Function::Sum => values.sum(),
        Function::Avg if s.is_empty() => f64::NAN,
        Function::Avg => values.sum::<f64>() / s.len() as f64,
        Function::Min => values.reduce(f64::min).unwrap_or(f64::NAN),
        _ => values.reduce(f64::max).unwrap_or(f64::NAN),
    }
}

/// An array reduced to one series, timestamp by timestamp.
fn across(func: Function, items: &[Points]) -> Points {
    let mut times: Vec<i64> = items.iter().flat_map(|s| s.keys().copied()).collect();
    times.sort_unstable();
    times.dedup();
    let n = items.len().max(1) as f64;
    times
        .into_iter()
        .map(|t| {
            let present = items.iter().filter_map(|s| s.get(&t).copied());
            let v = match func {
                Function::Sum => present.sum(),
                Function::Avg => present.sum::<f64>() / n,
                Function::Min => present.reduce(f64::min).unwrap_or(f64::NAN),
                _ => present.reduce(f64::max).unwrap_or(f64::NAN),
            };
            (t, v)
        })
        .filter(|(_, v)| v.is_finite())
        .collect()
}

enum Filler<'a> {
    Constant(f64),
    Series(&'a Points),
    Mode(FillMode),
}

fn fill(s: &Points, filler: &Filler<'_>, frame: &Frame<'_>) -> Points {
    let mut out = s.clone();
    for t in frame.grid() {
        if s.contains_key(&t) {
            continue;
        }
        let value = match filler {
            Filler::Constant(c) => Some(*c),
            Filler::Series(f) => f.get(&t).copied(),
            Filler::Mode(FillMode::Repeat) => s.range(..t).next_back().map(|(_, v)| *v),
            Filler::Mode(FillMode::Linear) => {
                match (s.range(..t).next_back(), s.range(t..).next()) {
                    (Some((&t0, &v0)), Some((&t1, &v1))) => {
                        Some(v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64)
                    }
                    _ => None,
                }
            }
        };
        if let Some(v) = value.filter(|v| v.is_finite()) {
            out.insert(t, v);
        }
    }
    out
}

/// `IF` over a series condition, per the page's tables.
fn pick(cond: &Points, yes: &Value, no: Option<&Value>) -> Points {
    let mut out = Points::new();
    for (&t, &c) in cond {
        let v = if truth(c) {
            match yes {
                Value::Scalar(x) => Some(*x),
                Value::Series(s) => Some(s.get(&t).copied().unwrap_or(0.0)),
                Value::Array(_) => None,
            }
        } else {
            match no {
                Some(Value::Scalar(x)) => Some(*x),
                Some(Value::Series(s)) => s.get(&t).copied(),
                _ => None,
            }
        };
        if let Some(v) = v.filter(|v| v.is_finite()) {
            out.insert(t, v);
        }
    }
    out
}

fn call(func: Function, args: &[Expr], frame: &Frame<'_>) -> Result<Value, MathError> {
    let arg = |i: usize| -> Result<Value, MathError> {
        match args.get(i) {
            Some(e) => evaluate(e, frame),
            None => error(format!("{} is missing an argument", func.name())),
        }
    };
    match func {
        Function::Abs => Ok(map(arg(0)?, f64::abs)),
        Function::Ceil => Ok(map(arg(0)?, f64::ceil)),
        Function::Floor => Ok(map(arg(0)?, f64::floor)),
        Function::Log => Ok(map(arg(0)?, f64::ln)),
        Function::Log10 => Ok(map(arg(0)?, f64::log10)),
        Function::Diff => per_series(arg(0)?, |s| pairwise(s, |_, v0, _, v1| v1 - v0)),
        Function::Rate => per_series(arg(0)?, |s| {
            pairwise(s, |t0, v0, t1, v1| (v1 - v0) / (t1 - t0) as f64)
        }),
        Function::Sum | Function::Avg | Function::Min | Function::Max => match arg(0)? {
            Value::Series(s) => Ok(Value::Scalar(reduce(func, &s))),
            Value::Array(a) => Ok(Value::Series(across(func, &a))),
            Value::Scalar(_) => error(format!("{} of a number", func.name())),
        },
        Function::Fill => {
            let target = arg(0)?;
            let filler_value;
            let filler = match args.get(1) {
                Some(Expr::Mode(mode)) => Filler::Mode(*mode),
                _ => {
                    filler_value = arg(1)?;
                    match &filler_value {
                        Value::Scalar(c) => Filler::Constant(*c),
                        Value::Series(s) => Filler::Series(s),
                        Value::Array(_) => return error("FILL with an array".to_owned()),
                    }
                }
            };
            per_series(target, |s| fill(s, &filler, frame))
        }
        Function::If => {
            let cond = arg(0)?;
            let yes = arg(1)?;
            let no = if args.len() > 2 { Some(arg(2)?) } else { None };
            match cond {
                Value::Series(c) => Ok(Value::Series(pick(&c, &yes, no.as_ref()))),
                // A number that is no number (the AVG of a series with no points) decides
                // nothing: no value.
                Value::Scalar(c) if !c.is_finite() => Ok(Value::Series(Points::new())),
                Value::Scalar(c) => {
                    let chosen = if truth(c) { Some(yes) } else { no };
                    match chosen {
                        Some(Value::Series(s)) => Ok(Value::Series(s)),
                        Some(Value::Scalar(x)) => Ok(Value::Series(
                            frame
                                .grid()
                                .map(|t| (t, x))
                                .filter(|(_, v)| v.is_finite())
                                .collect(),
                        )),
                        None => Ok(Value::Series(Points::new())),
                        Some(Value::Array(_)) => error("IF with an array".to_owned()),
                    }
                }
                Value::Array(_) => error("IF with an array as its condition".to_owned()),
            }
        }
        Function::Period => Ok(Value::Scalar(frame.period as f64)),
        Function::TimeSeries => match arg(0)? {
            Value::Scalar(x) if x.is_finite() => {
                Ok(Value::Series(frame.grid().map(|t| (t, x)).collect()))
            }
            Value::Scalar(_) => Ok(Value::Series(Points::new())),
            _ => error("TIME_SERIES of a time series".to_owned()),
        },
    }
}
