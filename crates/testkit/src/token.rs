//! A token server for `auth: token` registries (distribution's `spec/auth/token.md` and
//! `oauth.md`), on `127.0.0.1`, issuing JWTs that distribution 2.8 accepts.
//!
//! distribution 2.8 (`registry/auth/token/token.go`) checks `iss` against `auth.token.issuer`,
//! `aud` against `auth.token.service`, `exp`/`nbf` (with 60 s of leeway), the signature, and
//! takes the signing key from the JWT header: `x5c` (a certificate chain verified against
//! `rootcertbundle`), `jwk`, or `kid` (a libtrust key fingerprint). This server uses `x5c` with its
//! leaf certificate, signed by a CA written to the bundle file: no libtrust fingerprints needed.
//! Tokens are ES256 (ECDSA P-256, the `r || s` signature form JWS requires).
//!
//! Per-user grants decide what a token allows (the intersection of what was asked and what the
//! rules allow, as real token servers do, so a partial grant is a 200 with fewer actions).
//! Lifetimes are configurable (short ones exercise renewal), every token issued is counted and
//! kept for leak checks, users can be denied at run time, and the next tokens can be signed with a
//! key the registry does not trust (to exercise "invalid_token" handling).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tempfile::TempDir;

use crate::loopback::{CannedResponse, LoopbackServer, RecordedRequest};

/// What the server may grant: `actions` on resources of `resource_type` whose name matches
/// `pattern` (`*` matches any run of characters, `/` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource_type: String,
    pub pattern: String,
    pub actions: Vec<String>,
}

impl Grant {
    /// `actions` (or `["*"]` for all) on repositories matching `pattern`.
    pub fn repos(pattern: &str, actions: &[&str]) -> Self {
        Self {
            resource_type: "repository".into(),
            pattern: pattern.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Self {
            resource_type: "registry".into(),
            pattern: "catalog".into(),
            actions: vec!["*".into()],
        }
    }
}

/// A user of the token server.
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub name: String,
    pub password: String,
    pub grants: Vec<Grant>,
    /// An identity (refresh) token that the OAuth2 `grant_type=refresh_token` form accepts for
    /// this user, as `docker login` stores one in `identitytoken`.
    pub refresh_token: Option<String>,
}

impl TokenUser {
    pub fn new(name: &str, password: &str, grants: Vec<Grant>) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            grants,
            refresh_token: None,
        }
    }

    pub fn with_refresh_token(mut self, token: &str) -> Self {
        self.refresh_token = Some(token.into());
        self
    }
}

/// Which field carries the token in GET responses (token.md allows either or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenField {
    Token,
    AccessToken,
    Both,
}

/// How a [`TokenServer`] behaves.
#[derive(Debug, Clone)]
pub struct TokenServerOptions {
    /// `aud` of the tokens and the registry's `auth.token.service`.
    pub service: String,
    /// `iss` of the tokens and the registry's `auth.token.issuer`.
    pub issuer: String,
    /// `expires_in` of every token, seconds.
    pub expires_in: u64,
    pub users: Vec<TokenUser>,
    /// Grants for requests without credentials; `None` refuses them (401).
    pub anonymous: Option<Vec<Grant>>,
    pub field: TokenField,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        Self {
            service: "regsweep-testkit-registry".into(),
            issuer: "regsweep-testkit-token-server".into(),
            expires_in: 300,
            users: Vec::new(),
            anonymous: None,
            field: TokenField::Token,
        }
    }
}

impl TokenServerOptions {
    pub fn user(mut self, user: TokenUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn anonymous(mut self, grants: Vec<Grant>) -> Self {
        self.anonymous = Some(grants);
        self
    }

    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = seconds;
        self
    }

    pub fn field(mut self, field: TokenField) -> Self {
        self.field = field;
        self
    }
}

/// A token the server issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// `None` for anonymous requests; the user name otherwise.
    pub user: Option<String>,
    /// `GET` (token.md) or `POST` (OAuth2 form).
    pub method: String,
    /// The scopes asked for, as sent.
    pub requested: Vec<String>,
    /// The scopes granted, `type:name:actions`.
    pub granted: Vec<String>,
    /// The token itself (for "never printed" checks).
    pub token: String,
    /// Signed with the untrusted key.
    pub untrusted: bool,
}

struct Signer {
    key: EcdsaKeyPair,
    /// The leaf certificate, base64 DER, for the `x5c` header.
    x5c: String,
}

struct State {
    opts: TokenServerOptions,
    trusted: Signer,
    untrusted: Signer,
    rng: SystemRandom,
    denied: Mutex<HashSet<String>>,
    untrusted_next: AtomicU32,
    issued: Mutex<Vec<IssuedToken>>,
    counter: AtomicU64,
}

