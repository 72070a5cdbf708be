//! Where each field of a config file is, and config errors that say so.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A line and column in a config file, both from 1 (the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl Location {
    fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One problem in a config: the field's dotted path (`training.batch_size`,
/// `constraints[1].name`), where it is, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The dotted path of the field (empty for the file as a whole).
    pub path: String,
    /// Where the field (or, when it is absent, its nearest enclosing table) is.
    pub location: Option<Location>,
    /// What is wrong, and what would be right.
    pub message: String,
    /// The text of the line at `location`, to show under the message.
    pub line_text: Option<String>,
}

/// A config that cannot be used: every issue found, each naming its field and place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file as given.
    pub file: PathBuf,
    /// The problems, in file order where known.
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match issue.location {
                Some(Location { line, column }) => write!(f, "{file}:{line}:{column}: ")?,
                None => write!(f, "{file}: ")?,
            }
            if !issue.path.is_empty() {
                write!(f, "{}: ", issue.path)?;
            }
            write!(f, "{}", issue.message)?;
            if let (Some(text), Some(loc)) = (&issue.line_text, issue.location) {
                write!(f, "\n    {:>4} | {}", loc.line, text.trim_end())?;
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// A config error from toml's error (syntax, unknown field, wrong type, unknown variant,
    /// missing field), with the field path recovered from its span through `map`.
    pub fn from_toml(
        file: &Path,
        text: &str,
        map: Option<&SourceMap>,
        err: &toml::de::Error,
    ) -> Self {
        let message = err.message().trim().to_owned();
        let span = err.span();
        let mut path = match (map, &span) {
            (Some(map), Some(span)) => map.path_at(span.clone()),
            _ => String::new(),
        };
        // "missing field `x`" points at the table that lacks x: name x itself.
        if let Some(field) =
            message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next())
        {
            path = join(&path, field);
        }
        let location = span.map(|s| Location::of(text, s.start));
        let issue =
            Issue { path, location, message, line_text: location.map(|l| line_text(text, l.line)) };
        ConfigError { file: file.to_owned(), issues: vec![issue] }
    }
}

fn line_text(text: &str, line: usize) -> String {
    text.lines().nth(line - 1).unwrap_or("").to_owned()
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// A field of the file: its dotted path and the byte ranges of its key and its value.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// The position of every key in a config file, to turn a dotted field path into a line and
/// column and a byte span back into a field path.
#[derive(Debug, Clone)]
pub struct SourceMap {
    text: String,
    entries: Vec<Entry>,
}

impl SourceMap {
    /// Parses `text` (TOML) and records where each key and value is.
    pub fn new(text: &str) -> Result<Self, toml::de::Error> {
        let root = DeTable::parse(text)?;
        let mut entries = Vec::new();
        walk_table(root.get_ref(), "", &mut entries);
        Ok(Self { text: text.to_owned(), entries })
    }

    /// Whether the file sets the field at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// Where the field at `path` is; when the file does not set it, where its nearest
    /// enclosing table is; `None` when neither is in the file.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                return Some(Location::of(&self.text, e.key.start));
            }
            p = parent(p)?;
        }
    }

    /// The dotted path of the innermost field whose key or value contains `span`.
    pub fn path_at(&self, span: Range<usize>) -> String {
        let contains =
            |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter_map(|e| {
                if contains(&e.key) {
                    Some((0, e))
                } else if contains(&e.value) {
                    Some((e.value.len(), e))
                } else {
                    None
                }
            })
            .min_by_key(|(len, _)| *len)
            .map(|(_, e)| e.path.clone())
            .unwrap_or_default()
    }

    /// An [`Issue`] about the field at `path`, placed at the field or its enclosing table.
    pub fn issue(&self, path: &str, message: impl Into<String>) -> Issue {
        let location = self.locate(path);
        Issue {
            path: path.to_owned(),
            location,
            message: message.into(),
            line_text: location.map(|l| line_text(&self.text, l.line)),
        }
    }
}

/// The enclosing path: `a.b` of `a.b.c`, `a` of `a[0]`, `None` at the top.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (key, value) in table {
        let path = join(prefix, key.get_ref());
        out.push(Entry { path: path.clone(), key: key.span(), value: value.span() });
        walk_value(value.get_ref(), &path, out);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => walk_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Entry { path: item_path.clone(), key: item.span(), value: item.span() });
                walk_value(item.get_ref(), &item_path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b.c"), Some("a.b"));
        assert_eq!(parent("a[0].b"), Some("a[0]"));
        assert_eq!(parent("a[0]"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "a = 1\n[t]\n  \"é\" = 2\n";
        assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
        let e = text.find('=').unwrap();
        assert_eq!(Location::of(text, e), Location { line: 1, column: 3 });
        let map = SourceMap::new(text).unwrap();
        assert_eq!(map.locate("t.é"), Some(Location { line: 3, column: 3 }));
        let two = text.find('2').unwrap();
        assert_eq!(map.path_at(two..two + 1), "t.é");
        assert_eq!(Location::of(text, two), Location { line: 3, column: 9 });
        assert_eq!(map.locate("t.missing"), Some(Location { line: 2, column: 2 }));
        assert!(map.contains("a"));
        assert!(!map.contains("t.missing"));
    }
}
