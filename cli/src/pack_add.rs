//! `vigil rules pack add`: a pack written as a file of its own beside the team's rules file
//! (`packs/NAME.yaml`), and named in that file's `rule_files`, so the alert function reads it
//! at every run and a later `add` with other parameters replaces it without touching the
//! team's own rules. The edit keeps the rules file's text, comments and order: one line is
//! added or one flow list extended, and the result is parsed again and compared with the file
//! before, so an edit that would change anything else is refused instead of written.

use std::path::{Path, PathBuf};

use crate::pack::Pack;

/// What `add` wrote.
#[derive(Debug, serde::Serialize)]
pub struct Added {
    /// The pack's rules file.
    pub pack_file: PathBuf,
    /// Whether the rules file gained the `rule_files` entry (false: it named it already).
    pub rules_file_changed: bool,
    /// The Prometheus recording rules written beside the pack, for the sender's own config.
    pub recording_file: Option<PathBuf>,
    pub rules: usize,
}

/// The name of `pack`'s file as the rules file names it.
pub fn entry(pack: &Pack) -> String {
    format!("packs/{}.yaml", pack.name)
}

/// Writes `pack` with `values` beside `rules_file` and names it there. A pack file that
/// exists with other content is replaced only with `force`. Nothing is written unless the
/// rules file, the pack and every other file it names load together.
pub fn add(
    pack: &Pack,
    values: &std::collections::BTreeMap<String, String>,
    command: &str,
    rules_file: &Path,
    force: bool,
) -> Result<Added, String> {
    let origin = rules_file.display().to_string();
    let text = match std::fs::read_to_string(rules_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{origin}: {e}")),
    };
    let entry = entry(pack);
    let edited = with_rule_file(&origin, &text, &entry)?;
    let dir = rules_file.parent().unwrap_or(Path::new(""));
    let pack_file = dir.join(&entry);
    let body = format!(
        "# Rule pack {name}, written by `{command}`.\n\
         # Run the command again to change its parameters; `vigil rules pack show {name}` lists them.\n{rules}",
        name = pack.name,
        rules = pack.rules(values)?
    );
    // A file that differs (other parameters, or edits by hand) is replaced only when asked.
    let recording_path = dir.join(format!("packs/{}.prometheus.yaml", pack.name));
    let mine = [
        (&pack_file, Some(body.as_str())),
        (&recording_path, pack.recording.map(|r| r.rules)),
    ];
    for (path, text) in mine {
        let Some(text) = text else { continue };
        match std::fs::read_to_string(path) {
            Ok(old) if old != text && !force => {
                return Err(format!(
                    "{}: exists and differs from what the pack writes; give --force to replace it",
                    path.display()
                ));
            }
            _ => {}
        }
    }

    // Everything the function would read, loaded together before anything is written.
    let mut included = Vec::new();
    for name in vigil_alert::rule_files::names(&origin, &edited).map_err(|e| e.to_string())? {
        let path = dir.join(&name);
        let shown = path.display().to_string();
        let file_text = if name == entry {
            body.clone()
        } else {
            std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?
        };
        included.push((shown, file_text));
    }
    let (rules, _) =
        vigil_alert::load_set(&origin, &edited, &included).map_err(|e| e.to_string())?;

    let write = |path: &Path, text: &str| {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&pack_file, &body)?;
    let recording_file = match pack.recording {
        Some(recording) => {
            write(&recording_path, recording.rules)?;
            Some(recording_path)
        }
        None => None,
    };
    let rules_file_changed = edited != text;
    if rules_file_changed {
        write(rules_file, &edited)?;
    }
    Ok(Added {
        pack_file,
        rules_file_changed,
        recording_file,
        rules: rules.len(),
    })
}

