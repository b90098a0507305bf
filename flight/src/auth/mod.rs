//! Who is calling, and what they may read. Off unless users are configured
//! (the loopback demo needs none); on, every call but the Handshake and
//! the health service carries `authorization: Bearer TOKEN`, and the
//! Handshake trades Basic credentials for that token (as pyarrow's
//! `authenticate_basic_token` and ADBC's username/password expect).
//! Sign-ins are limited per peer ([`sign_in_limit`]) and their password
//! checks bounded server-wide ([`password`]).

mod layer;
mod password;
mod sign_in_limit;
mod users;

use std::sync::Arc;
use std::time::Instant;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use cellflight_engine::Caller;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;

pub use layer::{Authenticate, Authenticated};
use password::PasswordChecks;
pub use password::{hash_password, PasswordError};
use sign_in_limit::SignInLimit;
pub use users::UsersError;
use users::{User, Users, ENV_TOKEN_USER};

use crate::config::AuthConfig;
use crate::error::ServiceError;
use crate::server::ServerError;
use crate::stream_slots::Client;

/// Why a Handshake did not sign a caller in.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown user, no password, or the wrong one: the same words for
    /// each, so the answer tells nobody which user names exist.
    #[error("wrong user name or password")]
    WrongPassword,
    #[error(
        "too many failed sign-ins from this address: wait {wait_seconds} s before trying again"
    )]
    TooManyFailures { wait_seconds: u64 },
    #[error("the server is checking as many passwords as it can at once: try again in a moment")]
    Busy,
    #[error("the password check failed: {0}")]
    CheckFailed(String),
}

/// The users a server lets in, or none: authentication off.
#[derive(Debug, Clone, Default)]
pub(crate) struct Authenticator {
    users: Option<Arc<Users>>,
    limit: Arc<SignInLimit>,
    checks: PasswordChecks,
}

/// The header credentials travel in, both ways.
pub(crate) const AUTHORIZATION: &str = "authorization";

impl Authenticator {
    /// Authentication on, for `users` (at least one).
    pub(crate) fn new(users: Users) -> Self {
        Self {
            users: Some(Arc::new(users)),
            ..Self::default()
        }
    }

    /// The users of `config`'s users file and token; none: authentication off.
    pub(crate) fn from_config(config: &AuthConfig) -> Result<Self, ServerError> {
        let mut users = match &config.users_file {
            Some(path) => Users::from_file(path).map_err(|source| ServerError::UsersFile {
                path: path.clone(),
                source,
            })?,
            None => Users::default(),
        };
        if let Some(token) = &config.token {
            User::with_token(ENV_TOKEN_USER, token.clone())
                .and_then(|user| users.add(user))
                .map_err(ServerError::Token)?;
        }
        if users.is_empty() {
            return match &config.users_file {
                Some(path) => Err(ServerError::NoUsers { path: path.clone() }),
                None => Ok(Self::default()),
            };
        }
        tracing::info!(users = users.len(), "authentication on");
        Ok(Self::new(users))
    }

    pub(crate) fn is_on(&self) -> bool {
        self.users.is_some()
    }

