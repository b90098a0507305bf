//! The users a server lets in: the users file of `--auth-file`, and the one
//! token of `$CELLFLIGHT_AUTH_TOKEN`. Each user has a bearer token, may
//! have a password (to get the token by a Flight Handshake with Basic
//! credentials), and may be granted only some datasets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cellflight_sql::Access;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Shortest token accepted: 16 characters of a random token are 80+ bits.
const MIN_TOKEN_CHARS: usize = 16;

/// The user that `$CELLFLIGHT_AUTH_TOKEN`'s token signs in as.
pub(crate) const ENV_TOKEN_USER: &str = "$CELLFLIGHT_AUTH_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read it: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error(
        "it is readable by other users of this host (mode {mode:o}); it holds secrets: chmod 600 it"
    )]
    Exposed { mode: u32 },
    #[error("it is not a users file: {0} (docs/operations.md shows the format)")]
    Malformed(String),
    #[error("user {user:?}: {problem}")]
    BadUser { user: String, problem: String },
    #[error("users {first:?} and {second:?} have the same token")]
    SharedToken { first: String, second: String },
}

/// The users file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    token: String,
    password: Option<String>,
    /// Absent: every dataset.
    datasets: Option<BTreeSet<String>>,
}

/// One user: who they are, how they prove it, what they may read. Its
/// Debug form leaves the secrets out.
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) token: String,
    password: Option<String>,
    pub(crate) access: Access,
}

/// Every user a server lets in.
#[derive(Debug, Default)]
pub(crate) struct Users {
    users: Vec<User>,
}

impl Users {
    /// The users of the file at `path`, which must not be readable by
    /// other users of the host.
    pub(crate) fn from_file(path: &Path) -> Result<Self, UsersError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(UsersError::Exposed { mode: mode & 0o777 });
        }
        Self::from_json(&std::fs::read(path)?)
    }

    pub(crate) fn from_json(json: &[u8]) -> Result<Self, UsersError> {
        let file: UsersFile = serde_json::from_slice(json)
            .map_err(|e| UsersError::Malformed(without_strings(&e.to_string())))?;
        let mut users = Self::default();
        for (name, entry) in file.users {
            let access = match entry.datasets {
                None => Access::All,
                Some(datasets) => Access::granted(datasets),
            };
            users.add(User {
                name,
                token: entry.token,
                password: entry.password,
                access,
            })?;
        }
        Ok(users)
    }

    /// Adds `user`, whose name and token must be new and sound.
    pub(crate) fn add(&mut self, user: User) -> Result<(), UsersError> {
        let bad = |problem: &str| UsersError::BadUser {
            user: user.name.clone(),
            problem: problem.to_string(),
        };
        if user.name.is_empty() || user.name.contains(':') {
            return Err(bad("a user name is not empty and has no ':'"));
        }
        if user.password.as_deref() == Some("") {
            return Err(bad(
                "the password is empty; leave it out to sign in by token only",
            ));
        }
        if user.token.chars().count() < MIN_TOKEN_CHARS {
            return Err(bad(&format!(
                "the token is shorter than {MIN_TOKEN_CHARS} characters; make one with: openssl rand -hex 32"
            )));
        }
        if !user.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the token has characters other than printable ASCII"));
        }
        if let Some(other) = self.users.iter().find(|u| u.name == user.name) {
            return Err(bad(&format!("{:?} is defined twice", other.name)));
        }
        if let Some(other) = self.find_by_token(&user.token) {
            return Err(UsersError::SharedToken {
                first: other.name.clone(),
                second: user.name,
            });
        }
        self.users.push(user);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// The user holding `token`. Every user's token is compared in constant
    /// time, so timing tells nothing of how much of a guess was right.
    pub(crate) fn find_by_token(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for user in &self.users {
            if bool::from(user.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(user);
            }
        }
        found
    }

    /// The user `name` if `password` is theirs; users without a password
    /// cannot sign in this way.
    pub(crate) fn sign_in(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name)?;
        let expected = user.password.as_deref()?;
        bool::from(expected.as_bytes().ct_eq(password.as_bytes())).then_some(user)
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl User {
    /// A user of every dataset, signed in by `token` alone.
    pub(crate) fn with_token(name: &str, token: String) -> Self {
        Self {
            name: name.to_string(),
            token,
            password: None,
            access: Access::All,
        }
    }
}

/// serde_json's `invalid type: string "..."` quotes the value, which in a
/// users file may be a token: errors name the string, not its text.
fn without_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(QUOTED) {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let after = &rest[at + QUOTED.len()..];
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAM: &str = r#"{"users": {
        "alice": {"token": "alice-token-0123456789", "password": "wonderland", "datasets": ["pbmc"]},
        "trainer": {"token": "trainer-token-0123456789"}
    }}"#;

    #[test]
    fn a_token_finds_its_user_and_grants() {
        let users = Users::from_json(TEAM.as_bytes()).unwrap();
        let alice = users.find_by_token("alice-token-0123456789").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.access.allows("pbmc") && !alice.access.allows("tahoe"));
        let trainer = users.find_by_token("trainer-token-0123456789").unwrap();
        assert_eq!(trainer.access, Access::All);
        assert!(users.find_by_token("alice-token-012345678").is_none());
        assert!(users.find_by_token("").is_none());
    }

    #[test]
    fn only_the_right_password_of_a_user_with_one_signs_in() {
        let users = Users::from_json(TEAM.as_bytes()).unwrap();
        assert_eq!(users.sign_in("alice", "wonderland").unwrap().name, "alice");
        assert!(users.sign_in("alice", "wonderlan").is_none());
        assert!(users.sign_in("bob", "wonderland").is_none());
        assert!(users.sign_in("trainer", "").is_none());
    }

    #[test]
    fn weak_shared_or_unknown_entries_are_refused_by_name() {
        let short = r#"{"users": {"bob": {"token": "short"}}}"#;
        let shared = r#"{"users": {"a": {"token": "same-token-0123456789"}, "b": {"token": "same-token-0123456789"}}}"#;
        let unknown = r#"{"users": {"bob": {"token": "bob-token-0123456789", "role": "admin"}}}"#;
        let colon = r#"{"users": {"b:ob": {"token": "bob-token-0123456789"}}}"#;
        let bare = r#"{"users": {"bob": "bob-token-0123456789"}}"#;
        let empty = r#"{"users": {"bob": {"token": "bob-token-0123456789", "password": ""}}}"#;
        for (json, expected) in [
            (short, "user \"bob\": the token is shorter than 16"),
            (shared, "users \"a\" and \"b\" have the same token"),
            (unknown, "unknown field `role`"),
            (colon, "user \"b:ob\": a user name"),
            ("[]", "not a users file"),
            (bare, "invalid type: a string, expected"),
            (empty, "user \"bob\": the password is empty"),
        ] {
            let error = Users::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn no_error_or_debug_form_shows_a_secret() {
        let bare = r#"{"users": {"bob": "bob-token-0123456789"}}"#;
        let error = Users::from_json(bare.as_bytes()).unwrap_err().to_string();
        assert!(!error.contains("bob-token"), "{error}");
        let users = Users::from_json(TEAM.as_bytes()).unwrap();
        let debug = format!("{users:?}");
        assert!(
            !debug.contains("token-0123456789") && !debug.contains("wonderland"),
            "{debug}"
        );
    }

    #[test]
    fn a_users_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        std::fs::write(&path, TEAM).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Users::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Users::from_file(&path).unwrap().len(), 2);
    }
}
