//! The engine held to the CloudWatch User Guide's "Using metric math" page: its worked
//! examples (the comparison table, the three `IF` tables) as fixtures, and each function's
//! documented rule as a property over random series with gaps.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::eval::{self, Frame, Points, Value};
use super::*;

const PERIOD: i64 = 60;

/// A series from the page's notation: one value per period from 0, `None` for `-`.
fn series(values: &[Option<f64>]) -> Points {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i as i64 * PERIOD, v)))
        .collect()
}

/// The values at each of `n` periods from 0, `None` where the result has no point.
fn at_periods(points: &Points, n: usize) -> Vec<Option<f64>> {
    (0..n as i64)
        .map(|i| points.get(&(i * PERIOD)).copied())
        .collect()
}

fn run(text: &str, inputs: &[(&str, Points)], n: usize) -> Value {
    let series: BTreeMap<String, Points> = inputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let expr = parse_any(text).expect("parses");
    expr.kind().expect("types");
    eval::evaluate(
        &expr,
        &Frame {
            start: 0,
            end: n as i64 * PERIOD,
            period: PERIOD,
            series: &series,
        },
    )
    .expect("evaluates")
}

fn run_series(text: &str, inputs: &[(&str, Points)], n: usize) -> Vec<Option<f64>> {
    match run(text, inputs, n) {
        Value::Series(s) => at_periods(&s, n),
        other => panic!("{text} gave {other:?}"),
    }
}

const S: Option<f64> = None;

