//! Ready-made registry content: [`fill`] for volume (pagination tests, benchmarks) and [`sample`]
//! for a small realistic demo.
//!
//! `fill` is built for speed: a fixed pool of workers, base layers uploaded once and cross-repo
//! mounted into every other repo, generated blobs uploaded without a HEAD, aliases written from
//! the bytes already in hand (no GET).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::image::{self, Blob, Format, ImageSpec, rfc3339_utc};
use crate::push::{PushedImage, PushedIndex, Pusher};

/// One tag as pushed: `repo:tag -> digest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagRecord {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
}

/// What [`fill`] pushes.
#[derive(Debug, Clone)]
pub struct FillSpec {
    pub repos: usize,
    pub tags_per_repo: usize,
    /// Every Nth tag (the N-th, 2N-th, …) is a 2-platform index (linux/amd64, linux/arm64);
    /// 0 = none.
    pub multiarch_every: usize,
    /// Every Nth tag also gets the alias `<tag>-alias` (same digest); 0 = none.
    pub alias_every: usize,
    /// Also tag the newest tag of every repo `latest`.
    pub latest: bool,
    /// Repository name prefix; repos are `<prefix>0000`, `<prefix>0001`, … (zero-padded, so the
    /// catalog's lexical order is the numeric order).
    pub prefix: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Generated (unique) layers per image, on top of the 2 shared base layers. 0 makes the
    /// fill ~40% faster (only the config is unique then) but leaves GC little to sweep.
    pub layers_per_image: usize,
    /// Size of each generated layer.
    pub layer_size: usize,
    /// Varies all content; the same spec on the same UTC day gives the same digests.
    pub seed: u64,
}

impl Default for FillSpec {
    fn default() -> Self {
        FillSpec {
            repos: 10,
            tags_per_repo: 10,
            multiarch_every: 0,
            alias_every: 0,
            latest: false,
            prefix: "fill/app-".into(),
            concurrency: 16,
            layers_per_image: 1,
            layer_size: 256,
            seed: 0,
        }
    }
}

impl FillSpec {
    /// Repository name of repo number `i`.
    pub fn repo_name(&self, i: usize) -> String {
        let width = self.repos.saturating_sub(1).to_string().len().max(4);
        format!("{}{i:0width$}", self.prefix)
    }

    /// Tag name of tag number `i`: `v{i/10}.{i%10}.0`, so 50 tags run v0.0.0 … v4.9.0 and the
    /// first 20 are below 2.0.0.
    pub fn tag_name(i: usize) -> String {
        format!("v{}.{}.0", i / 10, i % 10)
    }

    fn is_multiarch(&self, tag: usize) -> bool {
        self.multiarch_every > 0 && tag % self.multiarch_every == self.multiarch_every - 1
    }

    fn is_aliased(&self, tag: usize) -> bool {
        self.alias_every > 0 && tag % self.alias_every == self.alias_every - 1
    }

    /// Created time of tag `i`: spread evenly over the 100 days before today 00:00 UTC, oldest
    /// first (tag 0 is the oldest).
    fn created(&self, tag: usize) -> String {
        let today = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
            / 86_400
            * 86_400;
        let n = self.tags_per_repo.max(1) as i64;
        let age = (n - 1 - tag as i64) * 100 * 86_400 / n;
        rfc3339_utc(today - age)
    }
}

/// Counts and tags of a [`fill`].
#[derive(Debug, Clone, Default)]
pub struct FillReport {
    pub repos: usize,
    /// Tag names written, aliases and `latest` included.
    pub tags: usize,
    /// Single-platform manifests (index children included).
    pub images: usize,
    pub indexes: usize,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    pub elapsed: Duration,
    /// Every tag written, sorted by repo then tag.
    pub tagged: Vec<TagRecord>,
}

