//! Reading typed values out of the YAML tree, reporting every mismatch with its position.

use crate::condition::{self, Condition};
use crate::diagnostic::{Diagnostics, Span};
use crate::yaml::{Node, NodeKind};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A parsed `if:` condition with its source text.
#[derive(Debug, Clone)]
pub struct Cond {
    pub source: String,
    pub condition: Condition,
    pub span: Span,
}

pub struct Decoder<'d> {
    pub diags: &'d mut Diagnostics,
}

impl<'d> Decoder<'d> {
    pub fn new(diags: &'d mut Diagnostics) -> Self {
        Decoder { diags }
    }

    pub fn type_error(&mut self, node: &Node, key: &str, expected: &str) {
        self.diags.error(
            node.span,
            format!("`{key}` must be {expected}, found {}", node.describe()),
        );
    }

    /// Any scalar as text (numbers and booleans included: `node_js: 12`, `script: true`).
    pub fn string(&mut self, node: &Node, key: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(s) if !s.is_null() => Some(Spanned {
                value: s.text.clone(),
                span: node.span,
            }),
            _ => {
                self.type_error(node, key, "a string");
                None
            }
        }
    }

    /// A string or a list of strings; `null` is an empty list.
    pub fn strings(&mut self, node: &Node, key: &str) -> Option<Vec<Spanned<String>>> {
        match &node.kind {
            NodeKind::Scalar(s) if s.is_null() => Some(Vec::new()),
            NodeKind::Scalar(s) => Some(vec![Spanned {
                value: s.text.clone(),
                span: node.span,
            }]),
            NodeKind::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(s) = self.string(item, key) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            NodeKind::Map(_) => {
                self.type_error(node, key, "a string or a list of strings");
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.as_scalar().and_then(|s| s.as_bool()) {
            Some(b) => Some(b),
            None => {
                self.type_error(node, key, "true or false");
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, node: &Node, key: &str, min: u64, max: u64) -> Option<u64> {
        let parsed = node
            .as_scalar()
            .filter(|s| s.plain)
            .and_then(|s| s.text.parse::<u64>().ok());
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.diags.error(
                    node.span,
                    format!("`{key}` must be between {min} and {max}, found {n}"),
                );
                None
            }
            None => {
                self.type_error(node, key, "a whole number");
                None
            }
        }
    }

    /// A mapping's pairs, or an error.
    pub fn map<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [(Node, Node)]> {
        match node.as_map() {
            Some(pairs) => Some(pairs),
            None => {
                self.type_error(node, key, "a map");
                None
            }
        }
    }

    /// The pairs of a map whose keys are strings; reports non-string and duplicate keys.
    pub fn entries<'n>(&mut self, node: &'n Node, key: &str) -> Vec<(&'n str, &'n Node, Span)> {
        let Some(pairs) = self.map(node, key) else {
            return Vec::new();
        };
        let mut out: Vec<(&str, &Node, Span)> = Vec::new();
        for (k, v) in pairs {
            let Some(name) = k.as_scalar().map(|s| s.text.as_str()) else {
                self.diags.error(
                    k.span,
                    format!("keys in `{key}` must be strings, found {}", k.describe()),
                );
                continue;
            };
            if let Some(pos) = out.iter().position(|(n, _, _)| *n == name) {
                self.diags.warning(
                    k.span,
                    format!("`{name}` is given twice; this later value is used"),
                );
                out.remove(pos);
            }
            out.push((name, v, k.span));
        }
        out
    }

    /// Warns about a key the schema does not know, suggesting a close one.
    pub fn unknown_key(&mut self, name: &str, span: Span, known: &[&str], context: &str) {
        let d = self.diags.warning(
            span,
            format!("unknown key `{name}` in {context}; it is ignored"),
        );
        if let Some(close) = closest(name, known) {
            d.hint(format!("did you mean `{close}`?"));
        }
    }

    /// Parses an `if:` condition, pointing errors at the column inside the value.
    pub fn condition(&mut self, node: &Node, key: &str) -> Option<Cond> {
        let text = self.string(node, key)?;
        match condition::parse(&text.value) {
            Ok(condition) => Some(Cond {
                source: text.value,
                condition,
                span: text.span,
            }),
            Err(e) => {
                let scalar = node.as_scalar();
                let exact =
                    scalar.is_some_and(|s| s.plain && !s.multiline && !text.value.contains('\n'));
                let span = if exact {
                    text.span.offset(e.offset)
                } else {
                    text.span
                };
                self.diags
                    .error(span, format!("invalid `{key}` condition: {}", e.message))
                    .hint(
                        "see the condition syntax in the README: `branch = master AND type = push`",
                    );
                None
            }
        }
    }
}

/// The closest known word within two edits, for "did you mean" hints.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2 && *d < word.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(closest("scirpt", &["script", "install"]), Some("script"));
        assert_eq!(
            closest("before_instal", &["before_install", "install"]),
            Some("before_install")
        );
        assert_eq!(closest("banana", &["script", "install"]), None);
    }
}
