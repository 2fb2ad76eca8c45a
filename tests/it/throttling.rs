//! `regsweep gc s3://…` against an S3 that throttles: a loopback proxy in front of moto answers
//! every third request with `503 SlowDown`. The collection must still finish, delete exactly what
//! the same collection on the filesystem deletes, and say that it was throttled.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use regsweep_testkit::azurite::files_below;
use regsweep_testkit::moto::forward;
use regsweep_testkit::{
    Blob, CannedResponse, ImageSpec, LoopbackServer, MotoServer, RegistryOptions, TestRegistry,
};
use serde_json::Value;

use crate::common::Cli;

const LAYOUT: &str = "docker/registry/v2";
const SLOW_DOWN: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
    <Message>Please reduce your request rate.</Message></Error>";

/// `regsweep gc --json ARGS` with `env`: exit code, report, stderr.
fn gc_json(args: &[&str], env: &[(&str, String)]) -> (i32, Value, String) {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("REGSWEEP_LOG", "warn"));
    let run = Cli::new(&[&["gc", "--json"], args].concat()).envs(&env).run();
    let report = run.json();
    (run.code, report, run.stderr)
}

#[tokio::test]
async fn gc_through_503_slowdown_finishes_correctly_and_reports_the_throttling() {
    // Garbage: a tag moved to a new build, a manifest deleted through the API, an upload.
    let mut reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let p = reg.client();
    for (seed, repo) in [(1, "app"), (2, "app"), (3, "tools/cli")] {
        p.push_image(repo, Some("v1"), &ImageSpec::seeded(seed))
            .await
            .unwrap();
    }
    let gone = p
        .push_image("app", Some("old"), &ImageSpec::seeded(4))
        .await
        .unwrap();
    assert_eq!(
        p.delete_manifest("app", &gone.digest).await.unwrap().as_u16(),
        202
    );
    p.upload_blob("app", &Blob::random(9, 1000).data).await.unwrap();
    reg.stop().await.unwrap();
    let root = reg.storage_root().to_owned();
    let layout = root.join(LAYOUT);

    let moto = MotoServer::start().await.unwrap();
    moto.create_bucket("throttled").await.unwrap();
    for file in files_below(&layout).unwrap() {
        let body = std::fs::read(layout.join(&file)).unwrap();
        moto.put("throttled", &format!("reg/{LAYOUT}/{file}"), body)
            .await
            .unwrap();
    }

    let port = moto.port();
    let requests = Arc::new(AtomicUsize::new(0));
    let slowdowns = Arc::new(AtomicUsize::new(0));
    let (seen, refused) = (requests.clone(), slowdowns.clone());
    let proxy = LoopbackServer::start(move |request| {
        if seen.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            refused.fetch_add(1, Ordering::SeqCst);
            return CannedResponse::new(503).body(SLOW_DOWN.to_vec());
        }
        forward(port, request).unwrap_or_else(|e| CannedResponse::new(502).body(e.to_string().into_bytes()))
    })
    .unwrap();
    let env = crate::common::s3_env(proxy.base_url());

    let (code, ours, stderr) = gc_json(&["--grace", "0", "--delete-untagged", "s3://throttled/reg"], &env);
    assert_eq!(code, 0, "{ours:#}\n{stderr}");
    let (code, theirs, _) = gc_json(
        &["--grace", "0", "--delete-untagged", root.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{theirs:#}");

    assert_eq!(ours["outcome"], "swept", "{ours:#}");
    assert!(ours["failures"].as_array().unwrap().is_empty(), "{ours:#}");
    assert!(!ours["blobs"].as_array().unwrap().is_empty(), "{ours:#}");
    assert_eq!(ours["blobs"], theirs["blobs"]);
    assert_eq!(ours["manifests"], theirs["manifests"]);
    let left: BTreeSet<String> = moto
        .keys("throttled", &format!("reg/{LAYOUT}/"))
        .await
        .unwrap()
        .iter()
        .map(|k| k[format!("reg/{LAYOUT}/").len()..].to_owned())
        .collect();
    assert_eq!(
        left,
        files_below(&layout).unwrap(),
        "S3 and the filesystem keep the same keys"
    );

    // Throttling was seen, counted, acted on and said.
    let refused = slowdowns.load(Ordering::SeqCst) as u64;
    assert!(refused >= 3, "the proxy throttled ({refused} answers)");
    assert_eq!(ours["requests"]["throttled"].as_u64(), Some(refused), "{ours:#}");
    let lowest = ours["requests"]["lowest_concurrency"].as_u64().unwrap();
    assert!(
        lowest < 64,
        "the limit on requests in flight was lowered: {ours:#}"
    );
    assert!(stderr.contains("throttling"), "{stderr}");
}
