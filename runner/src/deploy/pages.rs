//! `provider: pages` — dpl's GitHub Pages: the files of `local_dir` become
//! a commit of `target_branch` (`gh-pages`), pushed over HTTPS with the
//! token. Without `keep_history` the branch is that one commit (a forced
//! push, as dpl does); with it, the commit goes on top of the branch as it
//! was. The files are read from the workspace, never through a link, and
//! committed by the runner (libgit2): the job's image needs no git.

use super::s3;
use super::values::{expand, github_token};
use super::Target;
use crate::job_files::{in_workspace, open_file_below};
use crate::logs::LogPipeline;
use crate::workspace::{HostLogin, Refusal};
use gantry_pipeline::{Pages, S3};
use git2::{FetchOptions, PushOptions, RemoteCallbacks, Repository, Signature};
use std::path::PathBuf;

/// A plain file, as git records it (a site needs no executable bits).
const FILE_MODE: u32 = 0o100644;

/// What the push did, for the log.
struct Pushed {
    files: usize,
    commit: Option<String>,
}

pub async fn deploy(pages: &Pages, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    let token = github_token(pages.token.as_ref(), "github_token", t.env, t.secrets)?;
    let repo = pages
        .repo
        .as_deref()
        .map(|r| expand(r, t.env))
        .unwrap_or_else(|| t.repo.full_name.clone());
    let host = expand(&pages.github_url, t.env);
    let url = if host.contains("://") {
        format!("{}/{repo}.git", host.trim_end_matches('/'))
    } else {
        format!("https://{host}/{repo}.git")
    };
    let branch = expand(&pages.target_branch, t.env);
    let local_dir = expand(&pages.local_dir, t.env);
    let (inside, _) = in_workspace(t.build_dir, [local_dir.as_str()], t.build_dir);
    let Some(dir) = inside.into_iter().next() else {
        return Err(format!(
            "local_dir {local_dir} is not in the build directory"
        ));
    };
    let fqdn = pages.fqdn.as_deref().map(|f| expand(f, t.env));
    let project = pages
        .project_name
        .as_deref()
        .map(|n| expand(n, t.env))
        .or_else(|| fqdn.clone())
        .unwrap_or_else(|| repo.clone());
    let message = format!("Deploy {project} to {url}:{branch}");
    p.say(&format!(
        "Pushing {local_dir} to {repo}:{branch}{}",
        if pages.keep_history {
            " (on top of its history)"
        } else {
            ""
        }
    ))
    .await;

    let job = PushJob {
        workspace: t.workspace.to_path_buf(),
        dir,
        scratch: t.scratch.join("pages"),
        url: url.clone(),
        branch: branch.clone(),
        token,
        fqdn,
        message,
        author: (expand(&pages.name, t.env), expand(&pages.email, t.env)),
        keep_history: pages.keep_history,
        allow_empty: pages.allow_empty_commit,
    };
    crate::git_tls::install();
    let pushed = tokio::select! {
        done = tokio::task::spawn_blocking(move || job.run()) => done.map_err(|e| e.to_string())??,
        _ = t.cancel.cancelled() => return Err("the deploy was canceled".into()),
    };
    match pushed.commit {
        Some(commit) => {
            p.say(&format!(
                "Pushed {} file(s) to {repo}:{branch} as {}",
                pushed.files,
                &commit[..commit.len().min(12)]
            ))
            .await
        }
        None => {
            p.say(&format!(
                "Nothing changed in {local_dir}: {repo}:{branch} is left as it was (`allow_empty_commit: true` pushes anyway)"
            ))
            .await
        }
    }
    Ok(())
}

/// The blocking part: a repository in the runner's scratch folder, the
/// files copied in, one commit, one push.
struct PushJob {
    workspace: PathBuf,
    /// `local_dir`, relative to the workspace.
    dir: PathBuf,
    scratch: PathBuf,
    url: String,
    branch: String,
    token: String,
    fqdn: Option<String>,
    message: String,
    author: (String, String),
    keep_history: bool,
    allow_empty: bool,
}

