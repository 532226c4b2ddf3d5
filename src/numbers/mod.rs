//! Numbers: E.164 numbers the operator holds on a trunk, each owned by an account (or available
//! for one to buy) and linked to one of its applications, whose answer_url then handles the
//! calls to it. The API shapes follow Vonage's Numbers API.

pub mod model;
pub mod repo;

pub use model::*;
