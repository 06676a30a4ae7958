//! A rules file's `rule_files`: more files of rule groups the function reads with it at every
//! run, as Prometheus reads its `rule_files`. A rule pack (`vigil rules pack add`) is one of
//! them, so it can be replaced without touching the team's own rules.
//!
//! ```yaml
//! rule_files: [packs/aws-lambda.yaml]   # relative to this file: s3://bucket/config/packs/...
//! groups: [...]
//! policy: {...}
//! ```
//!
//! The names are relative paths inside the main file's folder (no `..`, no absolute path, no
//! `s3://`), so the files stay where the function's role may read (`config/` in the stack's
//! bucket). A named file that cannot be read fails the run, as the main file does: rules that
//! silently went missing would page nobody.

use std::collections::BTreeSet;

use serde::Deserialize;
use vigil_shared::config::{ConfigSource, parse_yaml};
use vigil_shared::store::ObjectStore;
use vigil_shared::{Error, Result};

use crate::policy::Policy;
use crate::rules::{Rule, load_set};

/// The most files one rules file may name.
pub const MAX_RULE_FILES: usize = 64;

#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    rule_files: Vec<String>,
}

/// The files `text` names in `rule_files`, checked: relative, inside its folder, each once.
pub fn names(origin: &str, text: &str) -> Result<Vec<String>> {
    let Names { rule_files } = parse_yaml(origin, text)?;
    if rule_files.len() > MAX_RULE_FILES {
        return Err(Error::Config(format!(
            "{origin}: rule_files: {} files, at most {MAX_RULE_FILES}",
            rule_files.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for (i, name) in rule_files.iter().enumerate() {
        let fail = |why: &str| {
            Err(Error::Config(format!(
                "{origin}: rule_files[{i}]: {name:?} {why}"
            )))
        };
        if name.trim().is_empty() {
            return fail("is empty");
        }
        if name.contains("://") || name.starts_with('/') || name.starts_with('\\') {
            return fail("must be a path relative to the rules file");
        }
        // S3 takes a key as written: `./x.yaml` or `a\b.yaml` would name another object than
        // the file `vigil rules check` reads on a laptop, so only plain names are taken.
        let plain = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !name.split('/').all(plain) {
            return fail(
                "must name a file inside the rules file's folder, in letters, digits, `.`, `_` and `-` (no `..`, `./` or `\\`)",
            );
        }
        if !seen.insert(name.as_str()) {
            return fail("is named twice");
        }
    }
    Ok(rule_files)
}

/// Reads the rules file at `source` and the files it names (from the same bucket or folder),
/// and loads them together.
pub async fn read(source: &ConfigSource, store: &impl ObjectStore) -> Result<(Vec<Rule>, Policy)> {
    let origin = source.to_string();
    let text = source.read(store).await?;
    let mut included = Vec::new();
    for name in names(&origin, &text)? {
        let file = source.sibling(&name);
        included.push((file.to_string(), file.read(store).await?));
    }
    load_set(&origin, &text, &included)
}

/// [`read`] for a file on disk (the `vigil` command).
pub fn read_local(path: &str) -> Result<(Vec<Rule>, Policy)> {
    let source = ConfigSource::File(path.to_owned());
    let read = |source: &ConfigSource| match source {
        ConfigSource::File(p) => {
            std::fs::read_to_string(p).map_err(|e| Error::Config(format!("cannot read {p}: {e}")))
        }
        ConfigSource::S3 { .. } => Err(Error::Config(format!("{source} is not a local file"))),
    };
    let text = read(&source)?;
    let mut included = Vec::new();
    for name in names(path, &text)? {
        let file = source.sibling(&name);
        included.push((file.to_string(), read(&file)?));
    }
    load_set(path, &text, &included)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::testing::MemoryStore;

    const PACK: &str = "groups:\n  - name: pack\n    rules:\n      - alert: PackRule\n        metric: {namespace: AWS/Lambda, name: Errors, stat: Sum, period: 1m}\n        condition: {operator: \">\", threshold: 0}\n";

    fn main_file(names: &str) -> String {
        format!(
            "rule_files: {names}\ngroups:\n  - name: own\n    rules:\n      - alert: OwnRule\n        metric: {{namespace: Shop, name: latency, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 1}}\n"
        )
    }

    #[test]
    fn names_stay_inside_the_folder() {
        for bad in [
            "[../x.yaml]",
            "[/etc/x.yaml]",
            "['s3://other/x.yaml']",
            "[a.yaml, a.yaml]",
            "['']",
            "[a//b.yaml]",
            "[./packs/x.yaml]",
            "['packs\\x.yaml']",
            "['packs/x y.yaml']",
        ] {
            let err = names("r.yaml", &main_file(bad)).expect_err(bad).to_string();
            assert!(
                err.contains("rule_files[") && err.contains("r.yaml"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            names("r.yaml", &main_file("[packs/a.yaml, b.yaml]")).expect("valid"),
            ["packs/a.yaml", "b.yaml"]
        );
    }

    #[tokio::test]
    async fn the_function_reads_the_named_files_beside_the_rules_file() {
        let store = MemoryStore::default();
        let put =
            |key: &'static str, text: String| store.put("b", key, text.into_bytes(), "text/yaml");
        put("config/rules.yaml", main_file("[packs/lambda.yaml]"))
            .await
            .expect("put");
        put("config/packs/lambda.yaml", PACK.to_owned())
            .await
            .expect("put");
        let source: ConfigSource = "s3://b/config/rules.yaml".parse().expect("source");
        let (rules, _) = read(&source, &store).await.expect("loads");
        let names: Vec<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(names, ["OwnRule", "PackRule"]);

        // A named file that is missing fails the load, naming it.
        put("config/rules.yaml", main_file("[packs/gone.yaml]"))
            .await
            .expect("put");
        let err = read(&source, &store)
            .await
            .expect_err("missing")
            .to_string();
        assert!(err.contains("config/packs/gone.yaml"), "{err}");
    }

    #[test]
    fn names_are_unique_across_files_and_a_pack_has_no_policy() {
        let main = main_file("[p.yaml]");
        let twice = PACK.replace("PackRule", "OwnRule");
        let err = load_set("r.yaml", &main, &[("p.yaml".into(), twice)])
            .expect_err("duplicate")
            .to_string();
        assert!(
            err.contains("p.yaml") && err.contains("used twice"),
            "{err}"
        );
        let with_policy = format!("{PACK}policy: {{repeat_interval: 1h}}\n");
        let err = load_set("r.yaml", &main, &[("p.yaml".into(), with_policy)])
            .expect_err("policy")
            .to_string();
        assert!(err.contains("p.yaml") && err.contains("policy"), "{err}");
        // The single-file loader does not pretend the named files are empty.
        let err = crate::rules::load_file("r.yaml", &main)
            .expect_err("unread")
            .to_string();
        assert!(err.contains("rule_files"), "{err}");
    }
}
