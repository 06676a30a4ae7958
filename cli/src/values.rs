//! The series notation of rules test files, as `promtool test rules` writes it:
//!
//! - `12.5`: one value; `_`: one period without a data point;
//! - `a+bxn`: `a a+b a+2b … a+nb` (n + 1 values); `a-bxn` counts down; `axn` is `a+0xn`;
//! - `_xn`: n periods without data.
//!
//! Values are finite numbers: CloudWatch stores no NaN or infinity, so neither can a test.

/// One period's value, or none.
pub type Point = Option<f64>;

/// The most points one series may expand to: a typo such as `1x99999999999` is an error, not
/// an allocation of gigabytes.
pub const MAX_POINTS: usize = 1_000_000;

/// Expands a series; errors name the token and why.
pub fn parse(text: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let (head, count) = match token.rsplit_once('x') {
            Some((head, n)) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("{token:?}: {n:?} after 'x' is not a whole number"))?;
                (head, Some(n))
            }
            None => (token, None),
        };
        let room = MAX_POINTS.saturating_sub(out.len());
        if head == "_" {
            let n = count.unwrap_or(1);
            if n > room {
                return Err(format!("{token:?}: more than {MAX_POINTS} points"));
            }
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        match count {
            None => out.push(Some(number(token, head)?)),
            Some(n) => {
                if n >= room {
                    return Err(format!("{token:?}: more than {MAX_POINTS} points"));
                }
                // The step's sign is the first '+' or '-' after the start's own sign.
                let split = head
                    .char_indices()
                    .skip(1)
                    .find(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
                    .map(|(i, _)| i);
                let (start, step) = match split {
                    Some(i) => (number(token, &head[..i])?, number(token, &head[i..])?),
                    None => (number(token, head)?, 0.0),
                };
                for k in 0..=n {
                    let v = start + step * k as f64;
                    if !v.is_finite() {
                        return Err(format!("{token:?}: the series leaves the finite numbers"));
                    }
                    out.push(Some(v));
                }
            }
        }
    }
    Ok(out)
}

fn number(token: &str, text: &str) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|_| format!("{token:?}: {text:?} is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "{token:?}: {text:?} is not a finite number (CloudWatch stores none)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expands_the_notation() {
        assert_eq!(
            parse("1 _ 2.5").expect("parses"),
            [Some(1.0), None, Some(2.5)]
        );
        assert_eq!(
            parse("1+2x3").expect("parses"),
            [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
        );
        assert_eq!(
            parse("1-2x4").expect("parses"),
            [Some(1.0), Some(-1.0), Some(-3.0), Some(-5.0), Some(-7.0)]
        );
        assert_eq!(parse("-3x2").expect("parses"), [Some(-3.0); 3]);
        assert_eq!(parse("_x3").expect("parses"), [None; 3]);
        assert_eq!(
            parse("1e2+1e1x1").expect("parses"),
            [Some(100.0), Some(110.0)]
        );
        assert!(parse("").expect("parses").is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_series() {
        for bad in [
            "abc",
            "1+x3",
            "1x",
            "1xq",
            "NaN",
            "inf",
            "1+NaNx2",
            "1x99999999999",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(
                e.contains(bad.split_whitespace().next().unwrap_or(bad)),
                "{e}"
            );
        }
        assert!(parse("1e308+1e308x3").is_err(), "overflow is refused");
    }

    proptest! {
        #[test]
        fn any_text_gives_points_or_an_error(text in "\\PC{0,40}") {
            if let Ok(points) = parse(&text) {
                prop_assert!(points.len() <= MAX_POINTS);
                prop_assert!(points.iter().flatten().all(|v| v.is_finite()));
            }
        }

        #[test]
        fn written_points_read_back(points in proptest::collection::vec(
            proptest::option::of(-1e9f64..1e9), 0..50)) {
            let text: Vec<String> = points
                .iter()
                .map(|p| p.map_or("_".to_owned(), |v| format!("{v:?}")))
                .collect();
            prop_assert_eq!(parse(&text.join(" ")).expect("parses"), points);
        }

        #[test]
        fn a_run_has_n_plus_one_values(start in -1000i32..1000, step in -50i32..50, n in 0usize..200) {
            let points = parse(&format!("{start}{step:+}x{n}")).expect("parses");
            prop_assert_eq!(points.len(), n + 1);
            prop_assert_eq!(points[n], Some(f64::from(start) + f64::from(step) * n as f64));
        }
    }
}