impl std::fmt::Display for FillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let manifests = self.images + self.indexes;
        write!(
            f,
            "{} repos, {} tags, {} manifests ({} images, {} indexes), {} blobs uploaded ({} bytes), \
             {} blobs mounted in {:.2}s ({:.0} manifests/s)",
            self.repos,
            self.tags,
            manifests,
            self.images,
            self.indexes,
            self.blobs_uploaded,
            self.bytes_uploaded,
            self.blobs_mounted,
            secs,
            manifests as f64 / secs.max(1e-9)
        )
    }
}

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

#[derive(Default)]
struct Tally {
    tags: Vec<TagRecord>,
    images: usize,
    indexes: usize,
    blobs: usize,
    mounts: usize,
    bytes: u64,
}

impl Tally {
    /// Count an image's config and its `own` generated layers (the last ones); the shared base
    /// layers were counted when first uploaded.
    fn image(&mut self, img: &PushedImage, own: usize) {
        self.images += 1;
        self.blobs += 1 + own;
        let own_layers = &img.layers[img.layers.len().saturating_sub(own)..];
        self.bytes += img.config.size + own_layers.iter().map(|l| l.size).sum::<u64>();
    }

    fn merge(&mut self, o: Tally) {
        self.tags.extend(o.tags);
        self.images += o.images;
        self.indexes += o.indexes;
        self.blobs += o.blobs;
        self.mounts += o.mounts;
        self.bytes += o.bytes;
    }
}

/// Push `spec.repos × spec.tags_per_repo` tags (plus aliases), `spec.concurrency` requests at a
/// time. Even-numbered repos hold Docker v2 content, odd-numbered ones OCI.
pub async fn fill(p: &Pusher, spec: &FillSpec) -> Result<FillReport> {
    let started = Instant::now();
    let spec = Arc::new(spec.clone());
    let base = Arc::new(vec![
        Blob::random(image::mix(spec.seed, 0xba5e_0001), 4096),
        Blob::random(image::mix(spec.seed, 0xba5e_0002), 1024),
    ]);
    let mut total = Tally::default();
    if spec.repos == 0 {
        return Ok(FillReport::default());
    }

    // Phase 1: the base layers once into the first repo, then mounted into all the others.
    let origin = spec.repo_name(0);
    for b in base.iter() {
        p.upload_blob(&origin, &b.data)
            .await
            .with_context(|| format!("uploading base layer into {origin}"))?;
        total.blobs += 1;
        total.bytes += b.size();
    }
    let mounts = run_pool(spec.concurrency, spec.repos - 1, {
        let (p, spec, base, origin) = (p.clone(), spec.clone(), base.clone(), origin.clone());
        move |i| {
            let (p, spec, base, origin) = (p.clone(), spec.clone(), base.clone(), origin.clone());
            async move {
                let repo = spec.repo_name(i + 1);
                let mut t = Tally::default();
                for b in base.iter() {
                    if p.mount_blob(&repo, &b.digest, &origin).await? {
                        t.mounts += 1;
                    } else {
                        p.upload_blob(&repo, &b.data).await?;
                        t.blobs += 1;
                        t.bytes += b.size();
                    }
                }
                Ok(t)
            }
        }
    })
    .await
    .context("mounting base layers")?;
    total.merge(mounts);

    // Phase 2: every tag.
    let pushed = run_pool(spec.concurrency, spec.repos * spec.tags_per_repo, {
        let (p, spec, base) = (p.clone(), spec.clone(), base.clone());
        move |n| {
            let (p, spec, base) = (p.clone(), spec.clone(), base.clone());
            async move {
                let (r, t) = (n / spec.tags_per_repo, n % spec.tags_per_repo);
                push_one(&p, &spec, &base, r, t)
                    .await
                    .with_context(|| format!("{}:{}", spec.repo_name(r), FillSpec::tag_name(t)))
            }
        }
    })
    .await?;
    total.merge(pushed);

    total.tags.sort();
    Ok(FillReport {
        repos: spec.repos,
        tags: total.tags.len(),
        images: total.images,
        indexes: total.indexes,
        blobs_uploaded: total.blobs,
        blobs_mounted: total.mounts,
        bytes_uploaded: total.bytes,
        elapsed: started.elapsed(),
        tagged: total.tags,
    })
}

