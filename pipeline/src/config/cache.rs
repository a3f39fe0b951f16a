//! `cache:`: directories kept from one build to the next, as Travis keeps
//! them. A list of directories, language shortcuts (`npm`, `pip`, …), or
//! `false`; the runner restores them before `before_install` and stores
//! them after `script` and `before_cache`.

use crate::decode::Decoder;
use crate::yaml::{Node, NodeKind};

/// Shortcuts and the directories Travis caches for each.
const SHORTCUTS: &[(&str, &[&str])] = &[
    ("bundler", &["vendor/bundle"]),
    ("npm", &["node_modules", "$HOME/.npm"]),
    ("yarn", &["$HOME/.cache/yarn"]),
    ("pip", &["$HOME/.cache/pip"]),
    ("cargo", &["$HOME/.cargo", "target"]),
    ("ccache", &["$HOME/.ccache"]),
    ("packages", &["$HOME/R/Library"]),
];

/// Keys of a `cache:` map that change how, not what, Travis caches.
const IGNORED: &[&str] = &["timeout", "edge", "branch"];

/// The directories `cache:` names, shortcuts expanded, in order, each once.
/// `cache: false` (or none) is an empty list.
pub fn cache(d: &mut Decoder, node: &Node) -> Vec<String> {
    let mut dirs = Vec::new();
    match &node.kind {
        NodeKind::Map(_) => {
            for (key, value, span) in d.entries(node, "cache") {
                match key {
                    "directories" => {
                        for dir in d.strings(value, "cache.directories").unwrap_or_default() {
                            if dir.value.trim().is_empty() {
                                d.diags
                                    .warning(dir.span, "an empty directory is not cached");
                            } else {
                                dirs.push(home(&dir.value));
                            }
                        }
                    }
                    k if IGNORED.contains(&k) => {}
                    k if shortcut(k).is_some() => {
                        if d.bool(value, &format!("cache.{k}")) == Some(true) {
                            dirs.extend(shortcut(k).into_iter().flatten().map(|s| s.to_string()));
                        }
                    }
                    other => {
                        let mut known: Vec<&str> = vec!["directories"];
                        known.extend(SHORTCUTS.iter().map(|(name, _)| *name));
                        d.unknown_key(other, span, &known, "`cache`");
                    }
                }
            }
        }
        _ if node.as_scalar().and_then(|s| s.as_bool()).is_some() => {
            // `cache: false` turns it off; `true` names nothing to keep.
        }
        _ => {
            for name in d.strings(node, "cache").unwrap_or_default() {
                match shortcut(&name.value) {
                    Some(found) => dirs.extend(found.iter().map(|s| s.to_string())),
                    None => {
                        d.diags
                            .warning(
                                name.span,
                                format!("`{}` is not a cache Gantry knows; nothing is cached for it", name.value),
                            )
                            .hint(format!(
                                "name directories with `cache: {{directories: [...]}}`, or use one of: {}",
                                SHORTCUTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                            ));
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| seen.insert(dir.clone()));
    dirs
}

/// `~/x` as `$HOME/x`: the shell expands `~` only at the start of a word.
fn home(dir: &str) -> String {
    match dir.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("$HOME{rest}"),
        _ => dir.to_string(),
    }
}

fn shortcut(name: &str) -> Option<&'static [&'static str]> {
    SHORTCUTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, dirs)| *dirs)
}