impl PushJob {
    fn run(self) -> Result<Pushed, String> {
        let reference = format!("refs/heads/{}", self.branch);
        if !git2::Reference::is_valid_name(&reference) {
            return Err(format!(
                "target_branch `{}` is not a branch name",
                self.branch
            ));
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        let repo = Repository::init_bare(&self.scratch)
            .map_err(|e| format!("cannot make a repository to push from: {}", e.message()))?;

        // The branch as it is, for keep_history.
        let parent = if self.keep_history {
            let mut remote = repo
                .remote_anonymous(&self.url)
                .map_err(|e| self.failed("fetching", &e))?;
            let mut options = FetchOptions::new();
            options.remote_callbacks(self.callbacks());
            options.proxy_options(crate::workspace::proxy());
            options.depth(1);
            let refspec = format!("+{reference}:refs/remotes/origin/{}", self.branch);
            remote
                .fetch(&[refspec.as_str()], Some(&mut options), None)
                .map_err(|e| self.failed("fetching", &e))?;
            repo.find_reference(&format!("refs/remotes/origin/{}", self.branch))
                .ok()
                .and_then(|r| r.peel_to_commit().ok())
        } else {
            None
        };

        // The tree: every plain file of local_dir (never .git, never a link).
        let options = S3 {
            glob: "**/*".into(),
            dot_match: true,
            ..S3::default()
        };
        let files = s3::plan(&self.workspace, &self.dir, &options)?;
        let mut index = git2::Index::new().map_err(|e| e.message().to_string())?;
        let mut count = 0;
        for file in &files {
            // Streamed into the blob: a site's big files are not held whole.
            let cannot =
                |e: &dyn std::fmt::Display| format!("cannot store {}: {e}", file.path.display());
            let mut source =
                open_file_below(&self.workspace, &file.path).map_err(|e| cannot(&e))?;
            let mut blob = repo.blob_writer(None).map_err(|e| cannot(&e.message()))?;
            let size = std::io::copy(&mut source, &mut blob).map_err(|e| cannot(&e))?;
            let id = blob.commit().map_err(|e| cannot(&e.message()))?;
            add(&mut index, &file.key, id, size)?;
            count += 1;
        }
        if let Some(fqdn) = &self.fqdn {
            let id = repo
                .blob(fqdn.as_bytes())
                .map_err(|e| format!("cannot store CNAME: {}", e.message()))?;
            add(&mut index, "CNAME", id, fqdn.len() as u64)?;
            count += 1;
        }
        let tree = index
            .write_tree_to(&repo)
            .map_err(|e| format!("cannot write the tree: {}", e.message()))?;
        if let Some(parent) = &parent {
            if parent.tree_id() == tree && !self.allow_empty {
                return Ok(Pushed {
                    files: count,
                    commit: None,
                });
            }
        }
        let tree = repo.find_tree(tree).map_err(|e| e.message().to_string())?;
        let who = Signature::now(&self.author.0, &self.author.1)
            .map_err(|e| format!("name or email: {}", e.message()))?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let commit = repo
            .commit(Some(&reference), &who, &who, &self.message, &tree, &parents)
            .map_err(|e| format!("cannot commit: {}", e.message()))?;

        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.failed("pushing", &e))?;
        // Without keep_history the branch is replaced, as dpl does.
        let force = if self.keep_history { "" } else { "+" };
        let refspec = format!("{force}{reference}:{reference}");
        let mut refused: Option<String> = None;
        {
            let mut callbacks = self.callbacks();
            callbacks.push_update_reference(|_, status| {
                if let Some(status) = status {
                    refused = Some(status.to_string());
                }
                Ok(())
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            options.proxy_options(crate::workspace::proxy());
            remote
                .push(&[refspec.as_str()], Some(&mut options))
                .map_err(|e| self.failed("pushing", &e))?;
        }
        if let Some(why) = refused {
            return Err(format!(
                "{} refused the push to {}: {why}",
                self.url, self.branch
            ));
        }
        Ok(Pushed {
            files: count,
            commit: Some(commit.to_string()),
        })
    }

    /// The token as the password of `x-access-token`, offered once, and
    /// only to the host of `url` (not to where a redirect leads).
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let mut login = HostLogin::new(&self.url, "x-access-token", &self.token);
        callbacks.credentials(move |asking, _user, allowed| {
            login.offer(asking, allowed).map_err(|refusal| {
                git2::Error::from_str(match refusal {
                    Refusal::OtherHost => "the token is only for the host of github_url",
                    Refusal::Refused => "the token was refused",
                })
            })
        });
        callbacks
    }

    fn failed(&self, doing: &str, e: &git2::Error) -> String {
        let hint = if e.message().contains("refused") || e.code() == git2::ErrorCode::Auth {
            ": check `github_token` (it needs write access to the repository)"
        } else {
            ""
        };
        format!("{doing} {} failed: {}{hint}", self.url, e.message())
    }
}

/// An index entry for a file of the site (a plain file: no executable bits).
fn add(index: &mut git2::Index, path: &str, id: git2::Oid, size: u64) -> Result<(), String> {
    let entry = git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: FILE_MODE,
        uid: 0,
        gid: 0,
        file_size: u32::try_from(size).unwrap_or(u32::MAX),
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    index
        .add(&entry)
        .map_err(|e| format!("cannot add {path}: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_testkit::git_http::GitHttp;
    use gantry_testkit::proxy::ConnectProxy;

    const TOKEN: &str = "ghp_gantryPagesProxyToken0123456789";

    /// The push goes through the proxy the environment names, as the clone
    /// does, with HTTPS end to end through its `CONNECT` tunnel: the proxy
    /// sees neither the token nor a request. Pushed from a process of its
    /// own, so no other test sees the variables.
    #[tokio::test]
    async fn pushes_go_through_the_proxy_the_environment_names() {
        let served = tempfile::tempdir().unwrap();
        let bare = served.path().join("acme/site.git");
        std::fs::create_dir_all(&bare).unwrap();
        let init = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .current_dir(&bare)
            .status()
            .unwrap();
        assert!(init.success());
        let https = GitHttp::start_tls(served.path(), "x-access-token", TOKEN).await;
        let proxy = ConnectProxy::start().await;
        let url = format!("{}/acme/site.git", https.url);
        let ca = hex::encode(https.ca.as_ref().unwrap());
        let env = [
            ("GANTRY_TEST_PAGES_URL", url.as_str()),
            ("GANTRY_TEST_PAGES_CA", ca.as_str()),
        ];

        let outcome = crate::elsewhere::run(
            "deploy::pages::tests::push_in_a_process_of_its_own",
            &[env[0], env[1], ("HTTPS_PROXY", proxy.url.as_str())],
        )
        .await;
        assert_eq!(outcome, "pushed 1 file(s)");
        let server = https.url.trim_start_matches("https://").to_string();
        let connects = proxy.connects();
        assert!(!connects.is_empty(), "the push went around the proxy");
        assert!(connects.iter().all(|c| *c == server), "{connects:?}");
        assert!(!proxy.saw("receive-pack"));
        assert!(!proxy.saw("Authorization"));
        assert!(!proxy.saw(TOKEN));
        let shown = std::process::Command::new("git")
            .args(["show", "gh-pages:index.html"])
            .current_dir(&bare)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&shown.stdout), "the site");

        // `no_proxy` names the hosts reached directly.
        let outcome = crate::elsewhere::run(
            "deploy::pages::tests::push_in_a_process_of_its_own",
            &[
                env[0],
                env[1],
                ("https_proxy", proxy.url.as_str()),
                ("no_proxy", "127.0.0.1"),
            ],
        )
        .await;
        assert_eq!(outcome, "pushed 1 file(s)");
        assert_eq!(proxy.connects().len(), connects.len());

        // With keep_history the branch is fetched first, through the proxy
        // too: more tunnels than the push alone, and the new commit sits on
        // top of the one pushed before.
        let outcome = crate::elsewhere::run(
            "deploy::pages::tests::push_in_a_process_of_its_own",
            &[
                env[0],
                env[1],
                ("HTTPS_PROXY", proxy.url.as_str()),
                ("GANTRY_TEST_PAGES_KEEP_HISTORY", "the site, again"),
            ],
        )
        .await;
        assert_eq!(outcome, "pushed 1 file(s)");
        let tunnels = proxy.connects().len() - connects.len();
        assert!(
            tunnels > connects.len(),
            "{tunnels} tunnels for a fetch and a push, {} for a push: the fetch went around the proxy",
            connects.len()
        );
        assert!(proxy.connects().iter().all(|c| *c == server));
        assert!(!proxy.saw("upload-pack"));
        assert!(!proxy.saw(TOKEN));
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&bare)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(git(&["show", "gh-pages:index.html"]), "the site, again");
        assert_eq!(git(&["rev-list", "--count", "gh-pages"]), "2");
    }

