//! Key patterns of a backup set (`include`, `exclude`): which objects under the prefix are
//! backups. A prefix holds more than backups (manifests, logs, `.sha256` files, markers), and
//! the newest backup must be the newest backup, not the newest log.
//!
//! Patterns match the key relative to the set's prefix: `*` any run of characters within one
//! path segment (not `/`), `**` any run including `/`, `?` one character other than `/`.

/// A compiled key pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Segment,
    /// `**`
    Any,
}

impl Pattern {
    /// Compiles `text`; an empty pattern is refused.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a pattern must not be empty".to_owned());
        }
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Part::Any
                }
                '*' => Part::Segment,
                '?' => Part::One,
                c => Part::Literal(c),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `key` (relative to the set's prefix) matches, in time linear in the key times
    /// the pattern (no backtracking blow-up).
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        // reachable[i]: the pattern so far can end having consumed key[..i].
        let mut reachable = vec![false; key.len() + 1];
        reachable[0] = true;
        for part in &self.parts {
            let mut next = vec![false; key.len() + 1];
            match part {
                Part::Literal(c) => {
                    for i in 0..key.len() {
                        if reachable[i] && key[i] == *c {
                            next[i + 1] = true;
                        }
                    }
                }
                Part::One => {
                    for i in 0..key.len() {
                        if reachable[i] && key[i] != '/' {
                            next[i + 1] = true;
                        }
                    }
                }
                Part::Segment | Part::Any => {
                    let crosses = matches!(part, Part::Any);
                    let mut on = false;
                    for i in 0..=key.len() {
                        on = on || reachable[i];
                        next[i] = on;
                        if i < key.len() && key[i] == '/' && !crosses {
                            on = false;
                        }
                    }
                }
            }
            reachable = next;
        }
        reachable[key.len()]
    }
}

/// Whether a key (relative to the prefix) is a backup of the set: it matches an `include`
/// pattern (or there is none) and no `exclude` pattern.
pub fn selected(key: &str, include: &[Pattern], exclude: &[Pattern]) -> bool {
    (include.is_empty() || include.iter().any(|p| p.matches(key)))
        && !exclude.iter().any(|p| p.matches(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, key: &str) -> bool {
        Pattern::new(pattern).expect("pattern").matches(key)
    }

    #[test]
    fn stars_questions_and_segments() {
        assert!(m("*.sql.gz", "2026-11-25.sql.gz"));
        assert!(
            !m("*.sql.gz", "daily/2026-11-25.sql.gz"),
            "* stays in its segment"
        );
        assert!(m("**.sql.gz", "daily/2026-11-25.sql.gz"));
        assert!(m("daily/*.sql.gz", "daily/2026-11-25.sql.gz"));
        assert!(m("**/*.log", "a/b/run.log"));
        assert!(m("db-????-??-??.dump", "db-2026-11-25.dump"));
        assert!(!m("db-????-??-??.dump", "db-2026-1-25.dump"));
        assert!(m("*", ""));
        assert!(!m("a", ""));
        assert!(Pattern::new("").is_err());
    }

    #[test]
    fn include_and_exclude_pick_the_backups() {
        let include = [Pattern::new("*.sql.gz").expect("p")];
        let exclude = [Pattern::new("*.partial.sql.gz").expect("p")];
        assert!(selected("2026-11-25.sql.gz", &include, &exclude));
        assert!(!selected("2026-11-25.partial.sql.gz", &include, &exclude));
        assert!(!selected("2026-11-25.sql.gz.sha256", &include, &exclude));
        assert!(!selected("backup.log", &include, &exclude));
        assert!(selected("backup.log", &[], &[]));
    }

    /// A reference with plain backtracking, for short inputs.
    fn reference(p: &[char], k: &[char]) -> bool {
        match p.first() {
            None => k.is_empty(),
            Some('*') if p.get(1) == Some(&'*') => {
                (0..=k.len()).any(|i| reference(&p[2..], &k[i..]))
            }
            Some('*') => (0..=k.len())
                .take_while(|i| *i == 0 || k[i - 1] != '/')
                .any(|i| reference(&p[1..], &k[i..])),
            Some('?') => !k.is_empty() && k[0] != '/' && reference(&p[1..], &k[1..]),
            Some(c) => k.first() == Some(c) && reference(&p[1..], &k[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_backtracking(pattern in "[ab/*?]{1,8}", key in "[ab/]{0,10}") {
            let p = Pattern::new(&pattern).expect("pattern");
            let chars: Vec<char> = pattern.chars().collect();
            let k: Vec<char> = key.chars().collect();
            prop_assert_eq!(p.matches(&key), reference(&chars, &k), "{} on {}", pattern, key);
        }

        #[test]
        fn never_panics(pattern in ".{1,20}", key in ".{0,40}") {
            let _ = Pattern::new(&pattern).map(|p| p.matches(&key));
        }
    }
}