/// The running token server. Dropping it stops it and removes its files.
pub struct TokenServer {
    state: Arc<State>,
    server: LoopbackServer,
    bundle: PathBuf,
    admin: (String, String),
    _dir: TempDir,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .field("service", &self.state.opts.service)
            .finish()
    }
}

/// The built-in user with every permission; the harness pushes fixtures with it.
pub const ADMIN_USER: &str = "testkit-admin";

impl TokenServer {
    /// Writes the signing CA to a bundle file and starts serving on a free loopback port.
    pub fn start(opts: TokenServerOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("regsweep-testkit-token-")
            .tempdir()
            .context("creating the token server's temp dir")?;
        let (trusted, ca_pem) = make_signer(true)?;
        let (untrusted, _) = make_signer(false)?;
        let bundle = dir.path().join("token-ca.pem");
        std::fs::write(&bundle, ca_pem).context("writing the token CA bundle")?;
        let admin_password = format!(
            "admin-{:016x}",
            crate::image::mix(now_secs() as u64, u64::from(std::process::id()))
        );
        let mut opts = opts;
        opts.users.push(TokenUser::new(
            ADMIN_USER,
            &admin_password,
            vec![Grant::repos("*", &["*"]), Grant::catalog()],
        ));
        let state = Arc::new(State {
            opts,
            trusted,
            untrusted,
            rng: SystemRandom::new(),
            denied: Mutex::new(HashSet::new()),
            untrusted_next: AtomicU32::new(0),
            issued: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = LoopbackServer::start(move |request| handle(&handler_state, request))?;
        Ok(Self {
            state,
            server,
            bundle,
            admin: (ADMIN_USER.to_owned(), admin_password),
            _dir: dir,
        })
    }

    /// The realm URL: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.base_url())
    }

    pub fn service(&self) -> &str {
        &self.state.opts.service
    }

    pub fn issuer(&self) -> &str {
        &self.state.opts.issuer
    }

    /// PEM of the CA that signs the token signer's certificate: `auth.token.rootcertbundle`.
    pub fn root_cert_bundle(&self) -> &Path {
        &self.bundle
    }

    /// The built-in user with every permission.
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0, &self.admin.1)
    }

    /// Every HTTP request received (with headers, for "credentials went here or not" checks).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Every token issued, in order.
    pub fn issued(&self) -> Vec<IssuedToken> {
        self.state
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tokens issued to `user` (`None`: anonymous).
    pub fn issued_to(&self, user: Option<&str>) -> Vec<IssuedToken> {
        self.issued()
            .into_iter()
            .filter(|t| t.user.as_deref() == user)
            .collect()
    }

    /// From now on, answer `user`'s requests with 403.
    pub fn deny(&self, user: &str) {
        self.state
            .denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned());
    }

    pub fn allow(&self, user: &str) {
        self.state
            .denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }

    /// Sign the next `count` tokens with a key the registry does not trust.
    pub fn issue_untrusted(&self, count: u32) {
        self.state.untrusted_next.store(count, Ordering::SeqCst);
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A P-256 signing key with a certificate: issued by a fresh CA (returned as PEM) when
/// `with_ca`, else self-signed and trusted by nobody.
fn make_signer(with_ca: bool) -> Result<(Signer, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let leaf_key = KeyPair::generate().context("generating the token signing key")?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "regsweep-testkit token signer");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let (leaf_cert, ca_pem) = if with_ca {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "regsweep-testkit token CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().context("generating the token CA key")?;
        let ca_cert = ca.self_signed(&ca_key).context("self-signing the token CA")?;
        let issuer = Issuer::new(ca, ca_key);
        let cert = leaf
            .signed_by(&leaf_key, &issuer)
            .context("signing the token signer certificate")?;
        (cert, ca_cert.pem())
    } else {
        (
            leaf.self_signed(&leaf_key).context("self-signing")?,
            String::new(),
        )
    };
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &leaf_key.serialize_der(), &rng)
        .map_err(|e| anyhow::anyhow!("ring rejected the rcgen key: {e}"))?;
    let signer = Signer {
        key,
        x5c: STANDARD.encode(leaf_cert.der()),
    };
    Ok((signer, ca_pem))
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn sign_jwt(signer: &Signer, rng: &SystemRandom, claims: &serde_json::Value) -> Result<String> {
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [signer.x5c]});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = signer
        .key
        .sign(rng, input.as_bytes())
        .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?;
    Ok(format!("{input}.{}", b64(signature.as_ref())))
}

/// A parsed `type:name:actions` scope.
struct Wanted {
    resource_type: String,
    name: String,
    actions: Vec<String>,
}

