//! CloudWatch metric math, evaluated here: the expressions rules compare (`100 * errors / m`,
//! `RATE(m)`, `IF(m > 0, errors / m, 0)`) parsed ([`parse`]), checked to yield one time series,
//! and evaluated over the series they name ([`evaluate`]). `vigil rules test` and the
//! backtest evaluate expressions with it, and the alert function does when configured to
//! ([`LocalMath`]), which is how the tests against LocalStack (which evaluates no metric math)
//! cover such rules end to end.

mod eval;
pub mod local;
mod parse;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub use eval::{Frame, MAX_GRID, Points, Value};
pub use local::{LocalMath, MathMode};
pub use parse::{
    BinOp, Expr, FillMode, Function, Kind, MAX_DEPTH, MAX_LENGTH, MathError, check, parse,
    parse_any,
};

use crate::reader::Series;

/// Evaluates `expr` (checked by [`parse`] to yield a time series) over the range
/// `start..end` of `period`-second data, with the series of each id in `series`.
pub fn evaluate(
    expr: &Expr,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    period: u32,
    series: &BTreeMap<String, Series>,
) -> Result<Series, MathError> {
    let points: BTreeMap<String, Points> = series
        .iter()
        .map(|(id, s)| {
            let p: Points = s
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| (t.timestamp(), *v))
                .collect();
            (id.clone(), p)
        })
        .collect();
    let frame = Frame {
        start: start.timestamp(),
        end: end.timestamp(),
        period: i64::from(period),
        series: &points,
    };
    match eval::evaluate(expr, &frame)? {
        Value::Series(s) => Ok(s
            .into_iter()
            .filter_map(|(t, v)| DateTime::from_timestamp(t, 0).map(|t| (t, v)))
            .collect()),
        Value::Scalar(_) => Err(MathError {
            at: 0,
            message: "the expression gives a number; a rule compares a time series".to_owned(),
        }),
        Value::Array(_) => Err(MathError {
            at: 0,
            message: "the expression gives an array of time series; a rule compares one".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
