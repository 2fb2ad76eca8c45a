//! Authentication end to end: bearer tokens against the real registry configured with
//! `auth: token` and the harness's token server, credentials from docker's config.json, podman's
//! auth.json and credential helpers through the CLI, and canaries that prove credentials and
//! tokens go nowhere they do not belong and are never printed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Cli, Run};
use regsweep::digest::Digest;
use regsweep::reference::{RegistryAddr, Repository, Tag};
use regsweep::registry::{Advice, Client, ClientOptions, Credentials, RegistryError};
use regsweep_testkit::{
    CannedResponse, Grant, ImageSpec, LoopbackServer, RegistryOptions, TestRegistry, TokenField, TokenServer,
    TokenServerOptions, TokenUser,
};

fn repository(name: &str) -> Repository {
    Repository::parse(name).unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

const PASSWORD: &str = "canary-Tok3n-Pa55-5e1f";
const REFRESH: &str = "canary-refresh-token-77a0";

/// Full rights on `team/*` and the catalog.
fn alice() -> TokenUser {
    TokenUser::new(
        "alice",
        PASSWORD,
        vec![
            Grant::repos("team/*", &["pull", "push", "delete"]),
            Grant::catalog(),
        ],
    )
    .with_refresh_token(REFRESH)
}

/// Pull only, on `team/app`.
fn bob() -> TokenUser {
    TokenUser::new("bob", PASSWORD, vec![Grant::repos("team/app", &["pull"])])
}

async fn token_registry(opts: TokenServerOptions) -> (TokenServer, TestRegistry) {
    let tokens = TokenServer::start(opts).expect("token server starts");
    let reg = TestRegistry::start(RegistryOptions::default().with_token_auth(&tokens))
        .await
        .expect("registry starts");
    (tokens, reg)
}

async fn connect(host: &str, credentials: Option<Credentials>) -> Client {
    connect_with(
        host,
        ClientOptions {
            credentials,
            ..ClientOptions::default()
        },
    )
    .await
}

async fn connect_with(host: &str, options: ClientOptions) -> Client {
    Client::connect(&RegistryAddr::parse(host).unwrap(), options)
        .await
        .expect("connects")
}

fn requested(tokens: &TokenServer, user: Option<&str>) -> Vec<String> {
    tokens
        .issued_to(user)
        .iter()
        .map(|t| t.requested.join(" "))
        .collect()
}

#[tokio::test]
async fn bearer_tokens_carry_exact_scopes_and_are_shared() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(alice())).await;
    let pusher = reg.client();
    let mut digests = Vec::new();
    for i in 0..4 {
        let image = pusher
            .push_image("team/app", Some(&format!("v{i}")), &ImageSpec::seeded(i))
            .await
            .unwrap();
        digests.push(image.digest);
    }
    for i in 0..12 {
        pusher
            .push_image("team/other", Some(&format!("t{i}")), &ImageSpec::seeded(100 + i))
            .await
            .unwrap();
    }

    let client = connect(&reg.host(), Some(Credentials::new("alice", PASSWORD))).await;
    assert!(
        tokens.issued_to(Some("alice")).is_empty(),
        "the /v2/ probe needs no token"
    );

    let mut repos = client.catalog().await.unwrap();
    repos.sort();
    assert_eq!(repos, ["team/app", "team/other"]);
    assert_eq!(client.tags(&repository("team/app")).await.unwrap().len(), 4);
    for digest in &digests {
        let digest = Digest::parse(digest).unwrap();
        client.manifest(&repository("team/app"), &digest).await.unwrap();
    }

    // Twelve concurrent first requests for one new scope: one token fetch, not twelve.
    let other_tags: Vec<Tag> = (0..12).map(|i| Tag::parse(&format!("t{i}")).unwrap()).collect();
    let other = repository("team/other");
    let heads = other_tags.iter().map(|tag| client.manifest_head(&other, tag));
    for head in futures::future::join_all(heads).await {
        head.unwrap();
    }

    let doomed = Digest::parse(&digests[0]).unwrap();
    client
        .delete_manifest(&repository("team/app"), &doomed)
        .await
        .unwrap();
    assert!(!pusher.manifest_exists("team/app", "v0").await.unwrap());

    // Exactly one token per scope, each asking for exactly what the operation needs.
    assert_eq!(
        requested(&tokens, Some("alice")),
        [
            "registry:catalog:*",
            "repository:team/app:pull",
            "repository:team/other:pull",
            "repository:team/app:delete",
        ]
    );
    // Token requests are the documented GET form, with basic credentials and `account`.
    let token_requests: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.query_pairs().contains(&("account".into(), "alice".into())))
        .collect();
    assert_eq!(token_requests.len(), 4);
    for r in &token_requests {
        assert_eq!(r.method, "GET");
        assert!(r.header("authorization").unwrap().starts_with("Basic "));
        assert!(
            r.query_pairs()
                .contains(&("service".into(), tokens.service().into()))
        );
    }
}