#[test]
fn the_comparison_table() {
    // metric1 [30, 20, 0, 0] and metric2 [20, -, 20, -].
    let inputs = [
        (
            "metric1",
            series(&[Some(30.0), Some(20.0), Some(0.0), Some(0.0)]),
        ),
        ("metric2", series(&[Some(20.0), S, Some(20.0), S])),
    ];
    let ones = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
    assert_eq!(
        run_series("(metric1 < metric2)", &inputs, 4),
        ones(&[0.0, 0.0, 1.0, 0.0])
    );
    assert_eq!(
        run_series("(metric1 >= 30)", &inputs, 4),
        ones(&[1.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        run_series("(metric1 > 15 AND metric2 > 15)", &inputs, 4),
        ones(&[1.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        run_series("metric1 > 15 && metric2 > 15", &inputs, 4),
        ones(&[1.0, 0.0, 0.0, 0.0])
    );
}

#[test]
fn the_if_tables() {
    let metric1 = series(&[Some(1.0), Some(1.0), Some(0.0), Some(0.0), S]);
    let metric2 = series(&[Some(30.0), S, Some(0.0), Some(0.0), Some(30.0)]);
    let metric3 = series(&[Some(0.0), Some(0.0), Some(20.0), S, Some(20.0)]);
    let inputs = [
        ("metric1", metric1),
        ("metric2", metric2),
        ("metric3", metric3),
    ];
    assert_eq!(
        run_series("IF(metric1, metric2, metric3)", &inputs, 5),
        [Some(30.0), Some(0.0), Some(20.0), S, S]
    );
    assert_eq!(
        run_series("IF(metric1, 5, metric3)", &inputs, 5),
        [Some(5.0), Some(5.0), Some(20.0), S, S]
    );
    assert_eq!(
        run_series("IF(metric1, metric2, 5)", &inputs, 5),
        [Some(30.0), Some(0.0), Some(5.0), Some(5.0), S]
    );
    assert_eq!(
        run_series("IF(metric1, metric2)", &inputs, 5),
        [Some(30.0), Some(0.0), S, S, S],
        "no false value: the false points are dropped"
    );
    assert_eq!(
        run_series("IF(0, metric2, metric3)", &inputs, 5),
        [Some(0.0), Some(0.0), Some(20.0), S, Some(20.0)],
        "a number condition picks one series whole"
    );
    assert_eq!(run_series("IF(0, metric2)", &inputs, 5), [S, S, S, S, S]);
}

#[test]
fn arithmetic_counts_a_missing_value_as_zero_and_drops_divisions_by_zero() {
    let inputs = [
        ("errors", series(&[Some(2.0), S, Some(0.0), Some(5.0)])),
        ("m", series(&[Some(100.0), Some(50.0), Some(0.0), S])),
    ];
    assert_eq!(
        run_series("100 * errors / m", &inputs, 4),
        [Some(2.0), Some(0.0), S, S],
        "0/0 and 5/(missing) are divisions by zero"
    );
    assert_eq!(
        run_series("m - errors", &inputs, 4),
        [Some(98.0), Some(50.0), Some(0.0), Some(-5.0)]
    );
    assert_eq!(
        run_series("-m ^ 2 / 100", &inputs, 4),
        [Some(-100.0), Some(-25.0), Some(0.0), S],
        "^ binds tighter than unary minus"
    );
}

#[test]
fn rate_and_diff_have_no_first_point() {
    let inputs = [(
        "m",
        [(0, 10.0), (60, 70.0), (180, 130.0)].into_iter().collect(),
    )];
    assert_eq!(
        run_series("DIFF(m)", &inputs, 4),
        [S, Some(60.0), S, Some(60.0)]
    );
    assert_eq!(
        run_series("RATE(m)", &inputs, 4),
        [S, Some(1.0), S, Some(0.5)],
        "per second, over the time since the point before"
    );
}

#[test]
fn reductions_of_a_series_are_numbers_and_of_an_array_series() {
    let inputs = [
        ("a", series(&[Some(1.0), Some(3.0), S])),
        ("b", series(&[Some(5.0), S, Some(7.0)])),
    ];
    assert_eq!(run("SUM(a)", &inputs, 3), Value::Scalar(4.0));
    assert_eq!(run("AVG(b)", &inputs, 3), Value::Scalar(6.0));
    assert_eq!(
        run_series("a - AVG(a)", &inputs, 3),
        [Some(-1.0), Some(1.0), S]
    );
    assert_eq!(
        run_series("SUM([a, b])", &inputs, 3),
        [Some(6.0), Some(3.0), Some(7.0)]
    );
    assert_eq!(
        run_series("AVG([a, b])", &inputs, 3),
        [Some(3.0), Some(1.5), Some(3.5)],
        "AVG counts a missing value as 0"
    );
    assert_eq!(
        run_series("MAX([a, b])", &inputs, 3),
        [Some(5.0), Some(3.0), Some(7.0)]
    );
    assert_eq!(
        run_series("MIN([a, b])", &inputs, 3),
        [Some(1.0), Some(3.0), Some(7.0)],
        "MIN over the series that have a value"
    );
}

#[test]
fn fill_fills_the_periods_of_the_range() {
    let inputs = [
        ("m", series(&[S, Some(2.0), S, S, Some(8.0), S])),
        ("other", series(&[Some(9.0), S, Some(9.0), S, S, S])),
    ];
    assert_eq!(
        run_series("FILL(m, 0)", &inputs, 6),
        [
            Some(0.0),
            Some(2.0),
            Some(0.0),
            Some(0.0),
            Some(8.0),
            Some(0.0)
        ]
    );
    assert_eq!(
        run_series("FILL(m, REPEAT)", &inputs, 6),
        [S, Some(2.0), Some(2.0), Some(2.0), Some(8.0), Some(8.0)]
    );
    assert_eq!(
        run_series("FILL(m, LINEAR)", &inputs, 6),
        [S, Some(2.0), Some(4.0), Some(6.0), Some(8.0), S]
    );
    assert_eq!(
        run_series("FILL(m, other)", &inputs, 6),
        [Some(9.0), Some(2.0), Some(9.0), S, Some(8.0), S]
    );
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        ("100 * errors /", "ends too early"),
        ("AVG(m) > 5", "gives a number"),
        ("[m, errors]", "array of time series"),
        ("STDDEV(m)", "STDDEV is not a function"),
        ("FILL(m)", "FILL takes 2 arguments"),
        ("m +* 2", "expected a number"),
        ("m $ 2", "unexpected '$'"),
        ("(m + 1", "expected `)`"),
        ("ABS(REPEAT)", "only FILL's second argument"),
        ("RATE(5) + m", "RATE takes a time series"),
        ("[m, errors] > 1", "one at a time"),
        ("PERIOD(m * 2) + m", "PERIOD takes a series id"),
        ("", "empty"),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
    let err = parse("m + 1 )").expect_err("trailing").to_string();
    assert!(err.starts_with("at character 7:"), "{err}");
    let deep = format!("{}m{}", "(".repeat(100), ")".repeat(100));
    assert!(
        parse(&deep)
            .expect_err("deep")
            .to_string()
            .contains("nested")
    );
    assert!(parse(&"m+".repeat(1100)).is_err(), "over 2048 characters");
}

#[test]
fn precedence_and_associativity_are_cloudwatchs() {
    let none: [(&str, Points); 0] = [];
    let scalar = |text: &str| match run(text, &none, 1) {
        Value::Scalar(v) => v,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(scalar("10 - 4 - 3"), 3.0, "- is left-associative");
    assert_eq!(scalar("64 / 4 / 2"), 8.0, "/ is left-associative");
    assert_eq!(scalar("2 ^ 3 ^ 2"), 512.0, "^ is right-associative");
    assert_eq!(scalar("-2 ^ 2"), -4.0, "^ binds tighter than unary minus");
    assert_eq!(scalar("2 ^ -1"), 0.5);
    assert_eq!(scalar("1 + 2 * 3"), 7.0);
    assert_eq!(scalar("1 OR 0 AND 0"), 1.0, "AND binds tighter than OR");
    assert_eq!(scalar("(1 OR 0) AND 0"), 0.0);
    assert_eq!(
        scalar("3 > 1 + 1"),
        1.0,
        "comparisons are looser than arithmetic"
    );
    assert_eq!(scalar("1 < 2 AND 2 < 3"), 1.0);
}

#[test]
fn chains_too_deep_or_ambiguous_are_refused() {
    let err = parse("1 < m < 3").expect_err("chained").to_string();
    assert!(err.contains("do not chain"), "{err}");
    // 200 characters, but a tree 100 levels deep: refused, not walked.
    let chain = format!("{}m", "m+".repeat(100));
    let err = parse(&chain).expect_err("deep chain").to_string();
    assert!(err.contains("nested"), "{err}");
    assert!(parse(&format!("{}m", "m+".repeat(30))).is_ok());
}

#[test]
fn nested_fills_are_typed_in_linear_time() {
    // Typed twice per level, 40 levels would be 2^40 steps: this test would not finish.
    let text = format!("{}0{}", "FILL(m, ".repeat(40), ")".repeat(40));
    let started = std::time::Instant::now();
    assert!(parse(&text).is_ok());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_condition_that_is_no_number_decides_nothing() {
    let inputs = [
        ("m", series(&[Some(1.0), Some(2.0)])),
        ("empty", Points::new()),
    ];
    assert_eq!(run_series("IF(AVG(empty), m, 0)", &inputs, 2), [S, S]);
}

#[test]
fn ids_are_listed_once_in_order() {
    let expr = parse("IF(m > 0, 100 * errors / m, FILL(errors, 0))").expect("parses");
    assert_eq!(expr.ids(), ["m", "errors"]);
}

#[test]
fn evaluate_converts_times_and_refuses_non_series() {
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).expect("time");
    let series: BTreeMap<String, crate::reader::Series> = [(
        "m".to_owned(),
        vec![(at(0), 4.0), (at(60), f64::NAN), (at(120), 16.0)],
    )]
    .into_iter()
    .collect();
    let got = evaluate(
        &parse("m / 4").expect("parses"),
        at(0),
        at(180),
        60,
        &series,
    )
    .expect("evaluates");
    assert_eq!(
        got,
        [(at(0), 1.0), (at(120), 4.0)],
        "NaN input points dropped"
    );
    let scalar = parse_any("SUM(m)").expect("parses");
    assert!(evaluate(&scalar, at(0), at(180), 60, &series).is_err());
}

// Properties.

/// Up to 12 periods, each with a point or a gap.
fn gappy() -> impl Strategy<Value = Points> {
    prop::collection::vec(prop::option::weighted(0.7, -1000.0..1000.0f64), 0..12).prop_map(
        |values| {
            values
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as i64 * PERIOD, v)))
                .collect()
        },
    )
}

fn frame_eval(text: &str, inputs: &BTreeMap<String, Points>) -> Value {
    let expr = parse_any(text).expect("parses");
    eval::evaluate(
        &expr,
        &Frame {
            start: 0,
            end: 12 * PERIOD,
            period: PERIOD,
            series: inputs,
        },
    )
    .expect("evaluates")
}

fn two(a: Points, b: Points) -> BTreeMap<String, Points> {
    [("a".to_owned(), a), ("b".to_owned(), b)]
        .into_iter()
        .collect()
}

fn as_series(v: Value) -> Points {
    match v {
        Value::Series(s) => s,
        other => panic!("not a series: {other:?}"),
    }
}

/// Random expression trees over `a` and `b`, for the print-and-parse property.
fn tree() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (0.0..1e6f64).prop_map(Expr::Number),
        Just(Expr::Id("a".to_owned())),
        Just(Expr::Id("b".to_owned())),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        let ops = prop::sample::select(vec![
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Pow,
            BinOp::Eq,
            BinOp::Ne,
            BinOp::Lt,
            BinOp::Le,
            BinOp::Gt,
            BinOp::Ge,
            BinOp::And,
            BinOp::Or,
        ]);
        prop_oneof![
            inner.clone().prop_map(|x| Expr::Neg(Box::new(x))),
            (ops, inner.clone(), inner.clone()).prop_map(|(op, a, b)| Expr::Binary(
                op,
                Box::new(a),
                Box::new(b)
            )),
            inner
                .clone()
                .prop_map(|x| Expr::Call(Function::Abs, vec![x])),
            (inner.clone(), inner.clone()).prop_map(|(c, t)| Expr::Call(Function::If, vec![c, t])),
            inner.prop_map(|x| Expr::Call(Function::Fill, vec![x, Expr::Mode(FillMode::Repeat)])),
        ]
    })
}

