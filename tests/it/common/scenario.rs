//! Scenarios: a real registry started with a configuration and filled with images, then the
//! command line run against it, in this process, with `{registry}` in an argument standing for
//! the registry's address:
//!
//! ```ignore
//! let s = Scenario::start(RegistryOptions::default()).await.image("app", "v1", 1).await;
//! s.run(&["--json", "tags", "{registry}/app"]).assert_ok();
//! ```

use std::collections::BTreeMap;

use regsweep_testkit::{ImageSpec, PushedImage, RegistryOptions, TestRegistry};

use super::{Cli, Run};

pub struct Scenario {
    registry: TestRegistry,
    pushed: BTreeMap<String, PushedImage>,
}

impl Scenario {
    /// A registry started with `options`, empty.
    pub async fn start(options: RegistryOptions) -> Self {
        let registry = TestRegistry::start(options).await.expect("the registry starts");
        Self {
            registry,
            pushed: BTreeMap::new(),
        }
    }

    /// Pushes the image seeded with `seed` as `repo:tag` (`tag` empty: by digest, untagged).
    pub async fn image(mut self, repo: &str, tag: &str, seed: u64) -> Self {
        let tag = Some(tag).filter(|t| !t.is_empty());
        let image = self
            .registry
            .client()
            .push_image(repo, tag, &ImageSpec::seeded(seed))
            .await
            .unwrap_or_else(|err| panic!("pushing {repo}:{tag:?}: {err:#}"));
        self.pushed.insert(format!("{repo}:{}", tag.unwrap_or("")), image);
        self
    }

    /// The image pushed as `repo:tag` (`repo:` for one pushed untagged).
    pub fn pushed(&self, reference: &str) -> &PushedImage {
        self.pushed
            .get(reference)
            .unwrap_or_else(|| panic!("no image was pushed as {reference}"))
    }

    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// The command line `args`, `{registry}` replaced by the registry's address.
    pub fn cli(&self, args: &[&str]) -> Cli {
        let host = self.registry.host();
        let args: Vec<String> = args.iter().map(|a| a.replace("{registry}", &host)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cli::new(&args)
    }

    /// Runs `args` (see [`Scenario::cli`]) in the clean environment of [`Cli`].
    pub fn run(&self, args: &[&str]) -> Run {
        self.cli(args).run()
    }
}