    /// The caller of `request`, as the [`Authenticate`] layer found out
    /// (it adds one to every request it lets through).
    /// Without authentication a request that did not pass the layer (a
    /// service called in-process) is anyone's; with it, it is refused
    /// rather than served as anyone.
    pub(crate) fn caller_of<T>(&self, request: &tonic::Request<T>) -> Result<Caller, ServiceError> {
        match request.extensions().get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None if !self.is_on() => Ok(Caller::anyone()),
            None => Err(ServiceError::Internal(
                "the request has no caller: the authentication layer is missing".into(),
            )),
        }
    }

    /// The caller whose bearer token `headers` carry.
    pub(crate) fn caller(&self, headers: &http::HeaderMap) -> Result<Caller, ServiceError> {
        let Some(users) = &self.users else {
            return Ok(Caller::anyone());
        };
        let token =
            match credentials(headers)? {
                Credentials::Bearer(token) => token,
                Credentials::Basic { .. } => return Err(unauthenticated(
                    "Basic credentials are accepted by the Handshake only; send its bearer token",
                )),
            };
        let user = users
            .find_by_token(token)
            .ok_or_else(|| unauthenticated("the bearer token is not one this server knows"))?;
        Ok(Caller {
            user: Some(user.name.as_str().into()),
            access: user.access.clone(),
        })
    }

    /// The Handshake of `peer`: Basic credentials answered with the user's
    /// bearer token (a bearer token is answered with itself once checked).
    /// Every attempt counts against the peer's [`SignInLimit`] until it
    /// succeeds.
    pub(crate) async fn handshake(
        &self,
        peer: &Client,
        headers: &MetadataMap,
    ) -> Result<String, ServiceError> {
        let Some(users) = &self.users else {
            return Err(ServiceError::FailedPrecondition(
                "this server runs without authentication (no --auth-file or $CELLFLIGHT_AUTH_TOKEN): no Handshake is needed".into(),
            ));
        };
        let attempt = match self.limit.begin(peer, Instant::now()) {
            Ok(()) => self.sign_in(users, headers).await,
            Err(refused) => Err(refused.into()),
        };
        match &attempt {
            Ok(_) => self.limit.succeeded(peer, Instant::now()),
            Err(error) => self.limit.failed(peer, error, Instant::now()),
        }
        attempt
    }

    /// The token that `headers`' credentials sign in to.
    async fn sign_in(&self, users: &Users, headers: &MetadataMap) -> Result<String, ServiceError> {
        let headers = headers.clone().into_headers();
        let (user, password) = match credentials(&headers)? {
            Credentials::Basic { user, password } => (user, password),
            Credentials::Bearer(token) => {
                let user = users.find_by_token(token).ok_or_else(|| {
                    unauthenticated("the bearer token is not one this server knows")
                })?;
                tracing::info!(user = %user.name, "signed in");
                return Ok(token.to_string());
            }
        };
        let sign_in = users.password_sign_in(&user);
        let hash = sign_in.map(|sign_in| sign_in.hash.clone());
        let matched = self.checks.matches(hash, password).await?;
        match sign_in {
            Some(sign_in) if matched => {
                tracing::info!(user = %user, "signed in");
                Ok(sign_in.token.clone())
            }
            _ => Err(SignInError::WrongPassword.into()),
        }
    }
}

fn unauthenticated(why: &str) -> ServiceError {
    ServiceError::Unauthenticated(why.to_string())
}

enum Credentials<'a> {
    Bearer(&'a str),
    Basic { user: String, password: String },
}

/// The `authorization` header, either `Bearer TOKEN` or `Basic BASE64`.
fn credentials(headers: &http::HeaderMap) -> Result<Credentials<'_>, ServiceError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        unauthenticated(
            "no credentials: send the header authorization: Bearer TOKEN (docs/operations.md)",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return basic(rest);
    }
    Err(unauthenticated(
        "the authorization header is neither Bearer TOKEN nor Basic BASE64(user:password)",
    ))
}

