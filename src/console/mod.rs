//! The live-calls console's data (the page itself is `http::console`): sign-in sessions, the
//! feed of live calls, one call's detail, and what operators see of trunks and instances.

pub mod detail;
pub mod live;
pub mod operator;
pub mod sessions;
