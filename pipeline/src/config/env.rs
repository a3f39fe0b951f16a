//! `env:` entries: `"A=1 B='two words'"` strings, `{A: 1}` maps and `{secure: …}` values.

use crate::decode::Decoder;
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};

/// One environment variable of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    /// The value with shell quoting removed, as conditions' `env()` and the UI see it.
    pub value: String,
    /// The value as written, exported through the shell (`export NAME=raw`) so
    /// `$HOME`-style references expand as on Travis.
    pub raw: String,
}

/// One entry of an `env` list: one job of the matrix at the root, or a part of a job's env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    /// The entry as written (`A=1 B=2`), matched exactly by `exclude` and `allow_failures`.
    pub source: String,
    pub vars: Vec<EnvVar>,
    /// A Travis-encrypted `secure:` value: resolved from the repository's secrets.
    pub secure: bool,
    pub span: Span,
}

/// Parsed root `env:`.
#[derive(Debug, Clone, Default)]
pub struct RootEnv {
    pub global: Vec<EnvEntry>,
    /// Entries that expand the matrix, one job each.
    pub matrix: Vec<EnvEntry>,
    pub matrix_span: Option<Span>,
}

/// Whether `name` can be a shell variable: letters, digits and `_`, not starting with a digit.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `A=1 B="x y"` into variables; errors say which word is wrong.
pub fn parse_assignments(text: &str) -> Result<Vec<EnvVar>, String> {
    let mut vars = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(vars);
        }
        let mut word_raw = String::new();
        let mut word_value = String::new();
        let mut quote: Option<char> = None;
        // Inside `$( … )` or backticks the shell sees one word, spaces and all.
        let mut substitution = 0usize;
        let mut backtick = false;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && substitution == 0 && !backtick && c.is_whitespace() {
                break;
            }
            chars.next();
            word_raw.push(c);
            if quote != Some('\'') {
                if c == '`' {
                    backtick = !backtick;
                } else if c == '$' && chars.peek() == Some(&'(') {
                    substitution += 1;
                    word_value.push(c);
                    if let Some(open) = chars.next() {
                        word_raw.push(open);
                        word_value.push(open);
                    }
                    continue;
                } else if substitution > 0 && c == '(' {
                    substitution += 1;
                } else if substitution > 0 && c == ')' {
                    substitution -= 1;
                }
            }
            if substitution > 0 || backtick || c == '`' {
                word_value.push(c);
                continue;
            }
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => word_value.push(c),
                (_, '\\') => {
                    if let Some(next) = chars.next() {
                        word_raw.push(next);
                        word_value.push(next);
                    }
                }
                (_, c) => word_value.push(c),
            }
        }
        if substitution > 0 || backtick {
            return Err(format!("unterminated command substitution in `{word_raw}`"));
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote in `{word_raw}`"));
        }
        let Some((name, raw)) = word_raw.split_once('=') else {
            return Err(format!("expected NAME=value, found `{word_raw}`"));
        };
        if !is_name(name) {
            return Err(format!("`{name}` is not a valid variable name (letters, digits and _, not starting with a digit)"));
        }
        let value = word_value
            .split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        vars.push(EnvVar {
            name: name.to_string(),
            value,
            raw: raw.to_string(),
        });
    }
}

/// Quotes a plain value for the shell, keeping `$VAR` references expandable.
fn shell_word(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || "\"'`\\;&|<>(){}#".contains(c))
    {
        return value.to_string();
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('`', "\\`");
    format!("\"{escaped}\"")
}