fn parse_scope(text: &str) -> Option<Wanted> {
    let (resource_type, rest) = text.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if resource_type.is_empty() || name.is_empty() {
        return None;
    }
    Some(Wanted {
        resource_type: resource_type.to_owned(),
        name: name.to_owned(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(after) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=after.len())
                .filter(|i| after.is_char_boundary(*i))
                .any(|i| glob_match(rest, &after[i..]))
        }
    }
}

/// The actions of `wanted` that `grants` allow.
fn allowed(grants: &[Grant], wanted: &Wanted) -> Vec<String> {
    let mut allowed_actions: Vec<&str> = Vec::new();
    for grant in grants {
        if grant.resource_type == wanted.resource_type && glob_match(&grant.pattern, &wanted.name) {
            allowed_actions.extend(grant.actions.iter().map(String::as_str));
        }
    }
    wanted
        .actions
        .iter()
        .filter(|a| allowed_actions.contains(&"*") || allowed_actions.contains(&a.as_str()))
        .cloned()
        .collect()
}

fn error(status: u16, code: &str, message: &str) -> CannedResponse {
    CannedResponse::json(status, &json!({"errors": [{"code": code, "message": message}]}))
}

fn basic_credentials(request: &RecordedRequest) -> Option<Option<(String, String)>> {
    let header = request.header("authorization")?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "));
    let decoded = encoded
        .and_then(|e| STANDARD.decode(e.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok());
    Some(decoded.and_then(|text| text.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))))
}

