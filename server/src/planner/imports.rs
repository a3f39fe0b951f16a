//! Reads a pipeline file with the files it imports (Travis's `import:`)
//! from GitHub: this repository's at the built commit (or the ref given),
//! another repository's at the ref given or its default branch.

use crate::forge::{Forge, ForgeError};
use crate::intake::github::BuildRequest;
use gantry_pipeline::import::Source;
use gantry_pipeline::{Assembly, Parsed};

/// The pipeline file at `request`'s commit, read with the files it
/// imports merged in (and under the request's own config, if it has one),
/// and the name problems are reported under; `Ok(None)` when there is
/// nothing to read. A transient error, of the file or of an import, is
/// retried as a whole.
pub async fn pipeline(
    forge: &dyn Forge,
    request: &BuildRequest,
) -> Result<Option<(&'static str, Parsed)>, ForgeError> {
    let replaced = request.config.as_ref().is_some_and(|c| c.mode.is_none());
    let file = match replaced {
        true => None,
        false => {
            forge
                .pipeline_file(&request.repo.full_name, &request.commit)
                .await?
        }
    };
    let context = super::build_context(request);
    let (name, mut assembly) = match (&request.config, &file) {
        (Some(config), file) => (
            "the requested config",
            Assembly::with_request(
                &config.text,
                config.mode,
                file.as_ref().map(|f| (f.name, f.content.as_str())),
                Some(&context),
            ),
        ),
        (None, Some(file)) => (
            file.name,
            Assembly::new(file.name, &file.content, Some(&context)),
        ),
        (None, None) => return Ok(None),
    };
    while let Some(source) = assembly.next() {
        let text = match fetch(forge, request, source).await {
            Err(ForgeError::Permanent(why)) => Err(why),
            Err(transient) => return Err(transient),
            Ok(text) => Ok(text),
        };
        assembly.supply(text);
    }
    Ok(Some((name, assembly.finish())))
}

/// One imported file's text. Another repository's file is read only where
/// Travis allows it: from a public repository, or from a private one of
/// the same owner into a private repository (never into a public one,
/// whose logs anyone reads).
async fn fetch(
    forge: &dyn Forge,
    request: &BuildRequest,
    source: &Source,
) -> Result<Option<String>, ForgeError> {
    let this = &request.repo.full_name;
    let Some(other) = source
        .repo
        .as_deref()
        .filter(|other| *other != this.as_str())
    else {
        let git_ref = source.git_ref.as_deref().unwrap_or(&request.commit);
        return forge.file_at(this, &source.path, Some(git_ref)).await;
    };
    match forge.is_private(other).await? {
        None => return Ok(None),
        Some(false) => {}
        Some(true) => {
            let owner = |repo: &str| {
                repo.split('/')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            };
            if !request.repo.private {
                return Err(ForgeError::Permanent(format!(
                    "{other} is private, and a public repository's builds may import only from public ones"
                )));
            }
            if owner(other) != owner(this) {
                return Err(ForgeError::Permanent(format!(
                    "{other} is private and another owner's: only repositories of the same owner may import from it"
                )));
            }
        }
    }
    forge
        .file_at(other, &source.path, source.git_ref.as_deref())
        .await
}
