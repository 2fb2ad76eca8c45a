//! `skopeo` as a second, independent client: if skopeo (containers/image, Go) sees the same
//! manifests and can pull every platform and blob, the result does not depend on our own HTTP code.

use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result, anyhow, bail};

use crate::process::{TestRegistry, find_on_path};

/// Fail loudly (with the install command) when `skopeo` is not on `PATH`.
pub fn skopeo_available() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_on_path("skopeo", &path)
        .map(|_| ())
        .ok_or_else(|| anyhow!("skopeo not found on PATH: install it with `apt-get install -y skopeo`"))
}

impl TestRegistry {
    /// `docker://HOST/REPO:TAG` or `docker://HOST/REPO@DIGEST`.
    pub fn docker_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("docker://{}/{repo}{sep}{reference}", self.host())
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as skopeo received them.
    pub async fn skopeo_inspect_raw(&self, repo: &str, reference: &str) -> Result<Vec<u8>> {
        let mut args = vec!["inspect".to_string(), "--raw".into()];
        args.extend(self.skopeo_access_flags(""));
        args.push(self.docker_ref(repo, reference));
        Ok(run_skopeo(&args).await?.stdout)
    }

    /// `skopeo list-tags`: the tags skopeo sees for `repo`.
    pub async fn skopeo_list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(rename = "Tags")]
            tags: Option<Vec<String>>,
        }
        let mut args = vec!["list-tags".to_string()];
        args.extend(self.skopeo_access_flags(""));
        args.push(format!("docker://{}/{repo}", self.host()));
        let out = run_skopeo(&args).await?;
        let t: Tags = serde_json::from_slice(&out.stdout).context("parsing skopeo list-tags")?;
        Ok(t.tags.unwrap_or_default())
    }

    /// `skopeo copy --all docker://… dir:DEST`: proves every platform of an index and every blob
    /// can be pulled (skopeo verifies digests while copying). `dest` must not contain an image yet.
    pub async fn skopeo_copy_all_to_dir(&self, repo: &str, reference: &str, dest: &Path) -> Result<()> {
        let mut args = vec![
            "--insecure-policy".to_string(),
            "copy".into(),
            "--all".into(),
            "--quiet".into(),
        ];
        args.extend(self.skopeo_access_flags("src-"));
        args.push(self.docker_ref(repo, reference));
        args.push(format!("dir:{}", dest.display()));
        run_skopeo(&args).await.map(|_| ())
    }

    /// TLS and credential flags; `prefix` is `""` for inspect/list-tags, `"src-"` for copy.
    fn skopeo_access_flags(&self, prefix: &str) -> Vec<String> {
        let mut f = Vec::new();
        match self.cert_dir() {
            Some(dir) => {
                f.push(format!("--{prefix}tls-verify=true"));
                f.push(format!("--{prefix}cert-dir={}", dir.display()));
            }
            None => f.push(format!("--{prefix}tls-verify=false")),
        }
        match self.credentials() {
            Some((u, p)) => f.push(format!("--{prefix}creds={u}:{p}")),
            None => f.push(format!("--{prefix}no-creds")),
        }
        f
    }
}

async fn run_skopeo(args: &[String]) -> Result<Output> {
    skopeo_available()?;
    let out = tokio::process::Command::new("skopeo")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running skopeo")?;
    if !out.status.success() {
        // Never echo the arguments: they may carry --creds.
        bail!(
            "skopeo {} failed ({}): {}",
            args.iter().find(|a| !a.starts_with('-')).map_or("", |s| s),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
