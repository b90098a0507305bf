//! The users a server lets in: the users file of `--auth-file`, and the one
//! token of `$CELLFLIGHT_AUTH_TOKEN`. Each user has a bearer token, may
//! have a password (to get the token by a Flight Handshake with Basic
//! credentials), and may be granted only some datasets.
//!
//! Tokens are held as SHA-256 digests and calls are compared by digest, so
//! neither timing nor a read of the server's memory gives a token away.
//! The file keeps plaintext tokens: a token is a bearer secret the
//! operator hands out anyway, and the Handshake must hand it back, so the
//! tokens of users with a password stay in memory too. Passwords are held
//! only as argon2id hashes ([`password`](super::password)).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cellflight_sql::Access;
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::password::StoredHash;

/// Shortest token accepted: 16 characters of a random token are 80+ bits.
const MIN_TOKEN_CHARS: usize = 16;

/// The user that `$CELLFLIGHT_AUTH_TOKEN`'s token signs in as.
pub(crate) const ENV_TOKEN_USER: &str = "$CELLFLIGHT_AUTH_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read it: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error(
        "it is readable by other users of this host or writable by its group (mode {mode:o}); \
         it holds secrets: chmod 600 it (or 640 / 440 with a group only the server's user is in)"
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
    /// An argon2id PHC string, made by `cellflight hash-password`.
    password_hash: Option<String>,
    /// A plaintext password: refused by name (its value is never kept).
    password: Option<IgnoredAny>,
    /// Absent: every dataset.
    datasets: Option<BTreeSet<String>>,
}

/// The permission bits a users file may not have: any for other users,
/// write or execute for its group. Reading by its group is allowed because
/// that is how Kubernetes gives a Secret to a server that is not root: the
/// Secret volume's files are root's, mode 0440 (`defaultMode`), their group
/// the pod's `fsGroup`, which only the pod's own processes hold, on a
/// volume only that pod mounts (docs/operations.md). On a host, a group-
/// readable file is as safe as its group: one only the server's user is in.
const EXPOSING_BITS: u32 = 0o037;

/// SHA-256 of a token.
type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What a user with a password signs in with, and the token the Handshake
/// answers with.
#[derive(Debug)]
pub(crate) struct PasswordSignIn {
    pub(crate) hash: StoredHash,
    pub(crate) token: String,
}

/// One user: who they are, how they prove it, what they may read. Its
/// Debug form leaves the secrets out.
pub(crate) struct User {
    pub(crate) name: String,
    token_digest: TokenDigest,
    password: Option<PasswordSignIn>,
    pub(crate) access: Access,
}

/// Every user a server lets in.
#[derive(Debug, Default)]
pub(crate) struct Users {
    users: Vec<User>,
}

