//! Source files of a pipeline: listed by glob, hashed (SHA-256) and fetched for the readers,
//! from a local folder or from object storage (`s3://bucket/prefix`, through object_store).
//!
//! A file is named by its *identity*: the local path as listed, or the object's URL
//! (`s3://bucket/key`). The identity is what the manifest, the run report, the quarantine file
//! and the catalog's `pipeline_file` record. The readers parse local files only, so an object
//! is downloaded to a staging file that keeps its file name (receipt row ids derive from it),
//! hashed while it streams, and refused when its digest differs from the planned one.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::Digest;
use url::Url;

use crate::spec::SourceSpec;
use crate::{PipelineError, Result};

/// Where one source's files live.
pub(crate) enum SourceStore {
    /// A local folder.
    Local(PathBuf),
    /// An object store under a prefix; `base` is `s3://bucket/`.
    Object {
        /// The store (bucket).
        store: Arc<dyn ObjectStore>,
        /// The prefix the glob applies under.
        prefix: ObjectPath,
        /// URL of the bucket root, for identities.
        base: String,
    },
}

impl std::fmt::Debug for SourceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceStore::Local(p) => f.debug_tuple("Local").field(p).finish(),
            SourceStore::Object { base, prefix, .. } => {
                f.debug_struct("Object").field("base", base).field("prefix", prefix).finish()
            }
        }
    }
}

/// Hex SHA-256 and size of a local file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

impl SourceStore {
    /// The store of a source: a folder (relative to `data_dir`), a `file://` URL or an `s3://`
    /// URL with the source's storage options (completed from the `AWS_*` environment).
    pub(crate) fn open(src: &SourceSpec, data_dir: &Path) -> Result<SourceStore> {
        let unsupported = || PipelineError::SourceUrl { source_name: src.name.clone() };
        if let Some(rest) = src.url.strip_prefix("file://") {
            return Ok(SourceStore::Local(PathBuf::from(rest)));
        }
        if !src.url.contains("://") {
            let p = PathBuf::from(&src.url);
            return Ok(SourceStore::Local(if p.is_absolute() { p } else { data_dir.join(p) }));
        }
        let url = Url::parse(&src.url).map_err(|_| unsupported())?;
        if url.scheme() != "s3" {
            return Err(unsupported());
        }
        let bucket = url.host_str().filter(|h| !h.is_empty()).ok_or_else(unsupported)?.to_owned();
        let opts = crate::lake::s3_options(src.storage_options.clone().into_iter().collect());
        let (store, prefix) = object_store::parse_url_opts(&url, opts)
            .map_err(|source| PipelineError::SourceStore { source_name: src.name.clone(), source })?;
        Ok(SourceStore::Object { store: Arc::from(store), prefix, base: format!("s3://{bucket}/") })
    }

    /// Identities of the files matching `glob` under the source, sorted. Locally the glob is
    /// matched by the file system; in an object store against each key relative to the prefix,
    /// with `*` not crossing `/` (so `*.UKE` and `**/*.ndjson` mean what they mean locally).
    pub(crate) async fn list(&self, src: &SourceSpec) -> Result<Vec<String>> {
        let bad_glob = || PipelineError::SourceUrl { source_name: src.name.clone() };
        let mut out = match self {
            SourceStore::Local(dir) => {
                let pattern = dir.join(&src.glob);
                let pattern = pattern.to_string_lossy();
                glob::glob(&pattern)
                    .map_err(|_| bad_glob())?
                    .filter_map(std::result::Result::ok)
                    .filter(|p| p.is_file())
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            }
            SourceStore::Object { store, prefix, base } => {
                let pattern = glob::Pattern::new(&src.glob).map_err(|_| bad_glob())?;
                let opts = glob::MatchOptions { require_literal_separator: true, ..glob::MatchOptions::new() };
                let prefix_opt = (!prefix.as_ref().is_empty()).then_some(prefix);
                let mut listing = store.list(prefix_opt);
                let mut out = Vec::new();
                while let Some(meta) = listing.next().await {
                    let meta =
                        meta.map_err(|source| PipelineError::SourceStore { source_name: src.name.clone(), source })?;
                    let key = meta.location.as_ref();
                    let rel = match prefix_opt {
                        Some(p) => key.strip_prefix(p.as_ref()).and_then(|r| r.strip_prefix('/')),
                        None => Some(key),
                    };
                    if let Some(rel) = rel
                        && pattern.matches_with(rel, opts)
                    {
                        out.push(format!("{base}{key}"));
                    }
                }
                out
            }
        };
        out.sort();
        Ok(out)
    }

    /// The object location of an identity in this store.
    fn location(&self, file: &str) -> std::result::Result<ObjectPath, String> {
        let SourceStore::Object { base, .. } = self else { return Err("not an object".into()) };
        let key = file.strip_prefix(base.as_str()).ok_or_else(|| format!("not under {base}"))?;
        ObjectPath::parse(key).map_err(|e| e.to_string())
    }

