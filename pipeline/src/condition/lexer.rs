//! Splits a condition into tokens. Regular expressions after `=~` are lexed on
//! the parser's request, because a bare regex may contain `(`, `|` and `*`.

use super::ConditionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    LParen,
    RParen,
    Comma,
    Eq,
    NotEq,
    Match,
    NotMatch,
    And,
    Or,
    Not,
    /// A bare word: an attribute, a keyword (`IN`, `IS`, `present`, …) or a value.
    Word(String),
    /// A quoted string: always a value.
    Quoted(String),
}

pub struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    _src: &'a str,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            _src: src,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek_char() {
            // A trailing backslash continues the condition on the next line.
            if c.is_whitespace() || (c == '\\' && self.chars.get(self.pos + 1) == Some(&'\n')) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ConditionError {
        ConditionError {
            offset,
            message: message.into(),
        }
    }

    /// The next token and its starting offset; `None` at the end.
    pub fn next(&mut self) -> Result<Option<(Token, usize)>, ConditionError> {
        self.skip_space();
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(None);
        };
        let two: String = self.chars[self.pos..(self.pos + 2).min(self.chars.len())]
            .iter()
            .collect();
        let (token, len) =
            match (c, two.as_str()) {
                (_, "==") => (Token::Eq, 2),
                (_, "!=") => (Token::NotEq, 2),
                (_, "=~") | (_, "~=") => (Token::Match, 2),
                (_, "!~") => (Token::NotMatch, 2),
                (_, "&&") => (Token::And, 2),
                (_, "||") => (Token::Or, 2),
                ('(', _) => (Token::LParen, 1),
                (')', _) => (Token::RParen, 1),
                (',', _) => (Token::Comma, 1),
                ('=', _) => (Token::Eq, 1),
                ('!', _) => (Token::Not, 1),
                ('\'', _) | ('"', _) => {
                    let text = self.quoted(c)?;
                    return Ok(Some((Token::Quoted(text), start)));
                }
                ('$', _) => return Err(self.error(
                    start,
                    "unquoted `$` variable: use env(NAME) to read a variable, or quote the value",
                )),
                _ => {
                    let word = self.word();
                    if word.is_empty() {
                        return Err(self.error(start, format!("unexpected character `{c}`")));
                    }
                    let token = match word.to_ascii_uppercase().as_str() {
                        "AND" => Token::And,
                        "OR" => Token::Or,
                        "NOT" => Token::Not,
                        _ => Token::Word(word),
                    };
                    return Ok(Some((token, start)));
                }
            };
        self.pos += len;
        Ok(Some((token, start)))
    }

    fn word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() || "()=!~,'\"&|".contains(c) {
                break;
            }
            word.push(c);
            self.pos += 1;
        }
        word
    }

    fn quoted(&mut self, quote: char) -> Result<String, ConditionError> {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        while let Some(c) = self.peek_char() {
            self.pos += 1;
            if c == '\\' {
                if let Some(next) = self.peek_char() {
                    self.pos += 1;
                    if next != quote && next != '\\' {
                        text.push('\\');
                    }
                    text.push(next);
                }
                continue;
            }
            if c == quote {
                return Ok(text);
            }
            text.push(c);
        }
        Err(self.error(
            start,
            format!("unterminated string: add the closing {quote}"),
        ))
    }

    /// A regular expression: `/…/`, a quoted string, or a bare word up to the next
    /// space (a trailing `)` that closes an outer parenthesis is left alone).
    pub fn regex(&mut self) -> Result<(String, usize), ConditionError> {
        self.skip_space();
        let start = self.pos;
        match self.peek_char() {
            None => Err(self.error(
                start,
                "expected a regular expression after the match operator",
            )),
            Some('/') => {
                self.pos += 1;
                let mut text = String::new();
                while let Some(c) = self.peek_char() {
                    self.pos += 1;
                    if c == '\\' && self.peek_char() == Some('/') {
                        self.pos += 1;
                        text.push('/');
                        continue;
                    }
                    if c == '/' {
                        return Ok((text, start));
                    }
                    text.push(c);
                }
                Err(self.error(start, "unterminated regular expression: add the closing /"))
            }
            Some(q @ ('\'' | '"')) => Ok((self.quoted(q)?, start)),
            Some(_) => {
                let mut text = String::new();
                while let Some(c) = self.peek_char() {
                    if c.is_whitespace() {
                        break;
                    }
                    text.push(c);
                    self.pos += 1;
                }
                // Give back closing parentheses that do not belong to the regex.
                loop {
                    let open = text.matches('(').count();
                    let close = text.matches(')').count();
                    if close > open && text.ends_with(')') {
                        text.pop();
                        self.pos -= 1;
                    } else {
                        break;
                    }
                }
                if text.is_empty() {
                    return Err(self.error(
                        start,
                        "expected a regular expression after the match operator",
                    ));
                }
                Ok((text, start))
            }
        }
    }
}
