//! Travis's `import:`: shared snippets merged into the pipeline file.
//!
//! ```yaml
//! import:
//!   - ci/rubies.yml                          # this repository, at the built commit
//!   - source: acme/shared:deploy.yml@v2      # another repository, at a tag
//!     mode: deep_merge_prepend
//!     if: branch = master
//! ```
//!
//! Reading the files is the caller's (the server asks GitHub): an
//! [`Assembly`] says which file it wants next, in Travis's order (depth
//! first), is handed its text, and in the end merges everything and reads
//! the result as [`crate::parse`] reads one file. Problems in an imported
//! file point at that file's lines ([`crate::Diagnostic::file`]).

use crate::condition::Facts;
use crate::config;
use crate::decode::Decoder;
use crate::diagnostic::{Diagnostics, Span};
use crate::yaml::{Node, NodeKind};
use crate::{BuildContext, Parsed};
use std::collections::HashSet;

/// At most this many files are imported for one build, as on Travis.
pub const MAX_IMPORTS: usize = 25;

/// The imported files' text, all together, is at most this: shared
/// snippets are small, and a build's imports must not fill the server's
/// memory.
pub const MAX_IMPORTED_BYTES: usize = 1 << 20;

/// How problems in a request's config name it.
const REQUEST: &str = "the request's config";

/// Where an imported file is: `owner/name:path@ref`, or `path@ref` in the
/// importing file's repository. Without a ref: the commit being built for
/// this repository, the default branch for another one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// `owner/name`; `None` for the repository being built.
    pub repo: Option<String>,
    /// From the repository's root.
    pub path: String,
    /// A branch, tag or commit; `None` as said above.
    pub git_ref: Option<String>,
}

impl Source {
    /// `path` in the repository being built, at the built commit.
    fn here(path: &str) -> Source {
        Source {
            repo: None,
            path: path.to_string(),
            git_ref: None,
        }
    }

    /// Reads `owner/name:path@ref` (repository and ref optional).
    pub fn parse(text: &str) -> Result<Source, String> {
        let text = text.trim();
        let (rest, git_ref) = match text.rsplit_once('@') {
            Some((rest, r)) if !r.is_empty() => (rest, Some(r.to_string())),
            Some(_) => return Err(format!("`{text}` ends with `@` but names no ref")),
            None => (text, None),
        };
        let (repo, path) = match rest.split_once(':') {
            Some((repo, path)) => {
                let valid = repo.split('/').count() == 2
                    && repo.split('/').all(|part| {
                        !part.is_empty()
                            && part != "."
                            && part != ".."
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    });
                if !valid {
                    return Err(format!(
                        "`{repo}` is not a repository: write `owner/name:path`"
                    ));
                }
                (Some(repo.to_string()), path)
            }
            None => (None, rest),
        };
        let path = path
            .strip_prefix("./")
            .unwrap_or(path)
            .trim_start_matches('/');
        if path.is_empty() {
            return Err(format!("`{text}` names no file"));
        }
        // The path becomes part of a GitHub API URL: nothing that could
        // change which resource it names.
        if path.chars().any(|c| c.is_control() || "?#%\\".contains(c)) {
            return Err(format!(
                "`{text}` has a character a file path here cannot have"
            ));
        }
        if path.split('/').any(|part| part == ".." || part == ".") {
            return Err(format!(
                "`{text}` leaves the repository: paths start at its root"
            ));
        }
        Ok(Source {
            repo,
            path: path.to_string(),
            git_ref,
        })
    }

