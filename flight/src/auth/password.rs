//! Passwords, held only as argon2id hashes (PHC strings, made by
//! `cellflight hash-password`), and checked a couple at a time: one check
//! costs ~19 MiB and tens of milliseconds of a core, which anyone who
//! reaches the port could otherwise ask for in any number.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params};
use tokio::sync::Semaphore;

use super::SignInError;

/// Most memory (KiB) one check of a users file's hash may take: two checks
/// at once then hold at most 512 MiB (the default is 19 MiB).
const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Most passes over that memory (the default is 2).
const MAX_PASSES: u32 = 16;

/// Password checks running at once, server-wide.
const CONCURRENT_CHECKS: usize = 2;
/// How long a sign-in waits for a check to free. A check takes tens of
/// milliseconds, so a person signing in while others do waits unnoticed,
/// while a flood is refused (RESOURCE_EXHAUSTED) instead of queueing
/// without end, each waiter holding its password.
const CHECK_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("password_hash is not an argon2id PHC string ($argon2id$v=19$m=...): {0}; make one with `cellflight hash-password`")]
    NotArgon2id(String),
    #[error("password_hash asks for {kib} KiB and {passes} passes a check, over this server's {MAX_MEMORY_KIB} KiB and {MAX_PASSES} passes; make one with `cellflight hash-password`")]
    TooCostly { kib: u32, passes: u32 },
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// The PHC string of `password`: argon2id with the crate's default
/// parameters (19 MiB, 2 passes, OWASP's recommendation) and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Checked in place of a user's hash when the user name is unknown or has
/// no password, so that every Basic sign-in takes a check's time and
/// timing does not tell which user names exist. Its password is no secret:
/// a match against it is never a sign-in.
static DECOY: LazyLock<Option<StoredHash>> = LazyLock::new(|| {
    let phc = hash_password("decoy").ok()?;
    StoredHash::parse(&phc).ok()
});

/// A users file's `password_hash`, checked when the file is read so that a
/// typo stops the server at startup rather than failing every sign-in.
#[derive(Clone)]
pub(crate) struct StoredHash(Arc<str>);

impl StoredHash {
    pub(crate) fn parse(phc: &str) -> Result<Self, PasswordError> {
        let not_argon2id = |why: &dyn fmt::Display| PasswordError::NotArgon2id(why.to_string());
        let hash = PasswordHash::new(phc).map_err(|e| not_argon2id(&e))?;
        if hash.algorithm != Algorithm::Argon2id.ident() {
            return Err(not_argon2id(&format!(
                "its algorithm is {}",
                hash.algorithm
            )));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(not_argon2id(&"it has no salt or no hash"));
        }
        let params = Params::try_from(&hash).map_err(|e| not_argon2id(&e))?;
        let (kib, passes) = (params.m_cost(), params.t_cost());
        if kib > MAX_MEMORY_KIB || passes > MAX_PASSES {
            return Err(PasswordError::TooCostly { kib, passes });
        }
        Ok(Self(phc.into()))
    }

    /// Whether `password` is the one this hash was made from: seconds of
    /// CPU at worst, so run it through [`PasswordChecks`].
    fn matches(&self, password: &str) -> bool {
        PasswordHash::new(&self.0).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }
}

impl fmt::Debug for StoredHash {
    /// A hash can be cracked offline: it is no more shown than a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredHash(<redacted>)")
    }
}

/// The server's password checks: at most [`CONCURRENT_CHECKS`] at once,
/// each on a blocking thread so that it never stalls the async workers.
#[derive(Debug, Clone)]
pub(crate) struct PasswordChecks {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        Self::new(CONCURRENT_CHECKS, CHECK_WAIT)
    }
}

impl PasswordChecks {
    fn new(concurrent: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent)),
            wait,
        }
    }

    /// Whether `password` matches `hash`; `Busy` when no check frees in
    /// time. Without a hash (an unknown user, or one without a password) a
    /// [`DECOY`] is checked, just as long, and the answer is no.
    pub(crate) async fn matches(
        &self,
        hash: Option<StoredHash>,
        password: String,
    ) -> Result<bool, SignInError> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| SignInError::Busy)?
            .map_err(|e| SignInError::CheckFailed(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _held_while_hashing = permit;
            match hash {
                Some(hash) => hash.matches(&password),
                None => {
                    let _only_timed = DECOY.as_ref().map(|decoy| decoy.matches(&password));
                    false
                }
            }
        })
        .await
        .map_err(|e| SignInError::CheckFailed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_matches_only_its_password() {
        let phc = hash_password("wonderland").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_ne!(phc, hash_password("wonderland").unwrap(), "salted");
        let hash = StoredHash::parse(&phc).unwrap();
        assert!(hash.matches("wonderland"));
        assert!(!hash.matches("wonderlan") && !hash.matches(""));
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
    }

    #[test]
    fn plaintext_other_algorithms_and_costly_hashes_are_refused() {
        let salt_and_hash = "c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        for (phc, expected) in [
            ("wonderland", "not an argon2id PHC string"),
            (
                &format!("$argon2i$v=19$m=19456,t=2,p=1${salt_and_hash}"),
                "its algorithm is argon2i",
            ),
            (
                &format!("$argon2id$v=19$m=4194304,t=2,p=1${salt_and_hash}"),
                "asks for 4194304 KiB and 2 passes",
            ),
            ("$argon2id$v=19$m=19456,t=2,p=1", "no salt or no hash"),
        ] {
            let error = StoredHash::parse(phc).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        let debug = format!("{:?}", StoredHash::parse(&hash_password("x").unwrap()));
        assert!(!debug.contains("argon2id"), "{debug}");
    }

    #[tokio::test]
    async fn no_more_checks_than_permits_run_at_once() {
        let checks = PasswordChecks::new(2, Duration::from_millis(50));
        let hash = StoredHash::parse(&hash_password("wonderland").unwrap()).unwrap();
        let held = [
            Arc::clone(&checks.permits).acquire_owned().await.unwrap(),
            Arc::clone(&checks.permits).acquire_owned().await.unwrap(),
        ];
        for hash in [Some(hash.clone()), None] {
            let busy = checks.matches(hash, "wonderland".into()).await;
            assert!(matches!(busy, Err(SignInError::Busy)), "{busy:?}");
        }
        drop(held);
        assert!(checks
            .matches(Some(hash), "wonderland".into())
            .await
            .unwrap());
        // An unknown user's password is checked against the decoy: never a match.
        assert!(!checks.matches(None, "decoy".into()).await.unwrap());
        assert_eq!(checks.permits.available_permits(), 2, "the permit is back");
    }
}
