//! `.tar.gz` archives of the deploy stage: a member read from a package
//! (an sdist's `PKG-INFO`, an npm package's `package.json`), and the build
//! directory packed for Heroku.

use std::io::Read;
use std::path::Path;

/// The text of the first member of a `.tar.gz` whose path is `wanted`
/// (an sdist's `PKG-INFO`, an npm package's `package.json`).
pub fn member(bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Option<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        if wanted(&path) {
            let mut text = String::new();
            entry.read_to_string(&mut text).ok()?;
            return Some(text);
        }
    }
    None
}

/// Packs `dir` into `out` as `tar -zcf out --exclude .git .` does: every
/// file, links as links, no `.git`. Returns the files and the archive's size.
pub fn pack(dir: &Path, out: &Path) -> Result<(usize, u64), String> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let walk = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut files = 0;
    for entry in walk {
        let entry = entry.map_err(|e| format!("cannot read the build directory: {e}"))?;
        let Ok(relative) = entry.path().strip_prefix(dir) else {
            continue;
        };
        if relative.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.file_type();
        let added = if kind.is_some_and(|k| k.is_file()) {
            files += 1;
            // Through open folders: a link swapped in since the walk is refused.
            let mut source = crate::job_files::open_file_below(dir, relative)
                .map_err(|e| format!("cannot read {}: {e}", relative.display()))?;
            tar.append_file(relative, &mut source)
        } else {
            // Folders and links as they are; a link is not followed.
            tar.append_path_with_name(entry.path(), relative)
        };
        added.map_err(|e| format!("cannot pack {}: {e}", relative.display()))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    let file = gz
        .finish()
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read the archive: {e}"))?
        .len();
    Ok((files, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_the_build_directory_without_git() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/main.rb"), "puts 1").unwrap();
        std::fs::write(dir.path().join("Gemfile"), "source 'x'").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("a.tgz");
        let (files, size) = pack(dir.path(), &archive).unwrap();
        assert_eq!(files, 2);
        assert_eq!(size, std::fs::metadata(&archive).unwrap().len());
        let mut names = Vec::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&archive).unwrap(),
        ));
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let kind = entry.header().entry_type();
            names.push((entry.path().unwrap().display().to_string(), kind));
        }
        assert_eq!(
            names,
            [
                ("Gemfile".to_string(), tar::EntryType::Regular),
                ("app".to_string(), tar::EntryType::Directory),
                ("app/main.rb".to_string(), tar::EntryType::Regular),
                ("link".to_string(), tar::EntryType::Symlink),
            ]
        );
    }
}