    /// This source as seen from a file of `from`: a path alone is in the
    /// same repository, at the same ref.
    fn resolved(self, from: &Source) -> Source {
        match self.repo {
            Some(_) => self,
            None => Source {
                repo: from.repo.clone(),
                git_ref: self.git_ref.or_else(|| from.git_ref.clone()),
                path: self.path,
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(repo) = &self.repo {
            write!(f, "{repo}:")?;
        }
        f.write_str(&self.path)?;
        if let Some(r) = &self.git_ref {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// How an imported file joins the files before it (Travis's merge modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Maps merged key by key, lists joined (the importing file's items
    /// first); where both set a value, the importing file's wins. Travis's default.
    DeepMergeAppend,
    /// As `DeepMergeAppend`, the imported list's items first.
    DeepMergePrepend,
    /// Maps merged key by key; the importing file's lists and values win.
    DeepMerge,
    /// Top-level keys only: the importing file's win whole.
    Merge,
}

impl Mode {
    /// Travis's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::DeepMergeAppend => "deep_merge_append",
            Mode::DeepMergePrepend => "deep_merge_prepend",
            Mode::DeepMerge => "deep_merge",
            Mode::Merge => "merge",
        }
    }

    /// Travis's name of a mode (`deep_merge_append`, …).
    pub fn parse(text: &str) -> Option<Mode> {
        Some(match text {
            "deep_merge_append" => Mode::DeepMergeAppend,
            "deep_merge_prepend" => Mode::DeepMergePrepend,
            "deep_merge" => Mode::DeepMerge,
            "merge" => Mode::Merge,
            _ => return None,
        })
    }
}

/// One entry of an `import:` list, resolved.
struct Import {
    source: Source,
    mode: Mode,
    /// Where the entry is written, for problems with the file it names.
    span: Span,
}

/// Something to merge, in the order of the stack of them.
enum Wanted {
    /// A file to ask the caller for.
    File(Import),
    /// The pipeline file, read already, that a request's config goes over:
    /// it joins after the request's own imports.
    Given(Node, Mode),
}

/// A pipeline file and the files it imports, read one at a time.
pub struct Assembly {
    diags: Diagnostics,
    root: Option<Node>,
    /// What is still to merge, the next last.
    wanted: Vec<Wanted>,
    /// Files read, in order, with how each joins.
    imported: Vec<(Node, Mode)>,
    /// Every file asked for, so that a cycle or a repeat is read once.
    seen: HashSet<Source>,
    /// The build, for `if:` on imports; `None` reads them all (`gantry lint`).
    build: Option<BuildContext>,
    /// Bytes of imported text read so far, and nodes kept.
    bytes: usize,
    nodes: usize,
}

impl Assembly {
    fn empty(build: Option<&BuildContext>) -> Assembly {
        Assembly {
            diags: Diagnostics::new(),
            root: None,
            wanted: Vec::new(),
            imported: Vec::new(),
            seen: HashSet::new(),
            build: build.cloned(),
            bytes: 0,
            nodes: 0,
        }
    }

    /// Reads the pipeline file `name` of the repository being built.
    pub fn new(name: &str, source: &str, build: Option<&BuildContext>) -> Assembly {
        let mut assembly = Assembly::empty(build);
        let this = Source::here(name);
        assembly.seen.insert(this.clone());
        let root = config::load(source, &mut assembly.diags, 0);
        if let Some(root) = &root {
            let imports = assembly.imports_of(root, &this);
            assembly.want(imports);
        }
        assembly.root = root;
        assembly
    }

    /// A build asked for through the API with a config of its own (JSON
    /// or YAML text), which goes over the pipeline file (`file`: its name
    /// and text) as `mode` says; `None` replaces the file. As on Travis,
    /// what the request says wins, then the files it imports, then the
    /// pipeline file, then the files that imports.
    pub fn with_request(
        config: &str,
        mode: Option<Mode>,
        file: Option<(&str, &str)>,
        build: Option<&BuildContext>,
    ) -> Assembly {
        let mut assembly = Assembly::empty(build);
        let request = Source::here(REQUEST);
        let id = assembly.diags.imported(REQUEST);
        let root = config::load(config, &mut assembly.diags, id);
        if let Some(root) = root.as_ref().filter(|r| r.as_map().is_none()) {
            assembly.diags.error(
                root.span,
                format!(
                    "the request's config must be a map of keys, found {}",
                    root.describe()
                ),
            );
            return assembly;
        }
        if let (Some((name, source)), Some(mode)) = (file, mode) {
            assembly.seen.insert(Source::here(name));
            if let Some(node) = config::load(source, &mut assembly.diags, 0) {
                assembly.wanted.push(Wanted::Given(node, mode));
            }
        }
        if let Some(root) = &root {
            let imports = assembly.imports_of(root, &request);
            assembly.want(imports);
        }
        assembly.root = root;
        assembly.settle();
        assembly
    }

    /// The next file to read, if any: hand its text to [`Assembly::supply`].
    pub fn next(&self) -> Option<&Source> {
        match self.wanted.last() {
            Some(Wanted::File(import)) => Some(&import.source),
            _ => None,
        }
    }

    /// Merges what needs no reading (the pipeline file under a request's
    /// config) once it is next, and wants the files it imports.
    fn settle(&mut self) {
        while let Some(Wanted::Given(..)) = self.wanted.last() {
            let Some(Wanted::Given(node, mode)) = self.wanted.pop() else {
                return;
            };
            let imports = self.imports_of(&node, &Source::here(""));
            self.imported.push((node, mode));
            self.want(imports);
        }
    }

    /// The text of the file [`Assembly::next`] named: `Ok(None)` when it
    /// does not exist, `Err` with why it could not be read.
    pub fn supply(&mut self, text: Result<Option<String>, String>) {
        let Some(Wanted::File(import)) = self.wanted.pop() else {
            return;
        };
        let name = import.source.to_string();
        let text = match text {
            Ok(Some(text)) => text,
            Ok(None) => {
                self.diags
                    .error(import.span, format!("cannot import `{name}`: no such file"))
                    .hint(match import.source.repo {
                        Some(_) => "check the repository, the path from its root and the ref; GitHub answers a private repository Gantry's token or App installation cannot read as if it did not exist",
                        None => "the path starts at the repository's root",
                    });
                return;
            }
            Err(why) => {
                self.diags
                    .error(import.span, format!("cannot import `{name}`: {why}"));
                return;
            }
        };
        self.bytes += text.len();
        if self.bytes > MAX_IMPORTED_BYTES {
            self.diags
                .error(
                    import.span,
                    format!(
                        "cannot import `{name}`: the imported files hold more than {} KiB together",
                        MAX_IMPORTED_BYTES >> 10
                    ),
                )
                .hint("import fewer or smaller files");
            return;
        }
        let file = self.diags.imported(&name);
        let Some(node) = config::load(&text, &mut self.diags, file) else {
            return;
        };
        // Aliases can make a small file large: the files' nodes together
        // are held to what one file may expand to.
        self.nodes += node.size();
        if self.nodes > crate::yaml::MAX_NODES {
            self.diags.error(
                import.span,
                format!(
                    "cannot import `{name}`: the imported files expand to more than {} nodes together",
                    crate::yaml::MAX_NODES
                ),
            );
            return;
        }
        if node.as_map().is_none() {
            self.diags.error(
                node.span,
                format!(
                    "an imported file must be a map of keys, found {}",
                    node.describe()
                ),
            );
            return;
        }
        let imports = self.imports_of(&node, &import.source);
        self.imported.push((node, import.mode));
        self.want(imports);
        self.settle();
    }

    /// Passes over the file [`Assembly::next`] named, saying why in a warning.
    pub fn skip(&mut self, why: &str) {
        if let Some(Wanted::File(import)) = self.wanted.pop() {
            self.diags.warning(
                import.span,
                format!("`{}` was not read: {why}", import.source),
            );
        }
        self.settle();
    }

    /// Merges what was read and reads the result as one pipeline file.
    pub fn finish(mut self) -> Parsed {
        let Some(mut root) = self.root.take() else {
            return crate::parsed(None, self.diags);
        };
        while self.next().is_some() {
            self.skip("imports are merged when a build is planned");
        }
        for (node, mode) in self.imported.drain(..) {
            root = merge(root, node, mode, true);
        }
        let mut d = Decoder::new(&mut self.diags);
        let config = config::decode(&mut d, &root);
        crate::parsed(Some(config), self.diags)
    }

    /// Adds a file's imports to read next, in their order.
    fn want(&mut self, imports: Vec<Import>) {
        self.wanted
            .extend(imports.into_iter().rev().map(Wanted::File));
    }

    /// The imports a file asks for (conditions applied, repeats dropped).
    fn imports_of(&mut self, root: &Node, from: &Source) -> Vec<Import> {
        let Some(list) = root.get("import") else {
            return Vec::new();
        };
        let entries: Vec<&Node> = match &list.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            _ => vec![list],
        };
        let mut imports = Vec::new();
        for entry in entries {
            let Some(import) = self.entry(entry, from) else {
                continue;
            };
            if !self.seen.insert(import.source.clone()) {
                continue;
            }
            if self.seen.len() > MAX_IMPORTS + 1 {
                self.diags
                    .error(
                        import.span,
                        format!(
                            "more than {MAX_IMPORTS} imports: `{}` is one too many",
                            import.source
                        ),
                    )
                    .hint("import fewer, larger files");
                continue;
            }
            imports.push(import);
        }
        imports
    }

    /// One `import:` entry: a source, or `{source, mode, if}`.
    fn entry(&mut self, node: &Node, from: &Source) -> Option<Import> {
        let mut d = Decoder::new(&mut self.diags);
        let (text, mode, condition) = if node.as_map().is_some() {
            let mut source = None;
            let mut mode = Mode::DeepMergeAppend;
            let mut condition = None;
            let mut unknown = false;
            for (key, value, span) in d.entries(node, "an import") {
                match key {
                    "source" => source = d.string(value, "source"),
                    "mode" => {
                        let text = d.string(value, "mode")?;
                        match Mode::parse(&text.value) {
                            Some(m) => mode = m,
                            None => {
                                d.diags
                                    .error(text.span, format!("unknown merge mode `{}`", text.value))
                                    .hint("use deep_merge_append (the default), deep_merge_prepend, deep_merge or merge");
                                return None;
                            }
                        }
                    }
                    "if" => condition = Some(d.condition(value, "if")?),
                    _ => {
                        // A misspelt `if` must not import the file always.
                        d.diags
                            .error(span, format!("unknown key `{key}` in an import"))
                            .hint("an import has `source`, `mode` and `if`");
                        unknown = true;
                    }
                }
            }
            if unknown {
                return None;
            }
            let Some(source) = source else {
                d.diags
                    .error(node.span, "an import needs a `source`")
                    .hint("write `source: owner/name:path.yml@ref` or `source: path.yml`");
                return None;
            };
            (source, mode, condition)
        } else {
            (d.string(node, "import")?, Mode::DeepMergeAppend, None)
        };
        let source = match Source::parse(&text.value) {
            Ok(source) => source.resolved(from),
            Err(why) => {
                self.diags.error(text.span, format!("cannot import: {why}"));
                return None;
            }
        };
        if let (Some(cond), Some(build)) = (&condition, &self.build) {
            if !cond.condition.eval(&Facts::build(build, &[])) {
                return None;
            }
        }
        Some(Import {
            source,
            mode,
            span: text.span,
        })
    }
}

/// `lft` (the importing side, which wins) merged with `rgt` (the imported
/// file) as `mode` says. `top` is true for the files' roots: `merge` is
/// shallow, so below the top the importing side wins whole.
fn merge(lft: Node, rgt: Node, mode: Mode, top: bool) -> Node {
    let span = lft.span;
    match (lft.kind, rgt.kind) {
        (NodeKind::Map(mut left), NodeKind::Map(right)) if top || mode != Mode::Merge => {
            for (key, value) in right {
                let at = left
                    .iter()
                    .position(|(k, _)| k.key_text().is_some() && k.key_text() == key.key_text());
                match at {
                    Some(i) => {
                        let (k, mine) = left.remove(i);
                        let merged = if mode == Mode::Merge {
                            mine
                        } else {
                            merge(mine, value, mode, false)
                        };
                        left.insert(i, (k, merged));
                    }
                    // The imported file's `import:` was read already.
                    None if key.key_text() == Some("import") => {}
                    None => left.push((key, value)),
                }
            }
            Node {
                kind: NodeKind::Map(left),
                span,
            }
        }
        (NodeKind::Seq(mut left), NodeKind::Seq(right)) if mode == Mode::DeepMergeAppend => {
            left.extend(right);
            Node {
                kind: NodeKind::Seq(left),
                span,
            }
        }
        (NodeKind::Seq(left), NodeKind::Seq(mut right)) if mode == Mode::DeepMergePrepend => {
            right.extend(left);
            Node {
                kind: NodeKind::Seq(right),
                span,
            }
        }
        (kind, _) => Node { kind, span },
    }
}