/// `text` with `entry` in its `rule_files`: unchanged when it is there already; otherwise one
/// line added to a block list, a one-line flow list extended, or the key appended at the end.
pub fn with_rule_file(origin: &str, text: &str, entry: &str) -> Result<String, String> {
    let names = vigil_alert::rule_files::names(origin, text).map_err(|e| e.to_string())?;
    if names.iter().any(|n| n == entry) {
        return Ok(text.to_owned());
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let key = lines.iter().position(|l| {
        l.strip_prefix("rule_files")
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    });
    let edited = match key {
        None => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("rule_files:\n  - {entry}\n"));
            out
        }
        Some(i) => {
            let value = lines[i].split_once(':').map_or("", |(_, v)| v);
            let value = value.split(" #").next().unwrap_or("").trim();
            let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            if value.is_empty() {
                // A block list: the new item goes after its last item, at their indentation.
                // The list ends at the first line back at the key's column.
                let end = lines[i + 1..]
                    .iter()
                    .position(|l| {
                        !l.trim().is_empty() && !l.starts_with([' ', '\t']) && !l.starts_with("- ")
                    })
                    .map_or(lines.len(), |k| i + 1 + k);
                let last = (i + 1..end)
                    .rev()
                    .find(|&k| lines[k].trim_start().starts_with("- "));
                let indent = last.map_or("  ".to_owned(), |k| {
                    lines[k][..lines[k].len() - lines[k].trim_start().len()].to_owned()
                });
                let at = last.map_or(i + 1, |k| k + 1);
                let mut item = format!("{indent}- {entry}\n");
                if at > 0 && !out[at - 1].ends_with('\n') {
                    item.insert(0, '\n');
                }
                out.insert(at, item);
            } else if value.starts_with('[') && value.ends_with(']') {
                // The entry goes before the closing bracket; the rest of the line (a comment)
                // stays as it was.
                let close = lines[i].rfind(']').unwrap_or(lines[i].len());
                let separator = if names.is_empty() { "" } else { ", " };
                out[i] = format!(
                    "{}{separator}{entry}{}",
                    &lines[i][..close],
                    &lines[i][close..]
                );
            } else {
                return Err(format!(
                    "{origin}:{}: rule_files is written in a way this command does not edit; add `{entry}` to it by hand",
                    i + 1
                ));
            }
            out.concat()
        }
    };
    // The edit must add the entry and change nothing else.
    let mut expected = names;
    expected.push(entry.to_owned());
    let by_hand = || {
        format!(
            "{origin}: adding `{entry}` to rule_files would change more than that; add it by hand"
        )
    };
    let after = vigil_alert::rule_files::names(origin, &edited).map_err(|_| by_hand())?;
    let same_rest =
        without_rule_files(text)? == without_rule_files(&edited).map_err(|_| by_hand())?;
    if after != expected || !same_rest {
        return Err(by_hand());
    }
    Ok(edited)
}

fn without_rule_files(text: &str) -> Result<serde_json::Value, String> {
    // An empty file reads as an empty mapping, as the loader reads it.
    let mut value: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        vigil_shared::config::parse_yaml("rules file", text).map_err(|e| e.to_string())?
    };
    if let Some(map) = value.as_object_mut() {
        map.remove("rule_files");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "# our rules\ngroups:\n  - name: own\n    rules: []\npolicy:\n  repeat_interval: 4h   # keep\n";

    #[test]
    fn the_entry_is_added_once_whatever_the_file_looks_like() {
        let added = with_rule_file("r.yaml", OWN, "packs/node.yaml").expect("appended");
        assert_eq!(added, format!("{OWN}rule_files:\n  - packs/node.yaml\n"));
        assert_eq!(
            with_rule_file("r.yaml", &added, "packs/node.yaml").expect("again"),
            added
        );

        let block = format!("rule_files:\n    - packs/a.yaml   # first\n    - packs/c.yaml\n{OWN}");
        let added = with_rule_file("r.yaml", &block, "packs/b.yaml").expect("block");
        assert!(
            added.starts_with("rule_files:\n    - packs/a.yaml   # first\n    - packs/c.yaml\n    - packs/b.yaml\n# our rules\n"),
            "{added}"
        );
        // At the end of a file without a final newline.
        let added = with_rule_file("r.yaml", "groups: []\nrule_files:\n- a.yaml", "b.yaml")
            .expect("last line");
        assert_eq!(added, "groups: []\nrule_files:\n- a.yaml\n- b.yaml\n");

        let flow = format!("{OWN}rule_files: [packs/a.yaml]   # ours\n");
        let added = with_rule_file("r.yaml", &flow, "packs/b.yaml").expect("flow");
        assert!(
            added.ends_with("rule_files: [packs/a.yaml, packs/b.yaml]   # ours\n"),
            "{added}"
        );
        let empty =
            with_rule_file("r.yaml", "rule_files: []\ngroups: []\n", "b.yaml").expect("empty");
        assert_eq!(empty, "rule_files: [b.yaml]\ngroups: []\n");

        assert_eq!(
            with_rule_file("r.yaml", "", "packs/b.yaml").expect("new"),
            "rule_files:\n  - packs/b.yaml\n"
        );
        // No final newline: the key still starts a line of its own.
        let added = with_rule_file("r.yaml", "groups: []", "packs/b.yaml").expect("no newline");
        assert_eq!(added, "groups: []\nrule_files:\n  - packs/b.yaml\n");
    }

    #[test]
    fn an_edit_it_cannot_prove_harmless_is_refused() {
        // A whole-document flow mapping: appending a key would not parse as the same file.
        let err =
            with_rule_file("r.yaml", "{groups: []}\n", "packs/b.yaml").expect_err("flow document");
        assert!(err.contains("by hand"), "{err}");
        let err = with_rule_file(
            "r.yaml",
            "rule_files: !!seq [a.yaml\n  ]\ngroups: []\n",
            "packs/b.yaml",
        )
        .expect_err("multi-line flow");
        assert!(err.contains("r.yaml"), "{err}");
    }
}