/// Reads one entry: a string, a `{secure: …}` map, or a map of variables.
pub fn entry(d: &mut Decoder, node: &Node) -> Option<EnvEntry> {
    match &node.kind {
        NodeKind::Scalar(s) if s.is_null() => None,
        NodeKind::Scalar(s) => match parse_assignments(&s.text) {
            Ok(vars) => Some(EnvEntry {
                source: s.text.clone(),
                vars,
                secure: false,
                span: node.span,
            }),
            Err(message) => {
                d.diags
                    .error(node.span, format!("invalid env entry: {message}"))
                    .hint("write variables as `NAME=value`, quoting values with spaces: `OPTS=\"-v -x\"`");
                None
            }
        },
        NodeKind::Map(_) => {
            if let Some(secure) = node.get("secure") {
                d.string(secure, "secure")?;
                return Some(EnvEntry {
                    source: "secure".into(),
                    vars: Vec::new(),
                    secure: true,
                    span: node.span,
                });
            }
            let mut vars = Vec::new();
            let mut parts = Vec::new();
            for (name, value, span) in d.entries(node, "env") {
                if !is_name(name) {
                    d.diags
                        .error(span, format!("`{name}` is not a valid variable name"));
                    continue;
                }
                let Some(value) = d.string(value, name) else {
                    continue;
                };
                let raw = shell_word(&value.value);
                parts.push(format!("{name}={raw}"));
                vars.push(EnvVar {
                    name: name.to_string(),
                    value: value.value,
                    raw,
                });
            }
            Some(EnvEntry {
                source: parts.join(" "),
                vars,
                secure: false,
                span: node.span,
            })
        }
        NodeKind::Seq(_) => {
            d.type_error(node, "env", "a `NAME=value` string or a map");
            None
        }
    }
}

/// A list, a single entry, or nothing.
pub fn entries(d: &mut Decoder, node: &Node) -> Vec<EnvEntry> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().filter_map(|i| entry(d, i)).collect(),
        _ => entry(d, node).into_iter().collect(),
    }
}

fn is_structured(node: &Node) -> bool {
    node.as_map().is_some_and(|pairs| {
        pairs
            .iter()
            .any(|(k, _)| matches!(k.key_text(), Some("global" | "jobs" | "matrix")))
    })
}

/// Root `env:`: a list expands the matrix; `global:` goes to every job.
pub fn root(d: &mut Decoder, node: &Node) -> RootEnv {
    if !is_structured(node) {
        return RootEnv {
            global: Vec::new(),
            matrix: entries(d, node),
            matrix_span: Some(node.span),
        };
    }
    let mut env = RootEnv::default();
    for (key, value, span) in d.entries(node, "env") {
        match key {
            "global" => env.global = entries(d, value),
            "jobs" | "matrix" => {
                env.matrix = entries(d, value);
                env.matrix_span = Some(value.span);
            }
            other => d.unknown_key(other, span, &["global", "jobs", "matrix"], "`env`"),
        }
    }
    env
}

/// A job's own `env:` (in `jobs.include`): every entry goes into that one job.
pub fn job(d: &mut Decoder, node: &Node) -> Vec<EnvEntry> {
    if is_structured(node) {
        let env = root(d, node);
        return env.global.into_iter().chain(env.matrix).collect();
    }
    entries(d, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_keep_quoting_for_the_shell() {
        let vars = parse_assignments(r#"A=1 NODE_OPTIONS="--trace-warnings" B='x y' PATH=$HOME/bin:$PATH E= SHA=$(git rev-parse HEAD) T=`date +%s`"#).unwrap();
        let pairs: Vec<(&str, &str, &str)> = vars
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str(), v.raw.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("A", "1", "1"),
                ("NODE_OPTIONS", "--trace-warnings", "\"--trace-warnings\""),
                ("B", "x y", "'x y'"),
                ("PATH", "$HOME/bin:$PATH", "$HOME/bin:$PATH"),
                ("E", "", ""),
                ("SHA", "$(git rev-parse HEAD)", "$(git rev-parse HEAD)"),
                ("T", "`date +%s`", "`date +%s`"),
            ]
        );
    }

    #[test]
    fn bad_assignments_say_what_is_wrong() {
        assert!(parse_assignments("A=1 oops")
            .unwrap_err()
            .contains("NAME=value"));
        assert!(parse_assignments("1A=2")
            .unwrap_err()
            .contains("not a valid variable name"));
        assert!(parse_assignments("A=\"open")
            .unwrap_err()
            .contains("unterminated"));
    }
}
