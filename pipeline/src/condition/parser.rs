//! Recursive-descent parser: `NOT` binds tighter than `AND`, `AND` than `OR`.

use super::lexer::{Lexer, Token};
use super::{Attribute, CompareOp, Condition, ConditionError, Predicate, Term};
use regex::Regex;

/// Longest condition accepted; also bounds the parser's recursion.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

/// Parses a condition such as `branch = master AND NOT fork`.
pub fn parse(src: &str) -> Result<Condition, ConditionError> {
    if src.chars().count() > MAX_LEN {
        return Err(ConditionError {
            offset: 0,
            message: format!("condition longer than {MAX_LEN} characters"),
        });
    }
    let mut parser = Parser {
        lexer: Lexer::new(src),
        ahead: None,
        depth: 0,
    };
    if parser.peek()?.is_none() {
        return Err(ConditionError {
            offset: 0,
            message: "empty condition".into(),
        });
    }
    let condition = parser.or()?;
    if let Some((token, offset)) = parser.next()? {
        return Err(ConditionError {
            offset,
            message: format!(
                "unexpected {} after a complete condition; join conditions with AND or OR",
                describe(&token)
            ),
        });
    }
    Ok(condition)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    ahead: Option<Option<(Token, usize)>>,
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::Comma => "`,`".into(),
        Token::Eq => "`=`".into(),
        Token::NotEq => "`!=`".into(),
        Token::Match => "`=~`".into(),
        Token::NotMatch => "`!~`".into(),
        Token::And => "`AND`".into(),
        Token::Or => "`OR`".into(),
        Token::Not => "`NOT`".into(),
        Token::Word(w) => format!("`{w}`"),
        Token::Quoted(w) => format!("'{w}'"),
    }
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&(Token, usize)>, ConditionError> {
        if self.ahead.is_none() {
            self.ahead = Some(self.lexer.next()?);
        }
        Ok(self.ahead.as_ref().and_then(|t| t.as_ref()))
    }

    fn next(&mut self) -> Result<Option<(Token, usize)>, ConditionError> {
        match self.ahead.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    fn peek_is(&mut self, want: &Token) -> Result<bool, ConditionError> {
        Ok(self.peek()?.is_some_and(|(t, _)| t == want))
    }

    fn peek_word(&mut self, word: &str) -> Result<bool, ConditionError> {
        Ok(matches!(self.peek()?, Some((Token::Word(w), _)) if w.eq_ignore_ascii_case(word)))
    }

    fn end_offset(&self) -> usize {
        self.lexer.pos()
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), ConditionError> {
        match self.next()? {
            Some((t, _)) if t == want => Ok(()),
            Some((t, offset)) => Err(ConditionError {
                offset,
                message: format!("expected {what}, found {}", describe(&t)),
            }),
            None => Err(ConditionError {
                offset: self.end_offset(),
                message: format!("expected {what} at the end"),
            }),
        }
    }

    fn enter(&mut self) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ConditionError {
                offset: self.end_offset(),
                message: "condition nested too deeply".into(),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.and()?;
        while self.peek_is(&Token::Or)? {
            self.next()?;
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.not()?;
        while self.peek_is(&Token::And)? {
            self.next()?;
            let right = self.not()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        if self.peek_is(&Token::Not)? {
            self.next()?;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, ConditionError> {
        if self.peek_is(&Token::LParen)? {
            self.next()?;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            self.expect(Token::RParen, "`)`")?;
            return Ok(inner);
        }
        let term = self.term()?;
        let Some((token, offset)) = self.peek()?.cloned() else {
            return Ok(Condition::Truthy(term));
        };
        match token {
            Token::Eq | Token::NotEq => {
                self.next()?;
                let op = if token == Token::Eq {
                    CompareOp::Eq
                } else {
                    CompareOp::NotEq
                };
                Ok(Condition::Compare(term, op, self.term()?))
            }
            Token::Match | Token::NotMatch => {
                self.next()?;
                let (pattern, at) = self.lexer.regex()?;
                let regex = Regex::new(&pattern).map_err(|e| ConditionError {
                    offset: at,
                    message: format!(
                        "invalid regular expression `{pattern}`: {}",
                        first_line(&e.to_string())
                    ),
                })?;
                Ok(Condition::Match {
                    term,
                    regex,
                    negated: token == Token::NotMatch,
                })
            }
            Token::Not => {
                self.next()?;
                if !self.peek_word("IN")? {
                    return Err(ConditionError {
                        offset,
                        message: "expected IN after NOT here (`x NOT IN (a, b)`)".into(),
                    });
                }
                self.next()?;
                Ok(Condition::In {
                    term,
                    list: self.list()?,
                    negated: true,
                })
            }
            Token::Word(w) if w.eq_ignore_ascii_case("IN") => {
                self.next()?;
                Ok(Condition::In {
                    term,
                    list: self.list()?,
                    negated: false,
                })
            }
            Token::Word(w) if w.eq_ignore_ascii_case("IS") => {
                self.next()?;
                let mut negated = false;
                if self.peek_is(&Token::Not)? {
                    self.next()?;
                    negated = true;
                }
                let predicate = match self.next()? {
                    Some((Token::Word(p), at)) => match p.to_ascii_lowercase().as_str() {
                        "present" => Predicate::Present,
                        "blank" => Predicate::Blank,
                        "true" => Predicate::True,
                        "false" => Predicate::False,
                        _ => {
                            return Err(ConditionError {
                                offset: at,
                                message: format!(
                                    "expected present, blank, true or false after IS, found `{p}`"
                                ),
                            })
                        }
                    },
                    Some((t, at)) => {
                        return Err(ConditionError {
                            offset: at,
                            message: format!(
                                "expected present, blank, true or false after IS, found {}",
                                describe(&t)
                            ),
                        })
                    }
                    None => {
                        return Err(ConditionError {
                            offset: self.end_offset(),
                            message: "expected present, blank, true or false after IS".into(),
                        })
                    }
                };
                Ok(Condition::Is {
                    term,
                    predicate,
                    negated,
                })
            }
            _ => Ok(Condition::Truthy(term)),
        }
    }

    fn list(&mut self) -> Result<Vec<Term>, ConditionError> {
        self.expect(Token::LParen, "`(` to open the list")?;
        let mut items = vec![self.term()?];
        while self.peek_is(&Token::Comma)? {
            self.next()?;
            items.push(self.term()?);
        }
        self.expect(Token::RParen, "`)` to close the list")?;
        Ok(items)
    }

    fn term(&mut self) -> Result<Term, ConditionError> {
        match self.next()? {
            Some((Token::Quoted(text), _)) => Ok(Term::Value(text)),
            Some((Token::Word(word), _)) => {
                let lower = word.to_ascii_lowercase();
                if (lower == "env" || lower == "concat") && self.peek_is(&Token::LParen)? {
                    self.next()?;
                    self.enter()?;
                    let mut args = vec![self.term()?];
                    while self.peek_is(&Token::Comma)? {
                        self.next()?;
                        args.push(self.term()?);
                    }
                    self.depth -= 1;
                    self.expect(Token::RParen, "`)` to close the function call")?;
                    if lower == "env" {
                        if args.len() != 1 {
                            return Err(ConditionError {
                                offset: self.end_offset(),
                                message: "env() takes exactly one name".into(),
                            });
                        }
                        return Ok(Term::Env(Box::new(args.remove(0))));
                    }
                    return Ok(Term::Concat(args));
                }
                Ok(match Attribute::from_name(&word) {
                    Some(attribute) => Term::Attribute(attribute),
                    None => Term::Value(word),
                })
            }
            Some((t, offset)) => Err(ConditionError {
                offset,
                message: format!("expected a value or attribute, found {}", describe(&t)),
            }),
            None => Err(ConditionError {
                offset: self.end_offset(),
                message: "expected a value or attribute at the end".into(),
            }),
        }
    }
}

/// The regex crate's message without its pattern drawing: `unclosed character class`.
fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or_else(|| s.lines().next().unwrap_or(""));
    line.trim().trim_start_matches("error:").trim().to_string()
}
