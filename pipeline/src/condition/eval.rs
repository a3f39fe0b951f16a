//! Evaluating a condition against the facts of a build (and job).

use super::{Attribute, CompareOp, Condition, Predicate, Term};
use crate::context::BuildContext;

/// What a condition may read: the build's attributes, the job's, and env vars.
pub struct Facts<'a> {
    pub build: &'a BuildContext,
    /// `env()` reads these: the pipeline's global and job env, then repository settings.
    pub env: &'a [(String, String)],
    pub os: Option<&'a str>,
    pub language: Option<&'a str>,
    pub dist: Option<&'a str>,
    pub sudo: Option<&'a str>,
    pub group: Option<&'a str>,
}

impl<'a> Facts<'a> {
    /// Facts of the build alone, before any job exists.
    pub fn build(build: &'a BuildContext, env: &'a [(String, String)]) -> Self {
        Facts {
            build,
            env,
            os: None,
            language: None,
            dist: None,
            sudo: None,
            group: None,
        }
    }

    fn attribute(&self, attribute: Attribute) -> Option<String> {
        let b = self.build;
        match attribute {
            Attribute::Type => Some(b.event.travis_type().to_string()),
            Attribute::Repo => Some(b.repo.clone()),
            Attribute::Branch => Some(b.branch.clone()),
            Attribute::Tag => b.tag.clone(),
            Attribute::CommitMessage => Some(b.commit_message.clone()),
            Attribute::Sender => Some(b.sender.clone()),
            Attribute::Fork => Some(b.fork.to_string()),
            Attribute::HeadRepo => b.head_repo.clone(),
            Attribute::HeadBranch => b.head_branch.clone(),
            Attribute::Os => Some(self.os.unwrap_or("linux").to_string()),
            Attribute::Language => self.language.map(str::to_string),
            Attribute::Sudo => self.sudo.map(str::to_string),
            Attribute::Dist => self.dist.map(str::to_string),
            Attribute::Group => self.group.map(str::to_string),
        }
    }

    fn env_var(&self, name: &str) -> Option<String> {
        // Later entries win, like repeated `export`s.
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn term(&self, term: &Term) -> Option<String> {
        match term {
            Term::Attribute(a) => self.attribute(*a),
            Term::Value(v) => Some(v.clone()),
            Term::Env(name) => self.term(name).and_then(|n| self.env_var(&n)),
            Term::Concat(parts) => Some(parts.iter().filter_map(|p| self.term(p)).collect()),
        }
    }
}

impl Condition {
    /// Whether the condition holds for these facts.
    pub fn eval(&self, facts: &Facts<'_>) -> bool {
        match self {
            Condition::And(a, b) => a.eval(facts) && b.eval(facts),
            Condition::Or(a, b) => a.eval(facts) || b.eval(facts),
            Condition::Not(c) => !c.eval(facts),
            Condition::Compare(a, op, b) => {
                let equal = facts.term(a) == facts.term(b);
                match op {
                    CompareOp::Eq => equal,
                    CompareOp::NotEq => !equal,
                }
            }
            Condition::Match {
                term,
                regex,
                negated,
            } => {
                let matched = facts.term(term).is_some_and(|v| regex.is_match(&v));
                matched != *negated
            }
            Condition::In {
                term,
                list,
                negated,
            } => {
                let value = facts.term(term);
                let found = value.is_some() && list.iter().any(|item| facts.term(item) == value);
                found != *negated
            }
            Condition::Is {
                term,
                predicate,
                negated,
            } => {
                let value = facts.term(term);
                let holds = match predicate {
                    Predicate::Present => value.as_deref().is_some_and(|v| !v.is_empty()),
                    Predicate::Blank => value.as_deref().is_none_or(str::is_empty),
                    Predicate::True => value.as_deref() == Some("true"),
                    Predicate::False => value.as_deref() == Some("false"),
                };
                holds != *negated
            }
            Condition::Truthy(term) => facts
                .term(term)
                .is_some_and(|v| !v.is_empty() && v != "false"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::context::Event;

    fn holds(condition: &str, build: &BuildContext) -> bool {
        let env = vec![
            ("DEPLOY".to_string(), "yes".to_string()),
            ("NAME".to_string(), "DEPLOY".to_string()),
        ];
        parse(condition)
            .unwrap_or_else(|e| panic!("{condition}: {e}"))
            .eval(&Facts::build(build, &env))
    }

    #[test]
    fn the_documented_examples_evaluate_as_travis_does() {
        let master = BuildContext::push("master");
        let dev = BuildContext::push("dev");
        let tag = BuildContext::tag("v1.2.0");
        let pr = BuildContext {
            event: Event::PullRequest,
            fork: true,
            ..BuildContext::push("master")
        };
        let table: &[(&str, &BuildContext, bool)] = &[
            ("branch = master", &master, true),
            ("branch == master", &dev, false),
            ("branch != master", &dev, true),
            ("type = push", &tag, true),
            ("type IN (push, api)", &master, true),
            ("type NOT IN (push, api)", &pr, true),
            ("tag IS present", &tag, true),
            ("tag IS blank", &master, true),
            ("tag IS NOT present", &master, true),
            ("tag =~ ^v\\d+\\.\\d+", &tag, true),
            ("tag =~ /^v(1|2)\\./", &tag, true),
            ("branch =~ ^(master|dev)$", &dev, true),
            (
                "(branch =~ ^(master|release)$) AND tag IS blank",
                &master,
                true,
            ),
            ("branch !~ ^feature/", &master, true),
            ("fork = true", &pr, true),
            ("fork", &pr, true),
            ("NOT fork", &master, true),
            ("fork IS false", &master, true),
            ("type = pull_request AND NOT fork", &pr, false),
            (
                "branch = dev OR branch = master AND tag IS present",
                &master,
                false,
            ),
            (
                "(branch = dev OR branch = master) AND tag IS blank",
                &master,
                true,
            ),
            ("env(DEPLOY) = yes", &master, true),
            ("env(env(NAME)) = yes", &master, true),
            ("env(MISSING) IS blank", &master, true),
            ("concat(branch, '-', type) = 'master-push'", &master, true),
            ("branch = \"master\" && type = push", &master, true),
            ("! (branch = dev || tag IS present)", &master, true),
            ("repo = owner/repo", &master, true),
            ("os = linux", &master, true),
            ("branch = master AND \\\n type = push", &master, true),
        ];
        for (condition, build, want) in table {
            assert_eq!(holds(condition, build), *want, "{condition}");
        }
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let cases: &[(&str, usize, &str)] = &[
            ("branch = $BRANCH", 9, "env(NAME)"),
            ("branch = master AND", 19, "expected a value"),
            ("branch IN master", 10, "`(`"),
            ("tag IS gone", 7, "present, blank"),
            ("(branch = master", 16, "`)`"),
            ("branch =~ /[/", 10, "invalid regular expression"),
            ("branch = master tag", 16, "AND or OR"),
            ("", 0, "empty"),
        ];
        for (condition, offset, message) in cases {
            let err = parse(condition).expect_err(condition);
            assert_eq!(err.offset, *offset, "{condition}: {err}");
            assert!(err.message.contains(message), "{condition}: {err}");
        }
    }
}
