//! A YAML tree that remembers where every node came from.
//!
//! `serde_yaml` forgets positions once a value is parsed, but every problem in a
//! pipeline must point at its line. So we build our own small tree from the
//! event stream of libyaml (the parser Travis's Ruby used, in a safe Rust port), keeping scalars as the text the user wrote
//! (Travis files are YAML 1.1: `on:` is a key, not `true`, and `script: true`
//! is the shell command `true`). Anchors, aliases and `<<` merge keys are
//! resolved here so the rest of the crate never sees them.

use crate::diagnostic::Span;
use libyaml_safer::{EventData, Mark, Parser, ScalarStyle};
use std::collections::HashMap;

/// Nesting deeper than this is refused: no real pipeline comes close, and it
/// keeps recursion over the tree bounded.
const MAX_DEPTH: usize = 64;
/// Total nodes, counting every alias expansion; stops "billion laughs" files.
pub(crate) const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The value as written, after YAML unquoting and folding.
    pub text: String,
    /// Plain (unquoted) scalars may be null, booleans or numbers; quoted ones are strings.
    pub plain: bool,
    /// A `|` or `>` block scalar, or a quoted scalar spanning lines: its text
    /// does not start at `span` column for column, so positions inside it are approximate.
    pub multiline: bool,
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl Node {
    pub(crate) fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(_) => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Map(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }

    /// Marks this node and all below it as read from file number `file`.
    pub fn in_file(&mut self, file: u16) {
        self.span.file = file;
        match &mut self.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => items.iter_mut().for_each(|n| n.in_file(file)),
            NodeKind::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| {
                k.in_file(file);
                v.in_file(file);
            }),
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(pairs) => Some(pairs),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// `~`, `null` or nothing at all, unquoted.
    pub fn is_null(&self) -> bool {
        self.as_scalar().is_some_and(Scalar::is_null)
    }

    /// The text of a scalar key, for looking keys up.
    pub fn key_text(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// Looks up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text() == Some(key))
            .map(|(_, v)| v)
    }

    /// Describes the node's type for error messages: "a list", "a map", "a string".
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
            NodeKind::Scalar(s) if s.is_null() => "nothing (null)",
            NodeKind::Scalar(s) if s.as_bool().is_some() => "a boolean",
            NodeKind::Scalar(s) if s.plain && s.text.parse::<f64>().is_ok() => "a number",
            NodeKind::Scalar(_) => "a string",
        }
    }
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// YAML 1.1 booleans, as Travis (Ruby's Psych) reads them.
    pub fn as_bool(&self) -> Option<bool> {
        if !self.plain {
            return None;
        }
        match self.text.as_str() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        }
    }
}

fn span_of(mark: Mark) -> Span {
    let line = usize::try_from(mark.line).unwrap_or(usize::MAX - 1);
    let column = usize::try_from(mark.column).unwrap_or(usize::MAX - 1);
    Span::new(line + 1, column + 1)
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: Option<String>,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
        span: Span,
        anchor: Option<String>,
    },
}

fn syntax_error(e: &libyaml_safer::Error) -> SyntaxError {
    let span = e.problem_mark().map(span_of).unwrap_or(Span::new(1, 1));
    let message = match e.context() {
        Some(context) => format!("{} {context}", e.problem()),
        None => e.problem().to_string(),
    };
    SyntaxError { span, message }
}

/// Parses the first YAML document of `source`. `Ok(None)` means the file holds no document.
pub fn load(source: &str) -> Result<Option<Node>, SyntaxError> {
    // libyaml-safer 0.3 panics on a block scalar (`script: |`) that ends the
    // file without a line break (found by `cargo fuzz`); a final newline
    // changes no value we read. Any other parser panic becomes a syntax error.
    let mut text = source.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    std::panic::catch_unwind(|| load_events(&text)).unwrap_or_else(|_| {
        Err(SyntaxError {
            span: Span::new(1, 1),
            message: "the YAML parser failed on this file".into(),
        })
    })
}

