//! Problems found in a pipeline file, each pointing at a line and column.

use serde::Serialize;
use std::fmt;

/// How bad a problem is: errors stop the build, warnings only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A position in a source file, 1-based like an editor shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Span {
    /// Which file: 0 for the pipeline file, `n` for the `n`th file it
    /// imported (see [`Diagnostics::imported`]).
    #[serde(skip)]
    pub file: u16,
    pub line: usize,
    pub column: usize,
}

impl Span {
    pub fn new(line: usize, column: usize) -> Self {
        Span {
            file: 0,
            line,
            column,
        }
    }

    /// The position `chars` characters to the right, for pointing inside a scalar.
    pub fn offset(self, chars: usize) -> Span {
        Span {
            column: self.column + chars,
            ..self
        }
    }
}

/// One problem: where, how bad, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The imported file it is in (as its `import:` names it); `None` for
    /// the pipeline file itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn span(&self) -> Span {
        Span::new(self.line, self.column)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.severity, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Collects every problem of a file, so a user sees all of them at once.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    /// Names of the imported files, the first for `Span::file` 1.
    files: Vec<String>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, span, message.into())
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, span, message.into())
    }

    /// Registers an imported file by the name its `import:` gives it; the
    /// spans of its nodes carry the number returned.
    pub fn imported(&mut self, name: &str) -> u16 {
        self.files.push(name.to_string());
        u16::try_from(self.files.len()).unwrap_or(u16::MAX)
    }

    /// The imported file `span` is in; `None` for the pipeline file itself.
    pub fn file_of(&self, span: Span) -> Option<String> {
        usize::from(span.file)
            .checked_sub(1)
            .and_then(|i| self.files.get(i))
            .cloned()
    }

    fn push(&mut self, severity: Severity, span: Span, message: String) -> &mut Diagnostic {
        let file = self.file_of(span);
        self.items.push(Diagnostic {
            severity,
            file,
            line: span.line,
            column: span.column,
            message,
            hint: None,
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sorted by position (the pipeline file's first, then each imported
    /// file's), duplicates (the same problem reached twice through a YAML
    /// alias) removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity, &a.message)
                .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
        });
        self.items.dedup();
        self.items
    }
}

impl Diagnostic {
    /// Adds a hint that tells the user what to do.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
}