/// Base64 with or without its `=` padding: Go's Flight client (ADBC's)
/// leaves it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn basic(encoded: &str) -> Result<Credentials<'static>, ServiceError> {
    let malformed =
        || unauthenticated("malformed Basic credentials: expected BASE64(user:password)");
    let decoded = BASE64.decode(encoded).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use cellflight_sql::Access;
    use tonic::Status;

    use super::*;

    fn team() -> Authenticator {
        let hash = hash_password("wonderland").unwrap();
        let users = format!(
            r#"{{"users": {{
                "alice": {{"token": "alice-token-0123456789", "password_hash": "{hash}", "datasets": ["pbmc"]}}
            }}}}"#
        );
        Authenticator::new(Users::from_json(users.as_bytes()).unwrap())
    }

    fn headers(authorization: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn with_authentication_off_everyone_reads_everything() {
        let caller = Authenticator::default()
            .caller(&http::HeaderMap::new())
            .unwrap();
        assert_eq!((caller.user, caller.access), (None, Access::All));
    }

    #[test]
    fn a_known_bearer_token_is_its_user_with_their_grants() {
        let caller = team()
            .caller(&headers("Bearer alice-token-0123456789"))
            .unwrap();
        assert_eq!(caller.user.as_deref(), Some("alice"));
        assert!(caller.access.allows("pbmc") && !caller.access.allows("tahoe"));
    }

    #[test]
    fn missing_unknown_or_basic_credentials_are_unauthenticated() {
        let auth = team();
        for (headers, expected) in [
            (http::HeaderMap::new(), "no credentials"),
            (
                headers("Bearer alice-token-012345678"),
                "not one this server knows",
            ),
            (headers("Basic YWxpY2U6d29uZGVybGFuZA=="), "Handshake only"),
            (headers("Token x"), "neither Bearer"),
        ] {
            let error = auth.caller(&headers).unwrap_err();
            assert!(
                matches!(&error, ServiceError::Unauthenticated(m) if m.contains(expected)),
                "{error:?} lacks {expected:?}"
            );
        }
    }

    fn metadata(value: &str) -> MetadataMap {
        MetadataMap::from_headers(headers(value))
    }

    fn peer(last_octet: u8) -> Client {
        Client::Address([10, 0, 0, last_octet].into())
    }

    // base64("alice:wonderland"), base64("alice:wrong"), base64("bob:wonderland")
    const ALICE_RIGHT: &str = "Basic YWxpY2U6d29uZGVybGFuZA==";
    const ALICE_WRONG: &str = "Basic YWxpY2U6d3Jvbmc=";
    const BOB: &str = "Basic Ym9iOndvbmRlcmxhbmQ=";

    #[tokio::test]
    async fn the_handshake_trades_a_password_for_the_token() {
        let auth = team();
        let peer = peer(1);
        let token = auth.handshake(&peer, &metadata(ALICE_RIGHT)).await;
        assert_eq!(token.unwrap(), "alice-token-0123456789");
        for wrong in [ALICE_WRONG, BOB] {
            let error = auth.handshake(&peer, &metadata(wrong)).await.unwrap_err();
            assert!(
                matches!(error, ServiceError::SignIn(SignInError::WrongPassword)),
                "{error:?}"
            );
        }
        // Unpadded, as Go's Flight client sends it.
        let unpadded = ALICE_RIGHT.trim_end_matches('=');
        let token = auth.handshake(&peer, &metadata(unpadded)).await;
        assert_eq!(token.unwrap(), "alice-token-0123456789");
        let bearer = auth
            .handshake(&peer, &metadata("Bearer alice-token-0123456789"))
            .await;
        assert_eq!(bearer.unwrap(), "alice-token-0123456789");
        let error = auth.handshake(&peer, &metadata("Basic !!")).await;
        assert!(error.unwrap_err().to_string().contains("malformed Basic"));
    }

    #[tokio::test]
    async fn a_peer_failing_too_often_is_refused_before_any_check_others_are_not() {
        let auth = team();
        let (guesser, other) = (peer(1), peer(2));
        for _ in 0..5 {
            let error = auth.handshake(&guesser, &metadata(ALICE_WRONG)).await;
            assert!(matches!(
                error,
                Err(ServiceError::SignIn(SignInError::WrongPassword))
            ));
        }
        // Even the right password waits: the guesser may have found it.
        let refused = auth.handshake(&guesser, &metadata(ALICE_RIGHT)).await;
        let refused = Status::from(refused.unwrap_err());
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("wait 1 s"), "{refused:?}");
        let token = auth.handshake(&other, &metadata(ALICE_RIGHT)).await;
        assert_eq!(token.unwrap(), "alice-token-0123456789");
    }
}