fn load_events(source: &str) -> Result<Option<Node>, SyntaxError> {
    let mut input = source.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<String, Node> = HashMap::new();
    let mut budget = MAX_NODES;
    loop {
        let event = parser.parse().map_err(|e| syntax_error(&e))?;
        let span = span_of(event.start_mark);
        let finished = match event.data {
            EventData::StreamEnd => return Ok(None),
            EventData::StreamStart { .. }
            | EventData::DocumentStart { .. }
            | EventData::DocumentEnd { .. } => None,
            EventData::Scalar {
                value,
                style,
                anchor,
                ..
            } => {
                let plain = style == ScalarStyle::Plain;
                let multiline = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    || event.end_mark.line != event.start_mark.line;
                let node = Node {
                    kind: NodeKind::Scalar(Scalar {
                        text: value,
                        plain,
                        multiline,
                    }),
                    span,
                };
                Some((node, anchor))
            }
            EventData::Alias { anchor } => {
                let node = anchors.get(&anchor).cloned().ok_or_else(|| SyntaxError {
                    span,
                    message: format!("alias *{anchor} refers to no anchor"),
                })?;
                Some((node, None))
            }
            EventData::SequenceStart { anchor, .. } => {
                push_frame(
                    &mut stack,
                    span,
                    Frame::Seq {
                        items: Vec::new(),
                        span,
                        anchor,
                    },
                )?;
                None
            }
            EventData::MappingStart { anchor, .. } => {
                push_frame(
                    &mut stack,
                    span,
                    Frame::Map {
                        pairs: Vec::new(),
                        key: None,
                        span,
                        anchor,
                    },
                )?;
                None
            }
            EventData::SequenceEnd | EventData::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    span,
                    anchor,
                }) => Some((
                    Node {
                        kind: NodeKind::Seq(items),
                        span,
                    },
                    anchor,
                )),
                Some(Frame::Map {
                    pairs,
                    span,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        kind: NodeKind::Map(resolve_merge_keys(pairs)),
                        span,
                    },
                    anchor,
                )),
                None => None,
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        let size = node.size();
        budget = budget.checked_sub(size).ok_or_else(|| SyntaxError {
            span: node.span,
            message: format!(
                "the document expands to more than {MAX_NODES} nodes (through aliases)"
            ),
        })?;
        if let Some(anchor) = anchor {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => return Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { pairs, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => pairs.push((k, node)),
            },
        }
    }
}

fn push_frame(stack: &mut Vec<Frame>, span: Span, frame: Frame) -> Result<(), SyntaxError> {
    if stack.len() >= MAX_DEPTH {
        return Err(SyntaxError {
            span,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    stack.push(frame);
    Ok(())
}

/// Applies YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`): keys written in
/// the mapping itself win, then earlier merged maps win over later ones.
fn resolve_merge_keys(pairs: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| k.as_scalar().is_some_and(|s| s.plain && s.text == "<<");
    if !pairs.iter().any(|(k, _)| is_merge(k)) {
        return pairs;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| is_merge(k));
    for (key, value) in merges {
        let sources: Vec<Node> = match value.kind {
            NodeKind::Map(_) => vec![value],
            NodeKind::Seq(items) => items,
            // Not a map: keep it as an ordinary key so the schema reports it.
            NodeKind::Scalar(_) => {
                own.push((key, value));
                continue;
            }
        };
        for source in sources {
            if let NodeKind::Map(merged) = source.kind {
                for (k, v) in merged {
                    let exists = own
                        .iter()
                        .any(|(o, _)| o.key_text().is_some() && o.key_text() == k.key_text());
                    if !exists {
                        own.push((k, v));
                    }
                }
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        &node.as_scalar().expect("scalar").text
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let root = load("a: 1\nlist:\n  - x\n  - y: 2\n").unwrap().unwrap();
        assert_eq!(root.span, Span::new(1, 1));
        let list = root.get("list").unwrap();
        assert_eq!(list.as_seq().unwrap()[0].span, Span::new(3, 5));
        let inner = &list.as_seq().unwrap()[1];
        assert_eq!(inner.get("y").unwrap().span, Span::new(4, 8));
    }

    #[test]
    fn yaml_1_1_words_stay_text_until_asked() {
        let root = load("on: yes\nscript: true\nq: 'true'\n").unwrap().unwrap();
        let pairs = root.as_map().unwrap();
        assert_eq!(scalar(&pairs[0].0), "on");
        assert_eq!(pairs[0].1.as_scalar().unwrap().as_bool(), Some(true));
        assert_eq!(scalar(root.get("script").unwrap()), "true");
        assert_eq!(root.get("q").unwrap().as_scalar().unwrap().as_bool(), None);
    }

    #[test]
    fn merge_keys_keep_own_values_first() {
        let src = "base: &b\n  x: 1\n  y: 2\njob:\n  <<: *b\n  y: 3\n";
        let root = load(src).unwrap().unwrap();
        let job = root.get("job").unwrap();
        assert_eq!(scalar(job.get("x").unwrap()), "1");
        assert_eq!(scalar(job.get("y").unwrap()), "3");
        assert!(job.get("<<").is_none());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.line >= 1, "{err:?}");
        let err = load("a:\n\t- tab\n").unwrap_err();
        assert_eq!(err.span.line, 2, "{err:?}");
    }

    #[test]
    fn block_scalars_may_end_the_file_without_a_newline() {
        for src in ["script: |\n  make test", "script: >\n  make", "- |\n  x"] {
            assert!(load(src).unwrap().is_some(), "{src:?}");
        }
    }

    #[test]
    fn empty_documents_are_none() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(load(&bomb).unwrap_err().message.contains("expands"));
        let deep = "[".repeat(500) + &"]".repeat(500);
        let err = load(&deep).unwrap_err();
        assert!(
            err.message.contains("nesting") || err.message.contains("recursion"),
            "{err:?}"
        );
    }
}