    /// SHA-256 and size of a file, streamed (an object is read once, not stored).
    pub(crate) async fn sha256(&self, file: &str) -> std::result::Result<(String, u64), String> {
        match self {
            SourceStore::Local(_) => sha256_file(Path::new(file)).map_err(|e| e.to_string()),
            SourceStore::Object { store, .. } => {
                let loc = self.location(file)?;
                let mut stream = store.get(&loc).await.map_err(|e| e.to_string())?.into_stream();
                let mut h = sha2::Sha256::new();
                let mut n = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| e.to_string())?;
                    h.update(&chunk);
                    n += chunk.len() as u64;
                }
                Ok((hex::encode(h.finalize()), n))
            }
        }
    }

    /// A local path the readers can open for a planned file. A local file is read in place; an
    /// object is downloaded to `dir/<index>/<file name>`, hashed on the way, and refused when
    /// its SHA-256 is not the planned one (it changed since the run was planned).
    pub(crate) async fn fetch(
        &self,
        file: &str,
        sha256: &str,
        dir: &Path,
        index: usize,
    ) -> std::result::Result<PathBuf, String> {
        let SourceStore::Object { store, .. } = self else { return Ok(PathBuf::from(file)) };
        let loc = self.location(file)?;
        let name = loc.filename().unwrap_or("object").to_owned();
        let folder = dir.join(index.to_string());
        std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create the staging folder: {e}"))?;
        let local = folder.join(name);
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&local).map_err(|e| format!("cannot create the staging copy: {e}"))?,
        );
        let mut stream = store.get(&loc).await.map_err(|e| e.to_string())?.into_stream();
        let mut h = sha2::Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            h.update(&chunk);
            out.write_all(&chunk).map_err(|e| format!("cannot write the staging copy: {e}"))?;
        }
        out.flush().map_err(|e| format!("cannot write the staging copy: {e}"))?;
        if hex::encode(h.finalize()) != sha256 {
            let _ = std::fs::remove_file(&local);
            return Err("changed since the run was planned (SHA-256 differs); retried by the next run".into());
        }
        Ok(local)
    }
}

/// Rename the `file` of every entry of a quarantine file (staging copy → identity).
pub(crate) fn rename_quarantine(path: &Path, names: &HashMap<String, String>) -> Result<()> {
    if names.iter().all(|(a, b)| a == b) || !path.exists() {
        return Ok(());
    }
    let io = |source| PipelineError::Io { path: path.to_owned(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let tmp = path.with_extension("ndjson.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut q: niji_ingest::report::Quarantined =
            serde_json::from_str(line).map_err(|source| PipelineError::Json { what: "quarantine entry", source })?;
        if let Some(id) = names.get(&q.file) {
            q.file.clone_from(id);
        }
        serde_json::to_writer(&mut out, &q)
            .map_err(|source| PipelineError::Json { what: "quarantine entry", source })?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn spec(glob: &str) -> SourceSpec {
        SourceSpec {
            name: "s".into(),
            format: crate::spec::SourceFormat::Receipt,
            url: "s3://b/landing".into(),
            glob: glob.into(),
            layout_dir: None,
            storage_options: Default::default(),
        }
    }

    async fn store() -> SourceStore {
        let store = InMemory::new();
        for k in ["landing/a.UKE", "landing/b.UKE", "landing/b.txt", "landing/sub/c.UKE", "landingx/d.UKE", "e.UKE"] {
            store.put(&ObjectPath::from(k), k.as_bytes().to_vec().into()).await.unwrap();
        }
        SourceStore::Object { store: Arc::new(store), prefix: ObjectPath::from("landing"), base: "s3://b/".into() }
    }

    #[tokio::test]
    async fn object_globs_match_keys_under_the_prefix_like_folders() {
        let s = store().await;
        assert_eq!(s.list(&spec("*.UKE")).await.unwrap(), ["s3://b/landing/a.UKE", "s3://b/landing/b.UKE"]);
        assert_eq!(
            s.list(&spec("**/*.UKE")).await.unwrap(),
            ["s3://b/landing/a.UKE", "s3://b/landing/b.UKE", "s3://b/landing/sub/c.UKE"]
        );
        assert_eq!(s.list(&spec("sub/*")).await.unwrap(), ["s3://b/landing/sub/c.UKE"]);
    }

    #[tokio::test]
    async fn a_fetched_object_keeps_its_name_and_is_checked_against_its_digest() {
        let s = store().await;
        let (sha, n) = s.sha256("s3://b/landing/a.UKE").await.unwrap();
        assert_eq!(n, "landing/a.UKE".len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let p = s.fetch("s3://b/landing/a.UKE", &sha, dir.path(), 3).await.unwrap();
        assert_eq!(p, dir.path().join("3/a.UKE"));
        assert_eq!(std::fs::read(&p).unwrap(), b"landing/a.UKE");
        let e = s.fetch("s3://b/landing/b.UKE", &sha, dir.path(), 4).await.unwrap_err();
        assert!(e.contains("changed since the run was planned"), "{e}");
        assert!(!dir.path().join("4/b.UKE").exists());
        assert!(s.sha256("s3://b/landing/missing.UKE").await.is_err());
    }
}
