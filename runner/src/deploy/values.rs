//! Deploy options as the job sees them: `$NAME` expands from the job's
//! environment at deploy time (so `before_deploy` exports count), and
//! Travis `secure:` values come from the repository's secrets.

use gantry_pipeline::Value;
use gantry_protocol::SecretVar;
use std::collections::BTreeMap;

/// Expands `$NAME` and `${NAME}`; unknown names expand to nothing, as in `sh`.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() || !gantry_pipeline::is_env_name(name) {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(value) = env.get(name) {
            out.push_str(value);
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// The value of an option; `None` when it resolves to nothing.
pub fn resolve(
    value: &Value,
    env: &BTreeMap<String, String>,
    secrets: &[SecretVar],
) -> Option<String> {
    let text = match value {
        Value::Plain(text) => expand(text, env),
        Value::Secure { secret } => {
            let upper = secret.to_ascii_uppercase();
            let candidates = [secret.clone(), upper.clone(), format!("AWS_{upper}")];
            candidates
                .iter()
                .find_map(|name| secrets.iter().find(|s| &s.name == name))
                .map(|s| s.value.clone())?
        }
    };
    (!text.is_empty()).then_some(text)
}

/// The token of a GitHub provider (`releases`, `pages`): its option, else
/// the `GITHUB_TOKEN` secret or variable; `Err` says what to set.
pub fn github_token(
    option: Option<&Value>,
    named: &str,
    env: &BTreeMap<String, String>,
    secrets: &[SecretVar],
) -> Result<String, String> {
    option
        .and_then(|v| resolve(v, env, secrets))
        .or_else(|| secret_or_env("GITHUB_TOKEN", env, secrets))
        .ok_or_else(|| {
            format!(
                "no GitHub token: set `{named}` (a `secure:` value is read from the repository secret {}) or the secret GITHUB_TOKEN",
                named.to_ascii_uppercase()
            )
        })
}

/// A secret by name, else a variable of the job's environment.
pub fn secret_or_env(
    name: &str,
    env: &BTreeMap<String, String>,
    secrets: &[SecretVar],
) -> Option<String> {
    secrets
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.value.clone())
        .or_else(|| env.get(name).cloned())
        .filter(|v| !v.is_empty())
}

/// Parses the `NAME=value\0` list the job's shell saved (`/proc/self/environ`).
pub fn parse_environ(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (name, value) = text.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("GANTRY_COMMIT", "abc123"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn expands_like_sh() {
        let env = env();
        assert_eq!(expand("web:$GANTRY_COMMIT", &env), "web:abc123");
        assert_eq!(expand("web:${GANTRY_COMMIT}-x", &env), "web:abc123-x");
        assert_eq!(expand("$MISSING/x", &env), "/x");
        assert_eq!(expand("cost: 5$", &env), "cost: 5$");
        assert_eq!(expand("$1 and ${", &env), "$1 and ${");
    }

    #[test]
    fn secure_values_come_from_secrets_and_empty_is_none() {
        let env = env();
        let secrets = vec![SecretVar {
            name: "AWS_SECRET_ACCESS_KEY".into(),
            value: "s3cr3t".into(),
        }];
        let secure = Value::Secure {
            secret: "secret_access_key".into(),
        };
        assert_eq!(resolve(&secure, &env, &secrets).as_deref(), Some("s3cr3t"));
        assert_eq!(
            resolve(&Value::Plain("$AWS_ACCESS_KEY_ID".into()), &env, &secrets).as_deref(),
            Some("AKIAEXAMPLE")
        );
        assert_eq!(
            resolve(&Value::Plain("$EMPTY".into()), &env, &secrets),
            None
        );
    }

    #[test]
    fn reads_a_saved_environment() {
        let env = parse_environ(b"A=1\0B=x=y\0\0NOEQUALS\0");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(env.len(), 2);
    }
}