fn handle(state: &State, request: &RecordedRequest) -> CannedResponse {
    if request.path() != "/token" {
        return error(404, "NOT_FOUND", "the token endpoint is /token");
    }
    let opts = &state.opts;
    // Who is asking, and for what.
    let (user, service, scopes, oauth): (Option<&TokenUser>, Option<String>, Vec<String>, bool) =
        match request.method.as_str() {
            "GET" => {
                let query = request.query_pairs();
                let service = query.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
                let scopes = query
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
                    .collect();
                let user = match basic_credentials(request) {
                    None => None,
                    Some(None) => return error(400, "BAD_REQUEST", "malformed basic credentials"),
                    Some(Some((name, password))) => {
                        match opts
                            .users
                            .iter()
                            .find(|u| u.name == name && u.password == password)
                        {
                            Some(user) => Some(user),
                            None => {
                                return error(401, "UNAUTHORIZED", "invalid username or password")
                                    .header("WWW-Authenticate", "Basic realm=\"token\"");
                            }
                        }
                    }
                };
                (user, service, scopes, false)
            }
            "POST" => {
                let form = request.form_pairs();
                let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                if field("client_id").is_none_or(|c| c.is_empty()) {
                    return CannedResponse::json(
                        400,
                        &json!({"error": "invalid_request", "error_description": "client_id is required"}),
                    );
                }
                let user = match field("grant_type").as_deref() {
                    Some("refresh_token") => {
                        let token = field("refresh_token").unwrap_or_default();
                        opts.users
                            .iter()
                            .find(|u| !token.is_empty() && u.refresh_token.as_deref() == Some(token.as_str()))
                    }
                    Some("password") => {
                        let (name, password) = (field("username"), field("password"));
                        opts.users.iter().find(|u| {
                            Some(&u.name) == name.as_ref() && Some(&u.password) == password.as_ref()
                        })
                    }
                    _ => {
                        return CannedResponse::json(400, &json!({"error": "unsupported_grant_type"}));
                    }
                };
                let Some(user) = user else {
                    return CannedResponse::json(
                        401,
                        &json!({"error": "invalid_grant", "error_description": "unknown refresh token or credentials"}),
                    );
                };
                let scopes = field("scope")
                    .unwrap_or_default()
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                (Some(user), field("service"), scopes, true)
            }
            _ => return error(405, "UNSUPPORTED", "GET or POST"),
        };
    if service.as_deref() != Some(opts.service.as_str()) {
        return error(
            400,
            "BAD_REQUEST",
            &format!(
                "unknown service {service:?}; this server issues tokens for {:?}",
                opts.service
            ),
        );
    }
    let grants: &[Grant] = match user {
        Some(user) => {
            if state
                .denied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&user.name)
            {
                return error(403, "DENIED", &format!("user {} is denied", user.name));
            }
            &user.grants
        }
        None => match &opts.anonymous {
            Some(grants) => grants,
            None => {
                return error(401, "UNAUTHORIZED", "anonymous access is not allowed")
                    .header("WWW-Authenticate", "Basic realm=\"token\"");
            }
        },
    };
    let mut access = Vec::new();
    let mut granted_text = Vec::new();
    for scope in &scopes {
        let Some(wanted) = parse_scope(scope) else {
            return error(400, "BAD_REQUEST", &format!("malformed scope {scope:?}"));
        };
        let actions = allowed(grants, &wanted);
        if !actions.is_empty() {
            granted_text.push(format!(
                "{}:{}:{}",
                wanted.resource_type,
                wanted.name,
                actions.join(",")
            ));
            access.push(json!({"type": wanted.resource_type, "name": wanted.name, "actions": actions}));
        }
    }
    let now = now_secs();
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let claims = json!({
        "iss": opts.issuer,
        "sub": user.map(|u| u.name.as_str()).unwrap_or(""),
        "aud": opts.service,
        "exp": now + opts.expires_in as i64,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("{:016x}", crate::image::mix(now as u64, n)),
        "access": access,
    });
    let untrusted = state
        .untrusted_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let signer = if untrusted {
        &state.untrusted
    } else {
        &state.trusted
    };
    let token = match sign_jwt(signer, &state.rng, &claims) {
        Ok(token) => token,
        Err(e) => return error(500, "INTERNAL", &e.to_string()),
    };
    state
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(IssuedToken {
            user: user.map(|u| u.name.clone()),
            method: request.method.clone(),
            requested: scopes.clone(),
            granted: granted_text.clone(),
            token: token.clone(),
            untrusted,
        });
    let issued_at = crate::image::rfc3339_utc(now);
    let body = if oauth {
        json!({
            "access_token": token,
            "scope": granted_text.join(" "),
            "expires_in": opts.expires_in,
            "issued_at": issued_at,
        })
    } else {
        match opts.field {
            TokenField::Token => {
                json!({"token": token, "expires_in": opts.expires_in, "issued_at": issued_at})
            }
            TokenField::AccessToken => {
                json!({"access_token": token, "expires_in": opts.expires_in, "issued_at": issued_at})
            }
            TokenField::Both => json!({
                "token": token,
                "access_token": token,
                "expires_in": opts.expires_in,
                "issued_at": issued_at,
            }),
        }
    };
    CannedResponse::json(200, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "team/app"));
        assert!(glob_match("team/*", "team/app"));
        assert!(glob_match("team/*", "team/a/b"));
        assert!(!glob_match("team/*", "teams/app"));
        assert!(glob_match("*/app", "x/y/app"));
        assert!(glob_match("app", "app"));
        assert!(!glob_match("app", "app2"));
    }

    #[test]
    fn grants_intersect_with_requests() {
        let grants = vec![
            Grant::repos("team/*", &["pull"]),
            Grant::repos("team/app", &["delete"]),
        ];
        let wanted = parse_scope("repository:team/app:pull,push,delete").unwrap();
        assert_eq!(allowed(&grants, &wanted), ["pull", "delete"]);
        let wanted = parse_scope("repository:other:pull").unwrap();
        assert!(allowed(&grants, &wanted).is_empty());
        let wanted = parse_scope("registry:catalog:*").unwrap();
        assert_eq!(allowed(&[Grant::catalog()], &wanted), ["*"]);
        let wanted = parse_scope("repository:localhost:5000/a:pull").unwrap();
        assert_eq!(wanted.name, "localhost:5000/a");
    }

    #[tokio::test]
    async fn issues_verifiable_tokens_with_the_granted_access() {
        let server = TokenServer::start(TokenServerOptions::default().user(TokenUser::new(
            "alice",
            "pw",
            vec![Grant::repos("team/*", &["pull"])],
        )))
        .unwrap();
        let http = reqwest::Client::new();
        let response = http
            .get(format!(
                "{}?service={}&scope=repository:team/app:pull,delete",
                server.realm(),
                server.service()
            ))
            .basic_auth("alice", Some("pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let token = body["token"].as_str().unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], server.service());
        assert_eq!(claims["iss"], server.issuer());
        assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
        // The signature verifies with the signer's public key, in the fixed r||s form JWS wants.
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64);
        use ring::signature::KeyPair as _;
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            server.state.trusted.key.public_key().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &signature).is_ok());
        assert!(
            std::fs::read_to_string(server.root_cert_bundle())
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );

        // Wrong password, anonymous, denied user, wrong service.
        let status = |rb: reqwest::RequestBuilder| async move { rb.send().await.unwrap().status().as_u16() };
        let url = format!("{}?service={}", server.realm(), server.service());
        assert_eq!(status(http.get(&url).basic_auth("alice", Some("x"))).await, 401);
        assert_eq!(status(http.get(&url)).await, 401);
        server.deny("alice");
        assert_eq!(status(http.get(&url).basic_auth("alice", Some("pw"))).await, 403);
        server.allow("alice");
        let other = format!("{}?service=other", server.realm());
        assert_eq!(
            status(http.get(&other).basic_auth("alice", Some("pw"))).await,
            400
        );
        assert_eq!(server.issued_to(Some("alice")).len(), 1);
        assert_eq!(server.issued()[0].granted, ["repository:team/app:pull"]);
    }
}
