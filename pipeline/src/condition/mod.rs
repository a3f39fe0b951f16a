//! Travis's `if:` condition language (conditions v1).
//!
//! ```text
//! branch = master AND type IN (push, api)
//! tag =~ ^v\d+ OR env(FORCE_DEPLOY) IS present
//! NOT (fork AND commit_message =~ /\[wip\]/)
//! ```
//! Parsed once when the pipeline is read (so errors point at the column) and
//! evaluated for each build, stage and job.

mod eval;
mod lexer;
mod parser;

pub use eval::Facts;
pub use parser::parse;

use regex::Regex;

/// A parsed condition.
#[derive(Debug, Clone)]
pub enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare(Term, CompareOp, Term),
    Match {
        term: Term,
        regex: Regex,
        negated: bool,
    },
    In {
        term: Term,
        list: Vec<Term>,
        negated: bool,
    },
    Is {
        term: Term,
        predicate: Predicate,
        negated: bool,
    },
    /// A lone term: true when it has a value other than `false`.
    Truthy(Term),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predicate {
    Present,
    Blank,
    True,
    False,
}

/// The attributes a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    Type,
    Repo,
    Branch,
    Tag,
    CommitMessage,
    Sender,
    Fork,
    HeadRepo,
    HeadBranch,
    Os,
    Language,
    Sudo,
    Dist,
    Group,
}

impl Attribute {
    fn from_name(name: &str) -> Option<Attribute> {
        Some(match name {
            "type" => Attribute::Type,
            "repo" => Attribute::Repo,
            "branch" => Attribute::Branch,
            "tag" => Attribute::Tag,
            "commit_message" => Attribute::CommitMessage,
            "sender" => Attribute::Sender,
            "fork" => Attribute::Fork,
            "head_repo" => Attribute::HeadRepo,
            "head_branch" => Attribute::HeadBranch,
            "os" => Attribute::Os,
            "language" => Attribute::Language,
            "sudo" => Attribute::Sudo,
            "dist" => Attribute::Dist,
            "group" => Attribute::Group,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub enum Term {
    Attribute(Attribute),
    Value(String),
    Env(Box<Term>),
    Concat(Vec<Term>),
}

/// A condition that could not be parsed, with the character offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for ConditionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}