#[tokio::test]
async fn partial_grants_name_the_missing_permission() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(bob())).await;
    let image = reg
        .client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let client = connect(&reg.host(), Some(Credentials::new("bob", PASSWORD))).await;
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);

    let digest = Digest::parse(&image.digest).unwrap();
    let err = client
        .delete_manifest(&repository("team/app"), &digest)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("user `bob` lacks permission `repository:team/app:delete`"),
        "{message}"
    );
    assert!(message.contains("granted nothing"), "{message}");
    assert!(message.contains(&tokens.realm()), "{message}");
    assert!(reg.client().manifest_exists("team/app", "v1").await.unwrap());

    let err = client
        .tags(&repository("team/secret"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lacks permission `repository:team/secret:pull`"),
        "{err}"
    );
    let err = client.catalog().await.unwrap_err().to_string();
    assert!(err.contains("lacks permission `registry:catalog:*`"), "{err}");
    // The token server was asked for exactly the scopes, and answered with partial grants.
    let issued = tokens.issued_to(Some("bob"));
    assert_eq!(issued.len(), 4, "{issued:#?}");
    assert_eq!(issued[0].granted, ["repository:team/app:pull"]);
    assert!(issued[1..].iter().all(|t| t.granted.is_empty()));
}

#[tokio::test]
async fn tokens_are_renewed_during_long_runs() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(alice()).expires_in(2)).await;
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let client = connect(&reg.host(), Some(Credentials::new("alice", PASSWORD))).await;
    client.tags(&repository("team/app")).await.unwrap();
    client
        .manifest_head(&repository("team/app"), &tag("v1"))
        .await
        .unwrap();
    assert_eq!(tokens.issued_to(Some("alice")).len(), 1, "reused while fresh");

    // Five seconds of requests with two-second tokens: renewed before each expiry (at 1.5 s),
    // and no request ever fails.
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(5) {
        client
            .manifest_head(&repository("team/app"), &tag("v1"))
            .await
            .unwrap();
        requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let issued = tokens.issued_to(Some("alice")).len();
    assert!(
        (4..=6).contains(&issued),
        "{issued} tokens for {requests} requests"
    );
    assert!(requests > 20);
}