async fn push_one(p: &Pusher, spec: &FillSpec, base: &[Blob], r: usize, t: usize) -> Result<Tally> {
    let repo = spec.repo_name(r);
    let tag = FillSpec::tag_name(t);
    let mut tally = Tally::default();
    let template = ImageSpec {
        format: if r.is_multiple_of(2) {
            Format::Docker
        } else {
            Format::Oci
        },
        layers: spec.layers_per_image,
        layer_size: spec.layer_size,
        created: Some(spec.created(t)),
        seed: image::mix(spec.seed, (r as u64) << 32 | t as u64),
        shared_layers: base.to_vec(),
        ..Default::default()
    }
    .label("org.opencontainers.image.version", &tag);

    let (digest, media_type, body) = if spec.is_multiarch(t) {
        let idx: PushedIndex = p
            .push_index_prepared(&repo, Some(&tag), &template, &PLATFORMS)
            .await?;
        tally.indexes += 1;
        idx.children
            .iter()
            .for_each(|c| tally.image(c, spec.layers_per_image));
        (idx.digest, idx.media_type, idx.manifest)
    } else {
        let img = p.push_built(&repo, Some(&tag), &template.build()).await?;
        tally.image(&img, spec.layers_per_image);
        (img.digest, img.media_type, img.manifest)
    };

    let mut names = vec![tag.clone()];
    if spec.is_aliased(t) {
        names.push(format!("{tag}-alias"));
    }
    if spec.latest && t + 1 == spec.tags_per_repo {
        names.push("latest".into());
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            p.put_manifest(&repo, name, &media_type, &body).await?;
        }
        tally.tags.push(TagRecord {
            repo: repo.clone(),
            tag: name.clone(),
            digest: digest.clone(),
            media_type: media_type.clone(),
        });
    }
    Ok(tally)
}

/// Run `job(0..n)` on `concurrency` workers; the first error stops the others and is returned.
async fn run_pool<F, Fut>(concurrency: usize, n: usize, job: F) -> Result<Tally>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Tally>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, failed, job) = (next.clone(), failed.clone(), job.clone());
        set.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok(tally);
                }
                match job(i).await {
                    Ok(t) => tally.merge(t),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        });
    }
    let mut total = Tally::default();
    let mut first_err = None;
    while let Some(res) = set.join_next().await {
        match res.context("fill worker panicked")? {
            Ok(t) => total.merge(t),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

// ---- sample -------------------------------------------------------------------------------------

/// What [`sample`] pushed.
#[derive(Debug, Clone, Default)]
pub struct SampleReport {
    /// Tagged single-platform images (not index children, signatures, referrers, superseded).
    pub images: Vec<PushedImage>,
    pub indexes: Vec<PushedIndex>,
    /// Cosign `sha256-<hex>.sig` signatures.
    pub signatures: Vec<PushedImage>,
    /// OCI 1.1 referrers (untagged, with `subject`).
    pub referrers: Vec<PushedImage>,
    /// Every tag as it stands at the end (re-pushed tags show their final digest).
    pub tags: Vec<TagRecord>,
    /// Manifests left untagged by re-pushing a tag (`nightly`), as CI does.
    pub superseded: Vec<PushedImage>,
}

impl SampleReport {
    pub fn repos(&self) -> Vec<String> {
        let mut r: Vec<String> = Vec::new();
        for t in &self.tags {
            if !r.contains(&t.repo) {
                r.push(t.repo.clone());
            }
        }
        r
    }
}

impl std::fmt::Display for SampleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for repo in self.repos() {
            let tags: Vec<&str> = self
                .tags
                .iter()
                .filter(|t| t.repo == repo)
                .map(|t| t.tag.as_str())
                .collect();
            writeln!(f, "{repo}: {} tags: {}", tags.len(), tags.join(" "))?;
        }
        write!(
            f,
            "{} images, {} indexes, {} signatures, {} referrers, {} superseded (untagged) manifests",
            self.images.len(),
            self.indexes.len(),
            self.signatures.len(),
            self.referrers.len(),
            self.superseded.len()
        )
    }
}

