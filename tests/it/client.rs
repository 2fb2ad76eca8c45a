//! The registry client against the real registry: authentication, TLS, scheme fallback, error
//! messages and exit codes, and credential hygiene.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use crate::common::{regsweep, regsweep_with};
use regsweep::digest::Digest;
use regsweep::reference::{RegistryAddr, Repository, Tag};
use regsweep::registry::{Client, ClientOptions, Credentials, RegistryError, RetryPolicy, Secret};
use regsweep_testkit::{CannedResponse, ImageSpec, LoopbackServer, RegistryOptions, TestRegistry};

const CANARY: &str = "canary-Pa55word-7f3a9";

#[tokio::test]
async fn basic_auth_with_env_and_stdin_and_no_leaks() {
    let reg = TestRegistry::start(RegistryOptions::default().with_htpasswd("alice", CANARY))
        .await
        .unwrap();
    reg.client()
        .push_image("secret/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let target = format!("{}/secret/app", reg.host());

    // Anonymous: 401 with advice on how to authenticate.
    let run = regsweep(&["tags", &target]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert!(run.stderr.contains("--username"), "{}", run.stderr);

    // Environment variables, at the most verbose log level: works, and the password appears
    // nowhere in the output.
    let env = [
        ("REGSWEEP_USERNAME", "alice"),
        ("REGSWEEP_PASSWORD", CANARY),
        ("REGSWEEP_LOG", "trace"),
    ];
    let run = regsweep_with(&["-vvv", "tags", "--long", &target], &env, None);
    run.assert_ok();
    assert!(run.stdout.contains("v1"), "{run:#?}");
    assert!(
        !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
        "password leaked: {run:#?}"
    );
    assert!(
        run.stderr.len() > 100,
        "trace logging produced output: {}",
        run.stderr
    );

    // --password-stdin.
    let run = regsweep_with(
        &["-vvv", "repos", "-u", "alice", "--password-stdin", &reg.host()],
        &[],
        Some(&format!("{CANARY}\n")),
    );
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "secret/app");
    assert!(!run.stderr.contains(CANARY));

    // A wrong password is rejected with a message naming the user, never the password.
    let wrong = format!("{CANARY}-wrong");
    let run = regsweep_with(
        &["-vvv", "tags", &target],
        &[("REGSWEEP_USERNAME", "alice"), ("REGSWEEP_PASSWORD", &wrong)],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("rejected the credentials of user `alice`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(CANARY) && !run.stdout.contains(CANARY));

    // --username without a password is a usage error.
    let run = regsweep(&["tags", "-u", "alice", &target]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--password-stdin"));
}

#[tokio::test]
async fn tls_with_ca_file_and_insecure() {
    let reg = TestRegistry::start(RegistryOptions::default().with_tls())
        .await
        .unwrap();
    reg.client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let ca = reg
        .ca_cert_path()
        .expect("a TLS registry has a CA")
        .to_str()
        .unwrap()
        .to_owned();
    let target = format!("{}/app", reg.host());
    assert!(reg.base_url().starts_with("https://"));

    let run = regsweep(&["tags", "--ca-file", &ca, &target]);
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "v1");

    let run = regsweep(&["tags", "--insecure", &format!("https://{target}")]);
    run.assert_ok();

    // Without the CA the certificate is not trusted, and the message says what to do. The
    // explicit https:// stops the loopback fallback to plain HTTP.
    let run = regsweep(&["tags", &format!("https://{target}")]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("--ca-file"), "{}", run.stderr);

    let run = regsweep(&["tags", "--ca-file", "/nonexistent/ca.pem", &target]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot read CA file"), "{}", run.stderr);
}

#[tokio::test]
async fn errors_name_what_was_wrong() {
    let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    reg.client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let host = reg.host();

    let run = regsweep(&["tags", &format!("{host}/missing")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("repository `missing` not found"),
        "{}",
        run.stderr
    );

    let run = regsweep(&["inspect", &format!("{host}/app:nope")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("manifest `app:nope` not found"),
        "{}",
        run.stderr
    );

    for (bad, rule) in [
        (format!("{host}/App"), "component `App`"),
        (format!("{host}/app:-x"), "tag `-x`"),
        (format!("{host}/app@sha256:123"), "64 lowercase hex"),
        ("bad_host:5000/app".to_owned(), "not a valid registry host"),
    ] {
        let run = regsweep(&["tags", &bad]);
        assert_eq!(run.code, 2, "{bad}: {run:#?}");
        assert!(run.stderr.contains(rule), "{bad}: {}", run.stderr);
    }

    let run = regsweep(&["inspect", &format!("{host}/app")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("expected a tag or digest"), "{}", run.stderr);

    let run = regsweep(&["frobnicate"]);
    assert_eq!(run.code, 2);

    // A closed port on loopback: the host and the cause are named.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let run = regsweep(&["repos", &closed.to_string()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("cannot reach registry {closed}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
}

async fn client_for(reg: &TestRegistry) -> Client {
    let addr = RegistryAddr::parse(&reg.host()).unwrap();
    Client::connect(&addr, ClientOptions::default()).await.unwrap()
}

#[tokio::test]
async fn method_not_allowed_says_what_is_disabled() {
    let reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let image = reg
        .client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let digest = Digest::parse(&image.digest).unwrap();
    let err = client_for(&reg)
        .await
        .delete_manifest(&Repository::parse("app").unwrap(), &digest)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::MethodNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("storage.delete.enabled"), "{err}");
    assert!(
        err.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"),
        "{err}"
    );
    assert!(
        reg.client().manifest_exists("app", "v1").await.unwrap(),
        "nothing was deleted"
    );

    let reg = TestRegistry::start(RegistryOptions::default().read_only())
        .await
        .unwrap();
    let err = client_for(&reg)
        .await
        .delete_manifest(&Repository::parse("app").unwrap(), &digest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test]
async fn manifests_are_verified_and_loopback_falls_back_to_http() {
    let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    let image = reg
        .client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let client = client_for(&reg).await;
    assert_eq!(
        client.base_url().scheme(),
        "http",
        "loopback without TLS falls back to HTTP"
    );
    let fetched = client
        .manifest(&Repository::parse("app").unwrap(), &Tag::parse("v1").unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.digest.as_str(), image.digest);
    assert_eq!(fetched.body, image.manifest);
    let head = client
        .manifest_head(&Repository::parse("app").unwrap(), &Tag::parse("v1").unwrap())
        .await
        .unwrap();
    assert_eq!(head.digest, fetched.digest);
    assert_eq!(head.size, Some(image.manifest.len() as u64));
    // A digest the body does not hash to is refused even if the registry served something.
    let by_digest = client
        .manifest(
            &Repository::parse("app").unwrap(),
            &Digest::parse(&image.digest).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(by_digest.digest, fetched.digest);
    let config = Digest::parse(&image.config.digest).unwrap();
    let blob = client
        .blob(&Repository::parse("app").unwrap(), &config, 1 << 20)
        .await
        .unwrap();
    assert_eq!(blob.len() as u64, image.config.size);
}

/// The real registry cannot be made to answer 503 or 429 on demand, so this one test uses a
/// minimal HTTP responder on loopback to check the retry loop end to end.
#[tokio::test]
async fn transient_errors_are_retried_with_a_bound() {
    fn serve(responses: Vec<&'static str>) -> (String, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let mut served = 0;
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                stream.write_all(response.as_bytes()).unwrap();
                served += 1;
            }
            served
        });
        (addr, handle)
    }
    const BUSY: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const LIMITED: &str = "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const OK: &str = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let fast = RetryPolicy {
        base_delay: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let options = ClientOptions {
        plain_http: true,
        retry: fast,
        ..ClientOptions::default()
    };

    let (addr, server) = serve(vec![BUSY, LIMITED, OK]);
    Client::connect(&RegistryAddr::parse(&addr).unwrap(), options.clone())
        .await
        .expect("third attempt succeeds");
    assert_eq!(server.join().unwrap(), 3);

    let (addr, server) = serve(vec![BUSY; 5]);
    let err = Client::connect(&RegistryAddr::parse(&addr).unwrap(), options)
        .await
        .err()
        .expect("gives up");
    assert_eq!(server.join().unwrap(), 5, "five attempts, no more");
    assert!(
        err.to_string().contains("503") && err.to_string().contains("after 5 attempts"),
        "{err}"
    );
}

#[test]
fn credentials_debug_is_redacted() {
    let creds = Credentials {
        username: "alice".into(),
        password: Secret::new(CANARY),
    };
    let options = ClientOptions {
        credentials: Some(creds),
        ..ClientOptions::default()
    };
    assert!(!format!("{options:?}").contains(CANARY));
}

/// Docker's recipe for a self-signed registry certificate makes one that is its own CA
/// (`basicConstraints CA:TRUE`); given with --ca-file it is trusted, as curl and skopeo trust it.
#[tokio::test]
async fn self_signed_certificate_that_is_its_own_ca() {
    let reg = TestRegistry::start(RegistryOptions::default().with_self_signed_tls())
        .await
        .unwrap();
    let other = TestRegistry::start(RegistryOptions::default().with_self_signed_tls())
        .await
        .unwrap();
    reg.client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let cert = reg.ca_cert_path().unwrap().to_str().unwrap().to_owned();
    let other_cert = other.ca_cert_path().unwrap().to_str().unwrap().to_owned();
    let target = format!("{}/app", reg.host());

    let run = regsweep(&["tags", "--ca-file", &cert, &target]);
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "v1");
    // skopeo, verifying TLS against the same certificate, agrees.
    assert_eq!(reg.skopeo_list_tags("app").await.unwrap(), ["v1"]);

    // Another self-signed certificate is no licence for this one.
    let run = regsweep(&["tags", "--ca-file", &other_cert, &target]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);

    // Without --ca-file, on loopback: the TLS cause is reported, not the plain-HTTP fallback's
    // "Client sent an HTTP request to an HTTPS server"; the hint comes once.
    let run = regsweep(&["tags", &target]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("HTTP request to an HTTPS server"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("http://"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("--ca-file").count(), 1, "{}", run.stderr);
}

/// Each cause appears once in an error line, and stderr has no colour codes when it is not a
/// terminal.
#[tokio::test]
async fn errors_say_each_cause_once() {
    let registry = LoopbackServer::start(|r| match r.path() {
        "/v2/" => CannedResponse::json(200, &serde_json::json!({})),
        _ => CannedResponse::new(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(b"{not json".to_vec()),
    })
    .unwrap();
    let run = regsweep(&["inspect", &format!("{}/app:v1", registry.host())]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr.matches("not valid JSON").count(), 1, "{}", run.stderr);

    // A malformed challenge is warned about once per response, without ANSI codes.
    let registry = LoopbackServer::start(|_| {
        CannedResponse::new(401).header("WWW-Authenticate", "Bearer realm=\"unterminated")
    })
    .unwrap();
    let run = regsweep(&["tags", &format!("{}/app", registry.host())]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        !run.stderr.contains('\u{1b}'),
        "colour codes on a pipe: {:?}",
        run.stderr
    );
    let warnings = run.stderr.lines().filter(|l| l.contains("WARN")).count();
    let responses = registry.requests().len();
    assert!(
        warnings >= 1 && warnings <= responses,
        "{warnings} warnings for {responses} responses: {}",
        run.stderr
    );

    // The 405 hint of a registry with deletes disabled, once.
    let reg = TestRegistry::start(RegistryOptions::default().delete_disabled())
        .await
        .unwrap();
    let image = reg
        .client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let run = regsweep(&["rm", &format!("{}/app@{}", reg.host(), image.digest)]);
    assert_eq!(run.code, 1, "{run:#?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(all.matches("storage.delete.enabled").count(), 1, "{run:#?}");
}

#[tokio::test]
async fn empty_username_variable_means_none() {
    let reg = TestRegistry::start(RegistryOptions::default()).await.unwrap();
    reg.client()
        .push_image("app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let run = regsweep_with(&["repos", &reg.host()], &[("REGSWEEP_USERNAME", "")], None);
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "app");
}

/// Garbage and foreign `Link` headers are errors that say what was wrong; catalog names the
/// distribution grammar rejects are skipped with a warning, never put into a URL.
#[tokio::test]
async fn links_and_catalog_names_are_checked() {
    for (link, expected) in [
        ("<<<>>>", "malformed Link header"),
        (r#"<<<>>>; rel="next""#, "malformed Link header"),
        (
            r#"<http://127.0.0.1:1/v2/_catalog?last=a>; rel="next""#,
            "127.0.0.1:1",
        ),
        (r#"</admin?last=a>; rel="next""#, "outside the registry API"),
    ] {
        let registry = LoopbackServer::start(move |r| match r.path() {
            "/v2/" => CannedResponse::json(200, &serde_json::json!({})),
            _ => CannedResponse::json(200, &serde_json::json!({"repositories": ["a"]})).header("Link", link),
        })
        .unwrap();
        let run = regsweep(&["repos", &registry.host()]);
        assert_eq!(run.code, 1, "{link}: {run:#?}");
        assert!(run.stderr.contains(expected), "{link}: {}", run.stderr);
        assert_eq!(registry.requests().len(), 2, "{link}: the link was not followed");
    }

    let names = ["app", "../../v2/other", "a?b", "c#d", "e%2Fx", "Upper", "ok/x"];
    let registry = LoopbackServer::start(move |r| match r.path() {
        "/v2/" => CannedResponse::json(200, &serde_json::json!({})),
        "/v2/_catalog" => CannedResponse::json(200, &serde_json::json!({ "repositories": names })),
        _ => CannedResponse::json(200, &serde_json::json!({"name": "x", "tags": []})),
    })
    .unwrap();
    let run = regsweep(&["repos", &registry.host()]);
    run.assert_ok();
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["app", "ok/x"],
        "{run:#?}"
    );
    for bad in &names[1..6] {
        assert!(run.stderr.contains(&format!("{bad:?}")), "{bad}: {}", run.stderr);
    }
    let run = regsweep(&["du", &registry.host()]);
    for request in registry.requests() {
        assert!(
            !["..", "?b", "#", "%", "Upper"]
                .iter()
                .any(|bad| request.target.contains(bad)),
            "a bad catalog name reached a URL: {} ({run:#?})",
            request.target
        );
    }
}

/// A repository that cannot be read makes `plan` fail, and says why on stderr (not only in the
/// plan on stdout), in every output format.
#[tokio::test]
async fn plan_read_errors_go_to_stderr() {
    let registry = LoopbackServer::start(|r| match r.path() {
        "/v2/" => CannedResponse::json(200, &serde_json::json!({})),
        "/v2/_catalog" => CannedResponse::json(200, &serde_json::json!({"repositories": ["app"]})),
        _ => CannedResponse::new(500).body(b"storage backend exploded".to_vec()),
    })
    .unwrap();
    let host = registry.host();
    for json in [false, true] {
        let mut args = vec!["plan", "--keep-newest", "1", "--attempts", "1", &host];
        if json {
            args.insert(0, "--json");
        }
        let run = regsweep(&args);
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            run.stderr.contains("app") && run.stderr.contains("storage backend exploded"),
            "{run:#?}"
        );
    }
}