/// Random trees over every form the type checker accepts or refuses: reductions, arrays,
/// fillers, IF with two and three arguments, TIME_SERIES, PERIOD.
fn any_tree() -> impl Strategy<Value = Expr> {
    let id = || {
        prop_oneof![
            Just(Expr::Id("a".to_owned())),
            Just(Expr::Id("b".to_owned()))
        ]
    };
    let leaf = prop_oneof![(0.0..100.0f64).prop_map(Expr::Number), id()];
    leaf.prop_recursive(4, 40, 3, move |inner| {
        let call = |f: Function, args: Vec<Expr>| Expr::Call(f, args);
        let unary = prop::sample::select(vec![
            Function::Abs,
            Function::Avg,
            Function::Ceil,
            Function::Diff,
            Function::Floor,
            Function::Log,
            Function::Max,
            Function::Min,
            Function::Rate,
            Function::Sum,
            Function::TimeSeries,
        ]);
        let filler = prop_oneof![
            inner.clone(),
            Just(Expr::Mode(FillMode::Repeat)),
            Just(Expr::Mode(FillMode::Linear)),
        ];
        prop_oneof![
            (unary, inner.clone()).prop_map(move |(f, x)| call(f, vec![x])),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Array(vec![a, b])),
            (inner.clone(), filler).prop_map(move |(x, f)| call(Function::Fill, vec![x, f])),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(move |(c, t, f)| call(Function::If, vec![c, t, f])),
            (inner.clone(), inner.clone()).prop_map(move |(c, t)| call(Function::If, vec![c, t])),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Binary(
                BinOp::Div,
                Box::new(a),
                Box::new(b)
            )),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Binary(
                BinOp::Gt,
                Box::new(a),
                Box::new(b)
            )),
            inner.prop_map(|x| Expr::Neg(Box::new(x))),
            id().prop_map(move |x| call(Function::Period, vec![x])),
        ]
    })
}