/// Small, realistic demo content (about 40 manifests, a second or two):
///
/// - `team/web/frontend` (Docker v2): `v1.0.0` … `v2.3.1` over ~85 days, `latest` = `v2.3.1`,
///   `stable` = `v2.1.0`, `pr-123`, `pr-124`, `nightly` re-pushed once (the old one is left
///   untagged), and a cosign signature (`sha256-<hex>.sig`) on `v2.3.1`;
/// - `team/api` (OCI): `v1.0.0`, `v1.4.2`, a multi-arch OCI index `v2.0.0` (linux/amd64 +
///   linux/arm64) also tagged `latest`, `pr-7`, and an SBOM referrer whose `subject` is the index;
/// - `tools/cli` (Docker): a multi-arch Docker manifest list `v1.0.0`, `v0.9.0`, numeric build
///   tags `948` `950` `951` `1002`;
/// - `legacy/app` (Docker): `0.1.0`, `0.2.0` (~3 months old), `latest` = `0.2.0`.
///
/// All images share one base layer (cross-repo mounted).
pub async fn sample(p: &Pusher) -> Result<SampleReport> {
    let mut s = Sampler {
        p,
        report: SampleReport::default(),
        base: Blob::random(0x5a3b_1e00, 2048),
        origin: None,
    };

    let fe = "team/web/frontend";
    for (tag, days, seed) in [
        ("v1.0.0", 85.0, 101),
        ("v1.1.0", 70.0, 102),
        ("v1.2.0", 60.0, 103),
        ("v2.0.0", 45.0, 104),
        ("v2.1.0", 30.0, 105),
        ("v2.3.0", 12.0, 106),
        ("v2.3.1", 5.0, 107),
        ("pr-123", 3.0, 108),
        ("pr-124", 1.0, 109),
        ("nightly", 10.0, 110),
    ] {
        s.image(fe, tag, Format::Docker, days, seed).await?;
    }
    // CI re-pushes `nightly`: the first manifest stays in the repo, untagged.
    let old_nightly = s.report.images.pop().expect("just pushed");
    s.image(fe, "nightly", Format::Docker, 0.5, 111).await?;
    s.report.superseded.push(old_nightly);
    s.alias(fe, "v2.3.1", "latest").await?;
    s.alias(fe, "v2.1.0", "stable").await?;
    let signed = s.digest_of(fe, "v2.3.1");
    let sig = p.push_cosign_signature(fe, &signed, 901).await?;
    s.record(
        &sig.repo,
        sig.tag.as_deref().unwrap_or_default(),
        &sig.digest,
        &sig.media_type,
    );
    s.report.signatures.push(sig);

    let api = "team/api";
    s.image(api, "v1.0.0", Format::Oci, 80.0, 201).await?;
    s.image(api, "v1.4.2", Format::Oci, 50.0, 202).await?;
    let idx = s.index(api, "v2.0.0", Format::Oci, 20.0, 203).await?;
    s.image(api, "pr-7", Format::Oci, 2.0, 204).await?;
    s.alias(api, "v2.0.0", "latest").await?;
    let sbom = p
        .push_referrer(api, &idx.descriptor(), "application/spdx+json", 902)
        .await?;
    s.report.referrers.push(sbom);

    let cli = "tools/cli";
    s.image(cli, "v0.9.0", Format::Docker, 88.0, 301).await?;
    s.index(cli, "v1.0.0", Format::Docker, 40.0, 302).await?;
    for (tag, days, seed) in [
        ("948", 89.0, 303),
        ("950", 60.0, 304),
        ("951", 33.0, 305),
        ("1002", 8.0, 306),
    ] {
        s.image(cli, tag, Format::Docker, days, seed).await?;
    }

    let legacy = "legacy/app";
    s.image(legacy, "0.1.0", Format::Docker, 95.0, 401).await?;
    s.image(legacy, "0.2.0", Format::Docker, 90.0, 402).await?;
    s.alias(legacy, "0.2.0", "latest").await?;

    let mut report = s.report;
    // Keep only the final state of each tag (nightly was overwritten).
    let mut final_tags: Vec<TagRecord> = Vec::new();
    for t in report.tags.into_iter().rev() {
        if !final_tags.iter().any(|f| f.repo == t.repo && f.tag == t.tag) {
            final_tags.push(t);
        }
    }
    final_tags.reverse();
    report.tags = final_tags;
    Ok(report)
}

