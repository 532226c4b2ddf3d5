//! Who is calling: application JWTs (Voice API) and api_key:api_secret (account APIs).

mod app_jwt;
mod basic;
mod throttle;

pub use app_jwt::{mint_application_jwt, AppJwtVerifier, AuthenticatedApp, JwtError};
pub use basic::{BasicAuthError, BasicAuthenticator};
pub use throttle::LoginThrottle;
