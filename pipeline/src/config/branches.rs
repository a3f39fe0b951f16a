//! `branches: only/except` — the legacy branch filter, with `/regex/` entries.

use crate::context::BuildContext;
use crate::decode::Decoder;
use crate::yaml::{Node, NodeKind};
use regex::Regex;

#[derive(Debug, Clone)]
pub enum BranchPattern {
    Exact(String),
    Regex(Regex),
}

impl BranchPattern {
    fn matches(&self, branch: &str) -> bool {
        match self {
            BranchPattern::Exact(name) => name == branch,
            BranchPattern::Regex(re) => re.is_match(branch),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Branches {
    pub only: Vec<BranchPattern>,
    pub except: Vec<BranchPattern>,
}

impl Branches {
    /// Whether the build's branch (for tags: the tag, for pull requests: the base) may build.
    pub fn allows(&self, build: &BuildContext) -> Result<(), String> {
        let branch = build.branch.as_str();
        if !self.only.is_empty() {
            if self.only.iter().any(|p| p.matches(branch)) {
                return Ok(());
            }
            return Err(format!("branch {branch} is not in branches.only"));
        }
        if self.except.iter().any(|p| p.matches(branch)) {
            return Err(format!("branch {branch} is in branches.except"));
        }
        if branch == "gh-pages" {
            return Err("gh-pages is built only when listed in branches.only".into());
        }
        Ok(())
    }
}

fn patterns(d: &mut Decoder, node: &Node, key: &str) -> Vec<BranchPattern> {
    let mut out = Vec::new();
    for item in d.strings(node, key).unwrap_or_default() {
        let text = item.value.as_str();
        if text.len() >= 2 && text.starts_with('/') && text.rfind('/').is_some_and(|i| i > 0) {
            let end = text.rfind('/').unwrap_or(text.len());
            let flags = &text[end + 1..];
            if !flags.is_empty() {
                d.diags
                    .warning(
                        item.span,
                        format!("regex flags `{flags}` are not supported and are ignored"),
                    )
                    .hint("use inline flags instead: /(?i:release)/");
            }
            match Regex::new(&text[1..end]) {
                Ok(re) => out.push(BranchPattern::Regex(re)),
                Err(e) => {
                    d.diags.error(
                        item.span,
                        format!(
                            "invalid branch regex {text}: {}",
                            e.to_string()
                                .lines()
                                .last()
                                .unwrap_or("")
                                .trim()
                                .trim_start_matches("error:")
                                .trim()
                        ),
                    );
                }
            }
        } else {
            out.push(BranchPattern::Exact(item.value));
        }
    }
    out
}

pub fn decode(d: &mut Decoder, node: &Node) -> Branches {
    let mut branches = Branches::default();
    if let NodeKind::Seq(_) | NodeKind::Scalar(_) = node.kind {
        // `branches: [master]` is read as `only`, as Travis does.
        branches.only = patterns(d, node, "branches");
        return branches;
    }
    for (key, value, span) in d.entries(node, "branches") {
        match key {
            "only" => branches.only = patterns(d, value, key),
            "except" | "exclude" => branches.except = patterns(d, value, key),
            other => d.unknown_key(other, span, &["only", "except"], "`branches`"),
        }
    }
    branches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostics;

    fn branches(src: &str) -> Branches {
        let node = crate::yaml::load(src).unwrap().unwrap();
        let mut diags = Diagnostics::new();
        let b = decode(&mut Decoder::new(&mut diags), &node);
        assert!(!diags.has_errors(), "{diags:?}");
        b
    }

    #[test]
    fn only_wins_and_regexes_match() {
        let b = branches("only: [master, /^release-.*$/]\nexcept: [master]\n");
        assert!(b.allows(&BuildContext::push("master")).is_ok());
        assert!(b.allows(&BuildContext::push("release-1.2")).is_ok());
        assert!(b.allows(&BuildContext::push("dev")).is_err());
        assert!(
            b.allows(&BuildContext::tag("v1.0")).is_err(),
            "a safelist blocks tags unless one matches"
        );
        let b = branches("except: [/^wip/, legacy]\n");
        assert!(b.allows(&BuildContext::push("wip-x")).is_err());
        assert!(b.allows(&BuildContext::push("main")).is_ok());
        assert!(b.allows(&BuildContext::push("gh-pages")).is_err());
        let b = branches("only: /^v\\d+/\n");
        assert!(b.allows(&BuildContext::tag("v2.0")).is_ok());
    }
}