struct Sampler<'a> {
    p: &'a Pusher,
    report: SampleReport,
    base: Blob,
    /// First repo that received the base layer, to mount it from.
    origin: Option<String>,
}

impl Sampler<'_> {
    fn spec(&mut self, repo: &str, tag: &str, format: Format, days: f64, seed: u64) -> ImageSpec {
        let mut spec = ImageSpec::seeded(seed)
            .format(format)
            .created(image::days_ago(days))
            .label("org.opencontainers.image.version", tag)
            .label(
                "org.opencontainers.image.source",
                format!("https://git.example/{repo}"),
            );
        spec.shared_layers = vec![self.base.clone()];
        spec.mount_from = self.origin.clone();
        self.origin.get_or_insert_with(|| repo.to_string());
        spec
    }

    async fn image(&mut self, repo: &str, tag: &str, f: Format, days: f64, seed: u64) -> Result<()> {
        let spec = self.spec(repo, tag, f, days, seed);
        let img = self.p.push_image(repo, Some(tag), &spec).await?;
        self.record(repo, tag, &img.digest, &img.media_type);
        self.report.images.push(img);
        Ok(())
    }

    async fn index(&mut self, repo: &str, tag: &str, f: Format, days: f64, seed: u64) -> Result<PushedIndex> {
        let spec = self.spec(repo, tag, f, days, seed);
        let idx = self.p.push_index_from(repo, Some(tag), &spec, &PLATFORMS).await?;
        self.record(repo, tag, &idx.digest, &idx.media_type);
        self.report.indexes.push(idx.clone());
        Ok(idx)
    }

    async fn alias(&mut self, repo: &str, existing: &str, alias: &str) -> Result<()> {
        let digest = self.digest_of(repo, existing);
        self.p.tag(repo, &digest, alias).await?;
        let media_type = self
            .report
            .tags
            .iter()
            .find(|t| t.digest == digest)
            .map(|t| t.media_type.clone())
            .unwrap_or_default();
        self.record(repo, alias, &digest, &media_type);
        Ok(())
    }

    fn digest_of(&self, repo: &str, tag: &str) -> String {
        self.report
            .tags
            .iter()
            .rev()
            .find(|t| t.repo == repo && t.tag == tag)
            .map(|t| t.digest.clone())
            .expect("sample refers only to tags it pushed")
    }

    fn record(&mut self, repo: &str, tag: &str, digest: &str, media_type: &str) {
        self.report.tags.push(TagRecord {
            repo: repo.into(),
            tag: tag.into(),
            digest: digest.into(),
            media_type: media_type.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_schedule() {
        let spec = FillSpec {
            repos: 200,
            tags_per_repo: 50,
            multiarch_every: 10,
            alias_every: 5,
            ..Default::default()
        };
        assert_eq!(spec.repo_name(7), "fill/app-0007");
        assert_eq!(FillSpec::tag_name(0), "v0.0.0");
        assert_eq!(FillSpec::tag_name(49), "v4.9.0");
        assert!(!spec.is_multiarch(0) && spec.is_multiarch(9) && spec.is_multiarch(19));
        assert!(spec.is_aliased(4) && !spec.is_aliased(5));
        assert!(spec.created(0) < spec.created(49));
        let big = FillSpec {
            repos: 20_000,
            ..Default::default()
        };
        assert_eq!(big.repo_name(3), "fill/app-00003");
    }
}
