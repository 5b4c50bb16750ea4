//! Password hashing with argon2id, off the async threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::HashCost;

fn argon2(cost: HashCost) -> Argon2<'static> {
    let params = match cost {
        // OWASP: m = 19 MiB, t = 2, p = 1.
        HashCost::Standard => Params::new(19 * 1024, 2, 1, None),
        HashCost::Fast => Params::new(1024, 1, 1, None),
    };
    // Both parameter sets are within argon2's limits; `default()` is a safe fallback anyway.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.unwrap_or_default())
}

pub fn hash(password: &str, cost: HashCost) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2(cost).hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches `stored`. Any malformed hash is simply "no".
pub fn verify(password: &str, stored: &str) -> bool {
    // The parameters are read from the stored hash itself.
    PasswordHash::new(stored)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that an unknown email takes as
/// long to refuse as a wrong password.
pub fn decoy(cost: HashCost) -> String {
    hash("no user has this password", cost).unwrap_or_default()
}

/// Runs a CPU-heavy hashing job on the blocking pool.
pub async fn off_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(job).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse", HashCost::Fast).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("Correct horse", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!verify("", ""));
    }
}
