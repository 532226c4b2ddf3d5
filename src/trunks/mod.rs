//! SIP trunks: where real calls leave, the platform's or an account's own; their digest
//! passwords sealed at rest; and routing, which picks the trunks a call tries.

pub mod crypto;
pub mod model;
pub mod repo;
pub mod routing;

pub use crypto::{CredentialKey, KeyError, NO_KEY};
pub use model::{Change, Trunk, TrunkInput, TrunkSpec};
pub use routing::{plan, plan_among, routes_for, Routed, RoutingError, TrunkTable};