impl Users {
    /// The users of the file at `path` (symbolic links followed), which
    /// must grant nothing to other users and no more than reading to its
    /// group ([`EXPOSING_BITS`]).
    pub(crate) fn from_file(path: &Path) -> Result<Self, UsersError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & EXPOSING_BITS != 0 {
            return Err(UsersError::Exposed { mode: mode & 0o777 });
        }
        Self::from_json(&std::fs::read(path)?)
    }

    pub(crate) fn from_json(json: &[u8]) -> Result<Self, UsersError> {
        let file: UsersFile = serde_json::from_slice(json)
            .map_err(|e| UsersError::Malformed(without_strings(&e.to_string())))?;
        let mut users = Self::default();
        for (name, entry) in file.users {
            users.add(User::from_entry(name, entry)?)?;
        }
        Ok(users)
    }

    /// Adds `user`, whose name and token must be new.
    pub(crate) fn add(&mut self, user: User) -> Result<(), UsersError> {
        if let Some(other) = self.users.iter().find(|u| u.name == user.name) {
            return Err(UsersError::BadUser {
                user: user.name,
                problem: format!("{:?} is defined twice", other.name),
            });
        }
        if let Some(other) = self.find_by_digest(&user.token_digest) {
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

    /// The user holding `token`.
    pub(crate) fn find_by_token(&self, token: &str) -> Option<&User> {
        self.find_by_digest(&digest(token))
    }

    /// Every user's digest is compared in constant time, so timing tells
    /// nothing of which user, if any, a guess was close to.
    fn find_by_digest(&self, token_digest: &TokenDigest) -> Option<&User> {
        let mut found = None;
        for user in &self.users {
            if bool::from(user.token_digest.ct_eq(token_digest)) {
                found = Some(user);
            }
        }
        found
    }

    /// How user `name` signs in with a password; none for unknown users
    /// and users without one.
    pub(crate) fn password_sign_in(&self, name: &str) -> Option<&PasswordSignIn> {
        let user = self.users.iter().find(|u| u.name == name)?;
        user.password.as_ref()
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
    pub(crate) fn with_token(name: &str, token: String) -> Result<Self, UsersError> {
        Self::new(name.to_string(), token, None, Access::All)
    }

    fn from_entry(name: String, entry: UserEntry) -> Result<Self, UsersError> {
        let bad = |problem: String| UsersError::BadUser {
            user: name.clone(),
            problem,
        };
        if entry.password.is_some() {
            return Err(bad(
                "a plaintext \"password\" is refused: store its hash as \"password_hash\", made by `cellflight hash-password`".into(),
            ));
        }
        let hash = match entry.password_hash {
            Some(phc) => Some(StoredHash::parse(&phc).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let access = match entry.datasets {
            None => Access::All,
            Some(datasets) => Access::granted(datasets),
        };
        Self::new(name, entry.token, hash, access)
    }

    /// A user whose name and token are sound.
    fn new(
        name: String,
        token: String,
        hash: Option<StoredHash>,
        access: Access,
    ) -> Result<Self, UsersError> {
        let bad = |problem: String| UsersError::BadUser {
            user: name.clone(),
            problem,
        };
        if name.is_empty() || name.contains(':') {
            return Err(bad("a user name is not empty and has no ':'".into()));
        }
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(bad(format!(
                "the token is shorter than {MIN_TOKEN_CHARS} characters; make one with: openssl rand -hex 32"
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "the token has characters other than printable ASCII".into()
            ));
        }
        Ok(Self {
            token_digest: digest(&token),
            password: hash.map(|hash| PasswordSignIn { hash, token }),
            name,
            access,
        })
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
    use super::super::password::hash_password;
    use super::*;

    /// Alice signs in with a password, trainer by token only.
    fn team_json() -> String {
        let hash = hash_password("wonderland").unwrap();
        format!(
            r#"{{"users": {{
                "alice": {{"token": "alice-token-0123456789", "password_hash": "{hash}", "datasets": ["pbmc"]}},
                "trainer": {{"token": "trainer-token-0123456789"}}
            }}}}"#
        )
    }

    #[test]
    fn a_token_finds_its_user_and_grants() {
        let users = Users::from_json(team_json().as_bytes()).unwrap();
        let alice = users.find_by_token("alice-token-0123456789").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.access.allows("pbmc") && !alice.access.allows("tahoe"));
        let trainer = users.find_by_token("trainer-token-0123456789").unwrap();
        assert_eq!(trainer.access, Access::All);
        assert!(users.find_by_token("alice-token-012345678").is_none());
        assert!(users.find_by_token("").is_none());
    }

    #[test]
    fn only_users_with_a_password_hash_can_sign_in_with_one() {
        let users = Users::from_json(team_json().as_bytes()).unwrap();
        let alice = users.password_sign_in("alice").unwrap();
        assert_eq!(alice.token, "alice-token-0123456789");
        assert!(users.password_sign_in("trainer").is_none());
        assert!(users.password_sign_in("bob").is_none());
    }

    #[test]
    fn weak_shared_plaintext_or_unknown_entries_are_refused_by_name() {
        let short = r#"{"users": {"bob": {"token": "short"}}}"#;
        let shared = r#"{"users": {"a": {"token": "same-token-0123456789"}, "b": {"token": "same-token-0123456789"}}}"#;
        let unknown = r#"{"users": {"bob": {"token": "bob-token-0123456789", "role": "admin"}}}"#;
        let colon = r#"{"users": {"b:ob": {"token": "bob-token-0123456789"}}}"#;
        let bare = r#"{"users": {"bob": "bob-token-0123456789"}}"#;
        let plaintext =
            r#"{"users": {"bob": {"token": "bob-token-0123456789", "password": "wonderland"}}}"#;
        let not_a_hash = r#"{"users": {"bob": {"token": "bob-token-0123456789", "password_hash": "wonderland"}}}"#;
        for (json, expected) in [
            (short, "user \"bob\": the token is shorter than 16"),
            (shared, "users \"a\" and \"b\" have the same token"),
            (unknown, "unknown field `role`"),
            (colon, "user \"b:ob\": a user name"),
            ("[]", "not a users file"),
            (bare, "invalid type: a string, expected"),
            (
                plaintext,
                "user \"bob\": a plaintext \"password\" is refused",
            ),
            (plaintext, "`cellflight hash-password`"),
            (
                not_a_hash,
                "user \"bob\": password_hash is not an argon2id PHC string",
            ),
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
        let plaintext =
            r#"{"users": {"bob": {"token": "bob-token-0123456789", "password": "wonderland"}}}"#;
        let error = Users::from_json(plaintext.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!error.contains("wonderland"), "{error}");
        let users = Users::from_json(team_json().as_bytes()).unwrap();
        let debug = format!("{users:?}");
        assert!(
            !debug.contains("token-0123456789") && !debug.contains("argon2id"),
            "{debug}"
        );
    }

    /// A users file of mode `mode` in `dir`.
    fn users_file(dir: &Path, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("users.json");
        std::fs::write(&path, team_json()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_users_file_others_can_read_or_its_group_write_is_refused() {
        for mode in [0o644, 0o604, 0o660, 0o650, 0o641] {
            let dir = tempfile::tempdir().unwrap();
            let error = Users::from_file(&users_file(dir.path(), mode));
            let error = error.unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{mode:o}: {error}");
        }
    }

    #[test]
    fn a_users_file_only_its_owner_and_group_can_read_is_accepted() {
        for mode in [0o600, 0o400, 0o640, 0o440] {
            let dir = tempfile::tempdir().unwrap();
            let users = Users::from_file(&users_file(dir.path(), mode));
            assert_eq!(users.unwrap().len(), 2, "{mode:o}");
        }
    }

    #[test]
    fn a_kubernetes_secret_mount_is_read_through_its_links() {
        // How the kubelet lays a Secret out: the file is a link into
        // `..data`, itself a link to the current timestamped directory.
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("..2026_12_07_03_40_00.000000001");
        std::fs::create_dir(&current).unwrap();
        users_file(&current, 0o440);
        std::os::unix::fs::symlink(current.file_name().unwrap(), dir.path().join("..data"))
            .unwrap();
        let mounted = dir.path().join("users.json");
        std::os::unix::fs::symlink("..data/users.json", &mounted).unwrap();
        assert_eq!(Users::from_file(&mounted).unwrap().len(), 2);
    }
}
