//! Random credentials and argon2 hashing of api secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use rand::Rng;

/// 8 lowercase hex characters, like Vonage api keys.
pub fn new_api_key() -> String {
    format!("{:08x}", OsRng.gen::<u32>())
}

pub fn random_alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut OsRng, len)
}

pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(secret.as_bytes(), &salt).expect("argon2 hashing with a fresh salt").to_string()
}

pub fn verify_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(secret.as_bytes(), &hash).is_ok())
}

/// A hash of no one's secret, made as `hash_secret` makes every account's: checking a secret
/// against it costs what checking a real one does, so an unknown api_key answers no faster
/// than a wrong secret.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_secret(&random_alphanumeric(16)))
}