#[tokio::test]
async fn refused_tokens_are_replaced_once_then_explained() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(alice())).await;
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let client = connect(&reg.host(), Some(Credentials::new("alice", PASSWORD))).await;

    // One token signed by a key the registry does not trust: refused as invalid_token, replaced.
    tokens.issue_untrusted(1);
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);
    let issued = tokens.issued_to(Some("alice"));
    assert_eq!(issued.len(), 2);
    assert!(issued[0].untrusted && !issued[1].untrusted);

    // A token server whose every token is refused (for a scope not cached yet): one
    // replacement, then a clear error.
    tokens.issue_untrusted(10);
    let err = client
        .delete_manifest(&repository("team/app"), &Digest::sha256(b"absent"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refuses the tokens issued by"), "{err}");
    assert!(err.contains("invalid_token"), "{err}");
    assert_eq!(tokens.issued_to(Some("alice")).len(), 4);
}

#[tokio::test]
async fn token_server_refusals_are_explained() {
    let opts = TokenServerOptions::default()
        .user(alice())
        .anonymous(vec![Grant::repos("public/*", &["pull"])]);
    let (tokens, reg) = token_registry(opts).await;
    let pusher = reg.client();
    pusher
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    pusher
        .push_image("public/app", Some("p1"), &ImageSpec::seeded(2))
        .await
        .unwrap();

    let wrong = format!("{PASSWORD}-wrong");
    let client = connect(&reg.host(), Some(Credentials::new("alice", &wrong))).await;
    let err = client
        .tags(&repository("team/app"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("rejected user `alice`"), "{err}");
    assert!(err.contains("check the username and password"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    tokens.deny("alice");
    let client = connect(&reg.host(), Some(Credentials::new("alice", PASSWORD))).await;
    let err = client
        .tags(&repository("team/app"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused user `alice` access to `repository:team/app:pull` (403"),
        "{err}"
    );
    tokens.allow("alice");
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);

    // Anonymous: public repositories work without credentials; private ones say how to log in.
    let before = tokens.requests().len();
    let anonymous = connect(&reg.host(), None).await;
    assert_eq!(anonymous.tags(&repository("public/app")).await.unwrap(), ["p1"]);
    let err = anonymous
        .tags(&repository("team/app"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("anonymous access lacks permission `repository:team/app:pull`"),
        "{err}"
    );
    assert!(err.contains("docker login"), "{err}");
    assert_eq!(requested(&tokens, None).len(), 2);
    let anonymous_requests = &tokens.requests()[before..];
    assert_eq!(anonymous_requests.len(), 2);
    assert!(
        anonymous_requests
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "anonymous token requests carry no credentials"
    );
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_form_and_access_token_is_accepted() {
    let opts = TokenServerOptions::default()
        .user(alice())
        .field(TokenField::AccessToken);
    let (tokens, reg) = token_registry(opts).await;
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();

    // A password: the GET form, answered with `access_token` only.
    let client = connect(&reg.host(), Some(Credentials::new("alice", PASSWORD))).await;
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);

    // An identity token: the OAuth2 POST with grant_type=refresh_token, never basic auth.
    let client = connect(&reg.host(), Some(Credentials::identity_token(REFRESH))).await;
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);
    let posts: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    let form = posts[0].form_pairs();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("refresh_token"));
    assert_eq!(field("refresh_token"), Some(REFRESH));
    assert_eq!(field("scope"), Some("repository:team/app:pull"));
    assert_eq!(field("service"), Some(tokens.service()));
    assert!(field("client_id").is_some_and(|c| c.starts_with("regsweep")));
    assert!(posts[0].header("authorization").is_none());

    // A revoked identity token says so.
    let client = connect(&reg.host(), Some(Credentials::identity_token("revoked"))).await;
    let err = client
        .tags(&repository("team/app"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the identity token") && err.contains("log in again"),
        "{err}"
    );
}

/// Quay asks for `pull,push` (in an `insufficient_scope` challenge) where distribution asks for
/// `delete`. The real registry cannot be made to do that, so a stand-in checks the tokens the
/// real token server issued.
#[tokio::test]
async fn a_wider_scope_the_registry_asks_for_is_requested_and_remembered() {
    let tokens = Arc::new(
        TokenServer::start(TokenServerOptions::default().user(alice())).expect("token server starts"),
    );
    let issuer = tokens.clone();
    let registry = LoopbackServer::start(move |r| {
        let challenge = |scope: Option<&str>, error: Option<&str>| {
            let mut c = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                issuer.realm(),
                issuer.service()
            );
            if let Some(scope) = scope {
                c.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(error) = error {
                c.push_str(&format!(",error=\"{error}\""));
            }
            CannedResponse::new(401).header("WWW-Authenticate", &c)
        };
        let presented = r
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_owned);
        let granted: BTreeSet<String> = presented
            .as_ref()
            .and_then(|p| issuer.issued().into_iter().find(|t| &t.token == p))
            .map(|t| t.granted)
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g.strip_prefix("repository:team/app:"))
            .flat_map(|actions| actions.split(',').map(str::to_owned))
            .collect();
        match (r.method.as_str(), r.path()) {
            ("GET", "/v2/") if presented.is_none() => challenge(None, None),
            ("GET", "/v2/") => CannedResponse::json(200, &serde_json::json!({})),
            ("DELETE", path) if path.starts_with("/v2/team/app/manifests/") => {
                let wanted = ["pull", "push", "delete"];
                if wanted.iter().all(|a| granted.contains(*a)) {
                    CannedResponse::new(202)
                } else if presented.is_none() {
                    challenge(Some("repository:team/app:pull,push,delete"), None)
                } else {
                    challenge(
                        Some("repository:team/app:pull,push,delete"),
                        Some("insufficient_scope"),
                    )
                }
            }
            _ => CannedResponse::new(404),
        }
    })
    .unwrap();
    let client = connect(&registry.host(), Some(Credentials::new("alice", PASSWORD))).await;
    let digest = Digest::sha256(b"any manifest");
    client
        .delete_manifest(&repository("team/app"), &digest)
        .await
        .unwrap();
    client
        .delete_manifest(&repository("team/app"), &digest)
        .await
        .unwrap();
    let deletes = registry
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(
        deletes, 3,
        "one refused attempt, then the wider scope is used at once"
    );
    assert_eq!(
        requested(&tokens, Some("alice")),
        [
            "repository:team/app:delete",
            "repository:team/app:delete,pull,push"
        ]
    );
}

/// Bad challenges are errors with the reason, never panics.
#[tokio::test]
async fn malformed_challenges_are_errors() {
    for (header, expected) in [
        (
            r#"Bearer realm="unterminated"#,
            "offered neither basic nor bearer",
        ),
        (r#"Bearer service="x""#, "the Bearer challenge has no realm"),
        (
            r#"Bearer realm="ftp://x/token""#,
            "only http:// and https:// token realms",
        ),
        (r#"Bearer realm="/token""#, "not an absolute URL"),
    ] {
        let registry =
            LoopbackServer::start(move |_| CannedResponse::new(401).header("WWW-Authenticate", header))
                .unwrap();
        let client = connect(&registry.host(), Some(Credentials::new("alice", PASSWORD))).await;
        let err = client.tags(&repository("team/app")).await.unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
        assert!(err.to_string().contains(expected), "{header}: {err}");
    }
}

/// A registry that wants basic auth and sends blob downloads to another host (as registries on
/// object storage do), and its "object storage": a canary that records what it receives.
#[tokio::test]
async fn redirects_and_links_to_other_hosts_never_receive_credentials() {
    let blob = b"layer bytes in object storage".to_vec();
    let digest = Digest::sha256(&blob);
    let served = blob.clone();
    let canary = LoopbackServer::start(move |_| CannedResponse::new(200).body(served.clone())).unwrap();

    for scheme in ["basic", "bearer"] {
        let tokens = TokenServer::start(TokenServerOptions::default().user(alice())).unwrap();
        let (target, realm, service) = (canary.base_url(), tokens.realm(), tokens.service().to_owned());
        let digest_path = format!("/v2/app/blobs/{digest}");
        let registry = LoopbackServer::start(move |r| {
            let authorized = match (scheme, r.header("authorization")) {
                ("basic", Some(h)) => h.starts_with("Basic "),
                ("bearer", Some(h)) => h.starts_with("Bearer "),
                _ => false,
            };
            if !authorized {
                let challenge = if scheme == "basic" {
                    "Basic realm=\"r\"".to_owned()
                } else {
                    format!("Bearer realm=\"{realm}\",service=\"{service}\"")
                };
                return CannedResponse::new(401).header("WWW-Authenticate", &challenge);
            }
            match r.path() {
                "/v2/" => CannedResponse::json(200, &serde_json::json!({})),
                p if p == digest_path => {
                    CannedResponse::new(307).header("Location", &format!("{target}/bucket/blob?sig=x"))
                }
                "/v2/app/tags/list" => {
                    CannedResponse::json(200, &serde_json::json!({"name": "app", "tags": ["a"]})).header(
                        "Link",
                        &format!("<{target}/v2/app/tags/list?last=a>; rel=\"next\""),
                    )
                }
                _ => CannedResponse::new(404),
            }
        })
        .unwrap();
        let client = connect(&registry.host(), Some(Credentials::new("alice", PASSWORD))).await;
        let before = canary.requests().len();
        assert_eq!(
            client.blob(&repository("app"), &digest, 1 << 20).await.unwrap(),
            blob
        );
        let after = canary.requests();
        assert_eq!(after.len(), before + 1, "{scheme}: the redirect was followed");
        assert_eq!(after[before].path(), "/bucket/blob");
        assert!(
            canary.authorized_requests().is_empty(),
            "{scheme}: credentials went to the redirect target: {:?}",
            canary.authorized_requests()
        );
        // The registry itself did get them: the canary's silence means something.
        assert!(!registry.authorized_requests().is_empty());

        // A `Link` to another host is refused before anything is sent there.
        let err = client.tags(&repository("app")).await.unwrap_err().to_string();
        assert!(err.contains("points to another host"), "{err}");
        assert_eq!(
            canary.requests().len(),
            before + 1,
            "{scheme}: the Link was not followed"
        );
    }
}

/// A TLS registry naming a plain-HTTP token realm: the password does not go there unless
/// insecure auth is allowed.
#[tokio::test]
async fn plain_http_realms_of_tls_registries_get_no_credentials() {
    let tokens = TokenServer::start(TokenServerOptions::default().user(alice())).unwrap();
    let reg = TestRegistry::start(RegistryOptions::default().with_tls().with_token_auth(&tokens))
        .await
        .unwrap();
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let ca = reg.ca_cert_path().unwrap().to_owned();
    let options = |allow_insecure_auth| ClientOptions {
        credentials: Some(Credentials::new("alice", PASSWORD)),
        ca_files: vec![ca.clone()],
        allow_insecure_auth,
        ..ClientOptions::default()
    };
    let host = format!("https://{}", reg.host());
    let before = tokens.requests().len();
    let client = connect_with(&host, options(false)).await;
    let err = client.tags(&repository("team/app")).await.unwrap_err();
    assert_eq!(err.advice(), Some(Advice::AllowInsecureAuth), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("refusing to send credentials to the token server"),
        "{err}"
    );
    assert_eq!(tokens.requests().len(), before, "nothing was sent to the realm");

    let client = connect_with(&host, options(true)).await;
    assert_eq!(client.tags(&repository("team/app")).await.unwrap(), ["v1"]);
    assert_eq!(tokens.issued_to(Some("alice")).len(), 1);
}

// ---- the CLI, with credentials where docker and podman keep them ---------------------------------

/// Runs the binary with `HOME` = `home` and no inherited credential variables.
fn run(args: &[&str], home: &Path, env: &[(&str, &str)]) -> Run {
    Cli::new(args).home(home).envs(env).run()
}

fn base64(data: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn auths(host: &str, user: &str, password: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": base64(&format!("{user}:{password}"))}}}).to_string()
}

/// Puts `docker-credential-NAME` into `bin`: it logs each call to `log` and answers for `host`
/// with alice's credentials, "not found" for anything else.
fn install_helper(bin: &Path, name: &str, host: &str, log: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let script = format!(
        "#!/bin/sh\nread -r server || true\necho \"$1 $server\" >> '{log}'\n\
         if [ \"$server\" = '{host}' ]; then\n\
           printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
         else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        log = log.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::create_dir_all(bin).unwrap();
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn cli_finds_credentials_where_docker_and_podman_put_them() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(alice())).await;
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let host = reg.host();
    let target = format!("{host}/team/app");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ok = |run: &Run, what: &str| {
        assert_eq!(run.code, 0, "{what}: {run:#?}");
        assert_eq!(run.stdout.trim(), "v1", "{what}: {run:#?}");
    };
    let rejected = |run: &Run, who: &str, what: &str| {
        assert_eq!(run.code, 1, "{what}: {run:#?}");
        assert!(run.stderr.contains(who), "{what}: {}", run.stderr);
    };

    // Nothing stored: anonymous, refused, with advice.
    let anonymous = run(&["tags", &target], &home, &[]);
    rejected(&anonymous, "rejected anonymous access", "no credentials");
    assert!(anonymous.stderr.contains("docker login"), "{}", anonymous.stderr);

    // ~/.docker/config.json `auths`.
    write(
        &home.join(".docker/config.json"),
        &auths(&host, "alice", PASSWORD),
    );
    ok(&run(&["tags", &target], &home, &[]), "docker config.json");

    // DOCKER_CONFIG moves it.
    let docker_dir = dir.path().join("docker-elsewhere");
    write(
        &docker_dir.join("config.json"),
        &auths(&format!("http://{host}"), "alice", PASSWORD),
    );
    std::fs::remove_file(home.join(".docker/config.json")).unwrap();
    let docker_env = [("DOCKER_CONFIG", docker_dir.to_str().unwrap())];
    ok(&run(&["tags", &target], &home, &docker_env), "DOCKER_CONFIG");

    // Podman's auth.json in $XDG_RUNTIME_DIR comes before docker's file: wrong credentials
    // there win (and are named in the error).
    let runtime = dir.path().join("runtime");
    write(
        &runtime.join("containers/auth.json"),
        &auths(&host, "mallory", "nope"),
    );
    let env = [
        ("DOCKER_CONFIG", docker_dir.to_str().unwrap()),
        ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
    ];
    rejected(
        &run(&["tags", &target], &home, &env),
        "rejected user `mallory`",
        "auth.json first",
    );
    // ... and the environment comes before every file.
    let mut with_env = env.to_vec();
    with_env.extend([("REGSWEEP_USERNAME", "alice"), ("REGSWEEP_PASSWORD", PASSWORD)]);
    ok(&run(&["tags", &target], &home, &with_env), "environment first");
    // ... and --username/--password-stdin before the environment.
    let wrong_env = [("REGSWEEP_USERNAME", "mallory"), ("REGSWEEP_PASSWORD", "nope")];
    ok(
        &Cli::new(&["tags", "-u", "alice", "--password-stdin", &target])
            .home(&home)
            .envs(&wrong_env)
            .stdin(&format!("{PASSWORD}\n"))
            .run(),
        "flags first",
    );

    // REGISTRY_AUTH_FILE / --authfile: that file only.
    let authfile = dir.path().join("explicit-auth.json");
    write(&authfile, &auths(&host, "alice", PASSWORD));
    let mut with_authfile = env.to_vec();
    with_authfile.push(("REGISTRY_AUTH_FILE", authfile.to_str().unwrap()));
    ok(
        &run(&["tags", &target], &home, &with_authfile),
        "REGISTRY_AUTH_FILE",
    );
    ok(
        &run(
            &["tags", "--authfile", authfile.to_str().unwrap(), &target],
            &home,
            &env,
        ),
        "--authfile",
    );
    let run_missing = run(
        &["tags", "--authfile", "/nonexistent/auth.json", &target],
        &home,
        &[],
    );
    assert_eq!(run_missing.code, 2, "{run_missing:#?}");

    // --no-creds: nothing is looked up or sent.
    let mut no_creds_env = with_authfile.clone();
    no_creds_env.extend([("REGSWEEP_USERNAME", "alice"), ("REGSWEEP_PASSWORD", PASSWORD)]);
    let before = tokens.requests().len();
    rejected(
        &run(&["tags", "--no-creds", &target], &home, &no_creds_env),
        "rejected anonymous access",
        "--no-creds",
    );
    assert!(
        tokens.requests()[before..]
            .iter()
            .all(|r| r.header("authorization").is_none())
    );

    // Credential helpers: credHelpers for the host, credsStore for every host.
    let bin = dir.path().join("bin");
    let log = dir.path().join("helper.log");
    install_helper(&bin, "regsweeptest", &host, &log);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let helper_home = dir.path().join("helper-home");
    for config in [
        serde_json::json!({"credHelpers": {&host: "regsweeptest"}}),
        serde_json::json!({"credsStore": "regsweeptest", "auths": {&host: {}}}),
    ] {
        write(&helper_home.join(".docker/config.json"), &config.to_string());
        ok(
            &run(&["tags", &target], &helper_home, &[("PATH", &path)]),
            &config.to_string(),
        );
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.matches(&format!("get {host}\n")).count(), 2, "{calls}");

    // A helper that is not installed is named, with what to do.
    write(
        &helper_home.join(".docker/config.json"),
        &serde_json::json!({"credHelpers": {&host: "notinstalled"}}).to_string(),
    );
    let run_helper = run(&["tags", &target], &helper_home, &[("PATH", &path)]);
    assert_eq!(run_helper.code, 1, "{run_helper:#?}");
    assert!(
        run_helper
            .stderr
            .contains("docker-credential-notinstalled is not on PATH"),
        "{}",
        run_helper.stderr
    );

    // An identitytoken from `docker login` goes through the OAuth2 refresh form.
    let id_home = dir.path().join("id-home");
    write(
        &id_home.join(".docker/config.json"),
        &serde_json::json!({"auths": {&host: {"auth": base64("alice:"), "identitytoken": REFRESH}}})
            .to_string(),
    );
    ok(&run(&["tags", &target], &id_home, &[]), "identitytoken");
    assert!(tokens.requests().iter().any(|r| r.method == "POST"));
}

/// The canary test of the foundation, extended to tokens: at the most verbose logging, neither
/// the password, the identity token nor any issued bearer token is printed, on success or
/// failure.
#[tokio::test]
async fn secrets_and_tokens_never_appear_in_output() {
    let (tokens, reg) = token_registry(TokenServerOptions::default().user(alice()).user(bob())).await;
    reg.client()
        .push_image("team/app", Some("v1"), &ImageSpec::seeded(1))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = reg.host();
    let target = format!("{host}/team/app");
    let trace = [("REGSWEEP_LOG", "trace")];
    let mut runs = Vec::new();
    for (user, args) in [
        ("alice", vec!["-vvv", "tags", "--long", &target]),
        ("alice", vec!["-vvv", "repos", &host]),
        ("bob", vec!["-vvv", "inspect", &format!("{target}:v1")]),
        ("bob", vec!["-vvv", "repos", &host]),
    ] {
        let mut env = trace.to_vec();
        env.extend([("REGSWEEP_USERNAME", user), ("REGSWEEP_PASSWORD", PASSWORD)]);
        runs.push(run(&args, dir.path(), &env));
    }
    let id_home = dir.path().join("id");
    write(
        &id_home.join(".docker/config.json"),
        &serde_json::json!({"auths": {&host: {"identitytoken": REFRESH}}}).to_string(),
    );
    runs.push(run(&["-vvv", "tags", &target], &id_home, &trace));
    assert_eq!(runs[0].code, 0, "{:#?}", runs[0]);
    assert_eq!(runs[1].code, 0, "{:#?}", runs[1]);
    assert_eq!(runs[2].code, 0, "{:#?}", runs[2]);
    assert_eq!(runs[3].code, 1, "bob may not list the catalog: {:#?}", runs[3]);
    assert!(
        runs[3].stderr.contains("lacks permission `registry:catalog:*`"),
        "{}",
        runs[3].stderr
    );
    assert_eq!(runs[4].code, 0, "{:#?}", runs[4]);

    let issued = tokens.issued();
    assert!(issued.len() >= 5, "{issued:#?}");
    for run in &runs {
        assert!(run.stderr.len() > 200, "trace logging produced output: {run:#?}");
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(!output.contains(PASSWORD), "password printed: {run:#?}");
        assert!(!output.contains(REFRESH), "identity token printed: {run:#?}");
        for token in &issued {
            // The signature part alone is unique to the token.
            let signature = token.token.rsplit('.').next().unwrap();
            assert!(!output.contains(signature), "bearer token printed: {run:#?}");
        }
    }
}