proptest! {
    #[test]
    fn what_type_checks_evaluates_to_its_kind(expr in any_tree(), a in gappy(), b in gappy()) {
        let inputs = two(a, b);
        let frame = Frame { start: 0, end: 12 * PERIOD, period: PERIOD, series: &inputs };
        if let Ok(kind) = expr.kind() {
            let value = eval::evaluate(&expr, &frame);
            let fits = matches!(
                (&kind, &value),
                (Kind::Scalar, Ok(Value::Scalar(_)))
                    | (Kind::Series, Ok(Value::Series(_)))
                    | (Kind::Array, Ok(Value::Array(_)))
            );
            prop_assert!(fits, "{} typed {:?}, evaluated {:?}", expr, kind, value);
            if let Ok(Value::Series(s)) = &value {
                prop_assert!(s.values().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn repeat_fills_every_period_after_the_first_point(a in gappy()) {
        let filled = as_series(frame_eval("FILL(a, REPEAT)", &two(a.clone(), Points::new())));
        if let Some((&first, _)) = a.iter().next() {
            let want: Vec<i64> = (0..12).map(|i| i * PERIOD).filter(|t| *t >= first).collect();
            prop_assert_eq!(filled.keys().copied().collect::<Vec<_>>(), want);
        } else {
            prop_assert!(filled.is_empty());
        }
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,80}") {
        let _ = parse(&text);
    }

    #[test]
    fn parsing_operator_soup_never_panics(
        text in "[a-z0-9 .()\\[\\],+*/^<>=!&|-]{0,60}|[A-Z_(),m0-9 ]{0,40}"
    ) {
        let _ = parse(&text);
    }

    #[test]
    fn a_printed_tree_parses_back_to_itself(expr in tree()) {
        let text = expr.to_string();
        prop_assert_eq!(parse_any(&text).expect("parses"), expr);
    }

    #[test]
    fn addition_runs_over_either_series_with_missing_as_zero(a in gappy(), b in gappy()) {
        let got = as_series(frame_eval("a + b", &two(a.clone(), b.clone())));
        let mut times: Vec<i64> = a.keys().chain(b.keys()).copied().collect();
        times.sort_unstable();
        times.dedup();
        prop_assert_eq!(got.keys().copied().collect::<Vec<_>>(), times.clone());
        for t in times {
            let want = a.get(&t).unwrap_or(&0.0) + b.get(&t).unwrap_or(&0.0);
            prop_assert_eq!(got[&t], want);
        }
    }

    #[test]
    fn division_drops_exactly_the_divisions_by_zero(a in gappy(), b in gappy()) {
        let got = as_series(frame_eval("a / b", &two(a.clone(), b.clone())));
        for (t, v) in &got {
            prop_assert!(v.is_finite());
            prop_assert!(b.get(t).is_some_and(|d| *d != 0.0));
        }
        for (t, d) in &b {
            if *d != 0.0 {
                prop_assert!(got.contains_key(t), "{} dropped", t);
            }
        }
    }

    #[test]
    fn diff_and_rate_pair_each_point_with_the_one_before(a in gappy()) {
        let inputs = two(a.clone(), Points::new());
        let diff = as_series(frame_eval("DIFF(a)", &inputs));
        let rate = as_series(frame_eval("RATE(a)", &inputs));
        prop_assert_eq!(diff.len(), a.len().saturating_sub(1), "the first point has none");
        let pairs: Vec<((i64, f64), (i64, f64))> = a
            .iter()
            .map(|(t, v)| (*t, *v))
            .zip(a.iter().skip(1).map(|(t, v)| (*t, *v)))
            .collect();
        for ((t0, v0), (t1, v1)) in pairs {
            prop_assert_eq!(diff[&t1], v1 - v0);
            prop_assert_eq!(rate[&t1], (v1 - v0) / (t1 - t0) as f64);
        }
    }

    #[test]
    fn fill_keeps_real_points_and_covers_the_range(a in gappy(), c in -5.0..5.0f64) {
        let inputs = two(a.clone(), Points::new());
        let filled = as_series(frame_eval(&format!("FILL(a, {})", c.abs()), &inputs));
        prop_assert_eq!(filled.len(), 12);
        for (t, v) in &filled {
            prop_assert_eq!(*v, a.get(t).copied().unwrap_or(c.abs()));
        }
        let repeat = as_series(frame_eval("FILL(a, REPEAT)", &inputs));
        for (t, v) in &repeat {
            let before = a.range(..=*t).next_back().map(|(_, v)| *v);
            prop_assert_eq!(Some(*v), before, "the newest real value at or before");
        }
        let linear = as_series(frame_eval("FILL(a, LINEAR)", &inputs));
        for (t, v) in &linear {
            let lo = a.range(..=*t).next_back().map(|(_, v)| *v);
            let hi = a.range(*t..).next().map(|(_, v)| *v);
            let (lo, hi) = (lo.expect("a point before"), hi.expect("a point after"));
            prop_assert!(*v >= lo.min(hi) - 1e-9 && *v <= lo.max(hi) + 1e-9);
        }
    }

    #[test]
    fn if_keeps_the_points_that_hold(a in gappy(), threshold in -1000.0..1000.0f64) {
        let inputs = two(a.clone(), Points::new());
        let got = as_series(frame_eval(&format!("IF(a > {}, a)", threshold.abs()), &inputs));
        let want: Points = a.into_iter().filter(|(_, v)| *v > threshold.abs()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn sum_of_an_array_is_the_sum_of_its_series(a in gappy(), b in gappy()) {
        let inputs = two(a, b);
        prop_assert_eq!(
            as_series(frame_eval("SUM([a, b])", &inputs)),
            as_series(frame_eval("a + b", &inputs))
        );
    }

    #[test]
    fn results_are_always_finite(expr in tree(), a in gappy(), b in gappy()) {
        let inputs = two(a, b);
        let frame = Frame { start: 0, end: 12 * PERIOD, period: PERIOD, series: &inputs };
        if let Ok(Value::Series(s)) = eval::evaluate(&expr, &frame) {
            prop_assert!(s.values().all(|v| v.is_finite()));
        }
    }
}
