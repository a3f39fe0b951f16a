//! Travis's message templates for chat notifiers (Slack, IRC): lines with
//! `%{name}` variables filled from the build when the message is sent.

use crate::decode::{Decoder, Spanned};

/// The variables a template may use (Travis's `Util::Template`).
pub const VARIABLES: &[&str] = &[
    "repository",
    "repository_slug",
    "repository_name",
    "build_number",
    "build_id",
    "build_url",
    "branch",
    "commit",
    "commit_subject",
    "commit_message",
    "author",
    "result",
    "message",
    "duration",
    "elapsed_time",
    "compare_url",
    "pull_request",
    "pull_request_number",
    "pull_request_url",
];

/// `template:` — one line or a list of them, each checked for unknown
/// variables; `None` when it is not text.
pub(super) fn decode(d: &mut Decoder, node: &crate::yaml::Node) -> Option<Vec<String>> {
    let lines = d.strings(node, "template")?;
    for line in &lines {
        check(d, line);
    }
    Some(lines.into_iter().map(|l| l.value).collect())
}

/// Warns of `%{name}`s that are not template variables.
fn check(d: &mut Decoder, line: &Spanned<String>) {
    let mut rest = line.value.as_str();
    while let Some(at) = rest.find("%{") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        let name = &after[..end];
        if !VARIABLES.contains(&name) {
            let w = d.diags.warning(
                line.span,
                format!("`%{{{name}}}` is not a template variable; it is left as written"),
            );
            if let Some(close) = crate::decode::closest(name, VARIABLES) {
                w.hint(format!("did you mean `%{{{close}}}`?"));
            }
        }
        rest = &after[end + 1..];
    }
}
