//! Reliability: `plan` and `apply` through a proxy that injects faults (503, 429 with
//! Retry-After, connection resets in the middle of a response, truncated bodies, stalls) in
//! front of the real registry, at 5%, 10% and 20% of requests over several seeds.
//!
//! Asserted for every scenario, reading the registry directly (not through the proxy):
//! - nothing is deleted outside the fault-free plan: every tag the fault-free apply keeps still
//!   points at the same digest, and every manifest it keeps is still there;
//! - the exit code is honest: 0 only when the result is exactly the fault-free result, and a
//!   failure is reported when it is not;
//! - convergence: applying the fault-free plan again without faults leaves exactly the state of
//!   a fault-free apply, with no `regsweep-*` tag left behind.
//!
//! Run with `--nocapture` to see the counts (scenarios, faults injected per kind, deletions
//! outside the plan).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use crate::common::{Run, regsweep};
use regsweep_testkit::{
    FaultCounts, FaultKind, FaultOptions, FaultProxy, Pusher, RegistryOptions, TestRegistry, copy_tree,
};

/// The policy: delete versions below 2.0.0, keep `latest` and `stable` whatever they point at.
const POLICY: [&str; 6] = [
    "--delete-semver",
    "<2.0.0",
    "--keep-tags",
    "latest",
    "--keep-tags",
    "stable",
];

/// Client settings for faulted runs: an attempt gives up on a stall (1.5 s) after 1 s, and
/// retries start quickly. The bounds keep a scenario within seconds. Attempts per request are
/// added per scenario ([`RETRYING`] or [`NO_RETRIES`]).
const CLIENT: [&str; 7] = [
    "--plain-http",
    "--timeout",
    "1s",
    "--retry-delay",
    "20ms",
    "--request-timeout",
    "20s",
];

/// Enough attempts for every fault rate used here to be ridden out most of the time.
const RETRYING: &str = "--attempts=5";
/// One attempt per request: faults become failures, which must be said and leave the registry
/// in a state a clean re-run converges from.
const NO_RETRIES: &str = "--attempts=1";

/// What the registry holds: tag → digest per repository, and which of the candidate manifests
/// exist.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    tags: BTreeMap<String, BTreeMap<String, String>>,
    manifests: BTreeSet<(String, String)>,
}

async fn state(p: &Pusher, candidates: &BTreeSet<(String, String)>) -> State {
    let mut tags = BTreeMap::new();
    for repo in p.catalog().await.unwrap() {
        let mut map = BTreeMap::new();
        for tag in p.tags(&repo).await.unwrap() {
            let (_, _, digest) = p.get_manifest(&repo, &tag).await.unwrap();
            map.insert(tag, digest);
        }
        tags.insert(repo, map);
    }
    let mut manifests = BTreeSet::new();
    for (repo, digest) in candidates {
        if p.manifest_exists(repo, digest).await.unwrap() {
            manifests.insert((repo.clone(), digest.clone()));
        }
    }
    State { tags, manifests }
}

/// What in `after` is missing or changed compared to what the fault-free apply keeps: deletions
/// (or moves) outside the plan.
fn outside_plan(expected: &State, after: &State) -> Vec<String> {
    let mut problems = Vec::new();
    for (repo, tags) in &expected.tags {
        for (tag, digest) in tags {
            match after.tags.get(repo).and_then(|t| t.get(tag)) {
                Some(d) if d == digest => {}
                Some(d) => problems.push(format!("{repo}:{tag} moved from {digest} to {d}")),
                None => problems.push(format!("{repo}:{tag} was deleted")),
            }
        }
    }
    for (repo, digest) in expected.manifests.difference(&after.manifests) {
        problems.push(format!("{repo}@{digest} was deleted"));
    }
    problems
}

fn regsweep_tags(state: &State) -> Vec<String> {
    state
        .tags
        .iter()
        .flat_map(|(repo, tags)| tags.keys().map(move |t| format!("{repo}:{t}")))
        .filter(|t| t.contains(":regsweep-"))
        .collect()
}