    #[tokio::test]
    #[ignore = "a helper: pushes_go_through_the_proxy_the_environment_names runs it in a process of its own"]
    async fn push_in_a_process_of_its_own() {
        let var = |name: &str| std::env::var(name).unwrap();
        crate::git_tls::also_trust(hex::decode(var("GANTRY_TEST_PAGES_CA")).unwrap());
        crate::git_tls::install();
        let data = tempfile::tempdir().unwrap();
        let workspace = data.path().join("build");
        std::fs::create_dir_all(workspace.join("site")).unwrap();
        // Set: a second deploy, with this page, on top of the branch.
        let again = std::env::var("GANTRY_TEST_PAGES_KEEP_HISTORY").ok();
        let page = again.as_deref().unwrap_or("the site");
        std::fs::write(workspace.join("site/index.html"), page).unwrap();
        let job = PushJob {
            workspace,
            dir: "site".into(),
            scratch: data.path().join("pages"),
            url: var("GANTRY_TEST_PAGES_URL"),
            branch: "gh-pages".into(),
            token: TOKEN.into(),
            fqdn: None,
            message: "Deploy".into(),
            author: ("Deployment Bot".into(), "deploy@example.com".into()),
            keep_history: again.is_some(),
            allow_empty: false,
        };
        match tokio::task::spawn_blocking(move || job.run())
            .await
            .unwrap()
        {
            Ok(pushed) => println!("OUTCOME pushed {} file(s)", pushed.files),
            Err(e) => println!("OUTCOME failed: {}", e.replace('\n', " ")),
        }
    }
}
