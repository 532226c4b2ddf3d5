//! Where a call may go out: the trunks the engine chose for it, in the order to try them.
//! Plain data (the `trunks` domain reads them from PostgreSQL), so the carrier stays free of SQL.

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// One trunk a call may leave through.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrunkRoute {
    pub trunk_id: Uuid,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub transport: SipTransport,
    /// Digest credentials for 401/407 challenges (the password decrypted, never logged).
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Host part of the From URI; the trunk's host when None.
    pub from_domain: Option<String>,
    /// Calls per second this trunk takes (None: no limit).
    pub cps: Option<u32>,
    /// Concurrent calls this trunk takes (None: no limit).
    pub max_channels: Option<u32>,
}

impl std::fmt::Debug for TrunkRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkRoute")
            .field("trunk_id", &self.trunk_id)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}