/// A copy of the plan file that names `host` as its registry.
fn plan_for(plan: &serde_json::Value, host: &str, path: &Path) -> String {
    let mut plan = plan.clone();
    plan["registry"] = serde_json::Value::String(host.to_owned());
    std::fs::write(path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The actions of a plan as comparable strings (repository, kind, target).
fn actions(plan: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for repo in plan["repositories"].as_array().into_iter().flatten() {
        for action in repo["actions"].as_array().into_iter().flatten() {
            out.insert(format!("{} {}", repo["repository"], action));
        }
    }
    out
}

fn apply(plan_file: &str, attempts: &str) -> Run {
    let mut args = vec!["--json", "apply", "--yes", attempts];
    args.extend(CLIENT);
    args.push(plan_file);
    regsweep(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_through_faults() {
    // The template: the sample registry (repositories with aliases, a multi-arch index, a
    // cosign signature, an OCI referrer), copied for every scenario.
    let template = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let report = regsweep_testkit::sample(&template.client()).await.unwrap();
    let mut candidates = BTreeSet::new();
    for image in report
        .images
        .iter()
        .chain(&report.signatures)
        .chain(&report.referrers)
        .chain(&report.superseded)
    {
        candidates.insert((image.repo.clone(), image.digest.clone()));
    }
    for index in &report.indexes {
        candidates.insert((index.repo.clone(), index.digest.clone()));
        for child in &index.children {
            candidates.insert((child.repo.clone(), child.digest.clone()));
        }
    }
    let work = tempfile::tempdir().unwrap();

    // The fault-free plan, straight from the registry.
    let plan_path = work.path().join("plan0.json");
    let mut args = vec!["--json", "plan"];
    args.extend(POLICY);
    args.extend(["-o", plan_path.to_str().unwrap(), "--plain-http"]);
    let host = template.host();
    args.push(&host);
    regsweep(&args).assert_ok();
    let plan0: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    let planned = actions(&plan0);
    assert!(planned.len() >= 5, "the policy deletes something: {plan0:#}");

    // The fault-free result, on a copy.
    let start_copy = |name: &str| {
        let root = work.path().join(name);
        copy_tree(template.storage_root(), &root).unwrap();
        TestRegistry::start(RegistryOptions::default().with_storage_root(root))
    };
    let clean = start_copy("clean").await.unwrap();
    let before = state(&clean.client(), &candidates).await;
    let run = apply(
        &plan_for(&plan0, &clean.host(), &work.path().join("plan-clean.json")),
        RETRYING,
    );
    run.assert_ok();
    let expected = state(&clean.client(), &candidates).await;
    assert_ne!(expected, before, "the fault-free apply changed something");
    assert!(regsweep_tags(&expected).is_empty(), "{expected:#?}");
    drop(clean);

    let mut scenarios = 0;
    let mut failed_runs = 0;
    let mut total = FaultCounts::default();
    let mut deletions_outside_plan = Vec::new();
    let mut dishonest = Vec::new();
    let mut not_converged = Vec::new();
    let mut failed_without_retries = 0;
    let retried = [0.05, 0.10, 0.20]
        .into_iter()
        .flat_map(|rate| [(rate, 1u64, RETRYING), (rate, 2, RETRYING)]);
    let unretried = [(0.20, 3u64, NO_RETRIES), (0.20, 4, NO_RETRIES)];
    for (rate, seed, attempts) in retried.chain(unretried) {
        scenarios += 1;
        let name = format!("rate {rate} seed {seed} {attempts}");
        let reg = start_copy(&format!("r{scenarios}")).await.unwrap();
        let upstream: SocketAddr = reg.host().parse().unwrap();
        let proxy = FaultProxy::start(upstream, FaultOptions::new(rate, seed))
            .await
            .unwrap();

        // Plan through the faults: either it fails and says so, or it plans nothing the
        // fault-free plan does not.
        let faulted_plan = work.path().join(format!("plan{scenarios}.json"));
        let mut args = vec!["--json", "plan"];
        args.extend(POLICY);
        args.extend(CLIENT);
        args.push(attempts);
        let proxy_host = proxy.host();
        args.extend(["-o", faulted_plan.to_str().unwrap(), &proxy_host]);
        let run = regsweep(&args);
        let plan_file = if run.code == 0 {
            let plan: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&faulted_plan).unwrap()).unwrap();
            let extra: Vec<_> = actions(&plan).difference(&planned).cloned().collect();
            assert!(
                extra.is_empty(),
                "{name}: planned outside the fault-free plan: {extra:#?}"
            );
            faulted_plan.to_str().unwrap().to_owned()
        } else {
            assert_eq!(run.code, 1, "{name}: {run:#?}");
            assert!(
                run.stderr.contains("error"),
                "{name}: a failed plan says why: {run:#?}"
            );
            failed_runs += 1;
            failed_without_retries += usize::from(attempts == NO_RETRIES);
            plan_for(
                &plan0,
                &proxy_host,
                &work.path().join(format!("plan{scenarios}-0.json")),
            )
        };

        // Apply through the faults.
        let run = apply(&plan_file, attempts);
        let after = state(&reg.client(), &candidates).await;
        let outside = outside_plan(&expected, &after);
        deletions_outside_plan.extend(outside.iter().map(|p| format!("{name}: {p}")));
        match run.code {
            0 if after != expected => dishonest.push(format!("{name}: exit 0 but {after:#?}")),
            0 => {}
            1 => {
                failed_runs += 1;
                failed_without_retries += usize::from(attempts == NO_RETRIES);
                let reported = run.stderr.contains("error")
                    || run.stdout.contains("\"failed\": [\n")
                    || run.stdout.contains("\"failed\": [{");
                if !reported {
                    dishonest.push(format!("{name}: exit 1 without a reported failure: {run:#?}"));
                }
            }
            code => dishonest.push(format!("{name}: exit {code}: {run:#?}")),
        }
        let counts = proxy.counts();
        eprintln!("{name}: plan+apply exit {} — {counts}", run.code);
        for (sum, n) in total.by_kind.iter_mut().zip(counts.by_kind) {
            *sum += n;
        }
        total.requests += counts.requests;
        drop(proxy);

        // Converge: the fault-free plan once more, without faults.
        let rerun = apply(
            &plan_for(
                &plan0,
                &reg.host(),
                &work.path().join(format!("plan{scenarios}-again.json")),
            ),
            RETRYING,
        );
        let converged = state(&reg.client(), &candidates).await;
        if converged != expected || rerun.code != 0 {
            not_converged.push(format!(
                "{name}: exit {} {rerun:#?}\nstate {converged:#?}",
                rerun.code
            ));
        }
        assert!(
            regsweep_tags(&converged).is_empty(),
            "{name}: left behind {:?}",
            regsweep_tags(&converged)
        );
    }

    eprintln!(
        "fault scenarios: {scenarios}; runs that failed and said so: {failed_runs}; {total}; \
         deletions outside the plan: {}; dishonest exit codes: {}; not converged: {}",
        deletions_outside_plan.len(),
        dishonest.len(),
        not_converged.len()
    );
    for kind in FaultKind::ALL {
        assert!(
            total.of(kind) > 0,
            "no {} fault was injected: {total}",
            kind.name()
        );
    }
    // Without retries, 20% faults must break some run: the failure paths were exercised.
    assert!(
        failed_without_retries > 0,
        "no run without retries failed: the failure paths were not exercised"
    );
    assert!(deletions_outside_plan.is_empty(), "{deletions_outside_plan:#?}");
    assert!(dishonest.is_empty(), "{dishonest:#?}");
    assert!(not_converged.is_empty(), "{not_converged:#?}");
}

/// Answers lost after the request went out (reset mid-response, body cut short) are retried for
/// requests that are safe to repeat; a DELETE whose repeat answers 404 counts as done.
#[tokio::test]
async fn lost_answers_are_retried() {
    use regsweep::digest::Digest;
    use regsweep::reference::{RegistryAddr, Repository, Tag};
    use regsweep::registry::{Client, ClientOptions, RetryPolicy};

    let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let p = reg.client();
    let image = p
        .push_image("app", Some("v1"), &regsweep_testkit::ImageSpec::seeded(1))
        .await
        .unwrap();
    let upstream: SocketAddr = reg.host().parse().unwrap();
    for kind in [FaultKind::ResetMidBody, FaultKind::TruncatedBody] {
        let proxy = FaultProxy::start(upstream, FaultOptions::new(1.0, 3).kinds(&[kind]).only_first(1))
            .await
            .unwrap();
        let options = ClientOptions {
            plain_http: true,
            retry: RetryPolicy {
                base_delay: std::time::Duration::from_millis(10),
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        };
        let client = Client::connect(&RegistryAddr::parse(&proxy.host()).unwrap(), options)
            .await
            .unwrap();
        assert_eq!(
            client.tags(&Repository::parse("app").unwrap()).await.unwrap(),
            ["v1"],
            "{kind:?}"
        );
        let fetched = client
            .manifest(&Repository::parse("app").unwrap(), &Tag::parse("v1").unwrap())
            .await
            .unwrap();
        assert_eq!(fetched.digest.as_str(), image.digest, "{kind:?}");
        assert_eq!(
            client
                .manifest_head(&Repository::parse("app").unwrap(), &Tag::parse("v1").unwrap())
                .await
                .unwrap()
                .digest,
            fetched.digest
        );
        let counts = proxy.counts();
        assert!(
            counts.of(kind) >= 4,
            "{kind:?}: every request was faulted once: {counts}"
        );
    }

    // The first DELETE takes effect and its answer is lost; the retry's 404 means done.
    let proxy = FaultProxy::start(
        upstream,
        FaultOptions::new(1.0, 4)
            .kinds(&[FaultKind::ResetMidBody])
            .only_first(1),
    )
    .await
    .unwrap();
    let options = ClientOptions {
        plain_http: true,
        ..ClientOptions::default()
    };
    let client = Client::connect(&RegistryAddr::parse(&proxy.host()).unwrap(), options)
        .await
        .unwrap();
    let digest = Digest::parse(&image.digest).unwrap();
    client
        .delete_manifest(&Repository::parse("app").unwrap(), &digest)
        .await
        .unwrap();
    assert!(!p.manifest_exists("app", &image.digest).await.unwrap());
    assert_eq!(
        proxy.counts().of(FaultKind::ResetMidBody),
        2,
        "{}",
        proxy.counts()
    );
}

/// A stalled response fails its attempt after `--timeout`, is retried, and the command gives up
/// within the bounds set, saying it timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_are_bounded_by_the_timeout_flags() {
    let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    reg.client()
        .push_image("app", Some("v1"), &regsweep_testkit::ImageSpec::seeded(1))
        .await
        .unwrap();
    let mut options = FaultOptions::new(1.0, 5).kinds(&[FaultKind::Stall]);
    options.stall = std::time::Duration::from_secs(3);
    let proxy = FaultProxy::start(reg.host().parse().unwrap(), options)
        .await
        .unwrap();
    let target = format!("{}/app", proxy.host());
    let run = regsweep(&[
        "tags",
        "--plain-http",
        "--timeout",
        "300ms",
        "--attempts",
        "2",
        "--retry-delay",
        "10ms",
        &target,
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(run.stderr.contains("after 2 attempts"), "{}", run.stderr);
    assert_eq!(proxy.counts().of(FaultKind::Stall), 2, "{}", proxy.counts());

    let run = regsweep(&["tags", "--timeout", "soon", &target]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("not a duration"), "{}", run.stderr);
}
