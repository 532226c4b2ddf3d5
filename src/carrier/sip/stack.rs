//! Our adapter around the SIP stack (`rsipstack`): the only module that names its types, so
//! the stack can be swapped. It owns the endpoint (UDP and TCP on `sip.listen`), answers what
//! arrives outside our calls' dialogs, and turns a stored dialog back into a BYE or CANCEL
//! after a takeover.

use super::record::{Destination, DialogRecord, InviteRecord};
use crate::carrier::{SipTransport, TrunkRoute};
use rsipstack::dialog::dialog::{DialogSnapshot, DialogSnapshotState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::{prelude::HeadersExt, Header, Method, StatusCode, ToTypedHeader};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{tcp_listener::TcpListenerConnection, udp::UdpConnection, SipAddr, TransportLayer};
use rsipstack::transaction::endpoint::Endpoint;
use rsipstack::EndpointBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot listen for SIP on {0}: {1}")]
    Listen(SocketAddr, String),
    #[error("{0}")]
    Sip(String),
}

impl From<rsipstack::Error> for StackError {
    fn from(e: rsipstack::Error) -> StackError {
        StackError::Sip(e.to_string())
    }
}

pub struct StackOptions {
    pub listen: SocketAddr,
    /// The address the far end reaches us at (Via, Contact).
    pub public: SocketAddr,
    pub tcp: bool,
    pub user_agent: String,
    /// Where INVITEs that start a call go (the carrier offers them to the engine).
    pub invites: tokio::sync::mpsc::UnboundedSender<Transaction>,
    /// Records each message of our calls (the SIP ladder); None: records nothing.
    pub tracer: Option<super::trace::Tracer>,
    /// The outbound proxy (`sip.outbound_proxy`): every INVITE goes there.
    pub outbound_proxy: Option<Destination>,
}

pub struct SipStack {
    endpoint: Endpoint,
    pub dialogs: Arc<DialogLayer>,
    public: SocketAddr,
    shutdown: CancellationToken,
    outbound_proxy: Option<Destination>,
}

/// Headers through which the outbound proxy learns the trunk and its limits; any the call's
/// own `sip.headers` would set are dropped, so an account cannot raise them.
const PROXY_HEADER_PREFIX: &str = "x-outdial-";

/// An INVITE we sent: its dialog, its state changes, and its final outcome.
pub struct Invitation {
    pub dialog: InviteDialog,
    pub states: DialogStateReceiver,
    pub outcome: tokio::task::JoinHandle<InviteAsyncResult>,
}

/// What goes into one INVITE.
pub struct InviteSpec<'a> {
    pub route: &'a TrunkRoute,
    /// The Request-URI (and To).
    pub target: String,
    /// The From URI and its display name.
    pub from: String,
    pub display_name: Option<String>,
    pub headers: Vec<(String, String)>,
    pub sdp: String,
    pub call_id: String,
}

/// Kernel buffer of the SIP UDP socket, each way. The default (net.core.rmem_default, 208 KiB
/// here) holds about a hundred datagrams: at 500 calls/s with 10,000 live dialogs the 100/180/200
/// of a burst of INVITEs overflowed it while the runtime was busy (RcvbufErrors), and the INVITE
/// was retransmitted. The kernel caps it at net.core.rmem_max / wmem_max.
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// The SIP UDP socket, bound to `listen`, with `UDP_BUFFER_BYTES` buffers (best effort).
fn udp_socket(listen: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(listen), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&listen.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

impl SipStack {
    pub async fn start(options: StackOptions) -> Result<Arc<SipStack>, StackError> {
        let shutdown = CancellationToken::new();
        let transports = TransportLayer::new(shutdown.clone());
        let listen_error = |e: rsipstack::Error| StackError::Listen(options.listen, e.to_string());
        // Port 0 (tests): UDP picks a free port, TCP and the public address take the same one.
        let probe = UdpConnection::create_connection(options.listen, None, None).await.map_err(listen_error)?;
        let bound = probe.get_addr().get_socketaddr().map_err(listen_error)?;
        drop(probe);
        let listen = SocketAddr::new(options.listen.ip(), bound.port());
        let mut public = options.public;
        if public.port() == 0 {
            public.set_port(listen.port());
        }
        let socket = udp_socket(listen).map_err(|e| StackError::Listen(listen, e.to_string()))?;
        let udp = UdpConnection::from_socket(Arc::new(socket), Some(public), Some(shutdown.child_token())).await.map_err(listen_error)?;
        transports.add_transport(udp.into());
        if options.tcp {
            let tcp = TcpListenerConnection::new(listen, Some(public)).await.map_err(listen_error)?;
            transports.add_transport(tcp.into());
        }
        let mut builder = EndpointBuilder::new();
        if let Some(tracer) = options.tracer {
            builder.with_inspector(Box::new(tracer));
        }
        let endpoint = builder
            .with_cancel_token(shutdown.clone())
            .with_transport_layer(transports)
            .with_user_agent(&options.user_agent)
            .with_allows(vec![Method::Invite, Method::Ack, Method::Cancel, Method::Bye, Method::Options, Method::Info, Method::Update])
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let stack = Arc::new(SipStack { endpoint, dialogs, public, shutdown, outbound_proxy: options.outbound_proxy });
        let serving = stack.clone();
        tokio::spawn(async move { serving.endpoint.serve().await });
        tokio::spawn(answer_incoming(stack.dialogs.clone(), incoming, options.invites));
        Ok(stack)
    }

    pub fn public_address(&self) -> SocketAddr {
        self.public
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Where a call's INVITE (and its CANCEL) is sent: the outbound proxy, else the trunk.
    /// In-dialog requests then follow the dialog's route set (the proxy's Record-Route).
    pub fn next_hop(&self, route: &TrunkRoute) -> Destination {
        self.outbound_proxy.clone().unwrap_or_else(|| Destination { transport: route.transport, host: route.host.clone(), port: route.port })
    }

    pub fn has_outbound_proxy(&self) -> bool {
        self.outbound_proxy.is_some()
    }

    /// Sends an INVITE; its responses arrive on the returned invitation.
    pub fn invite(&self, spec: InviteSpec<'_>) -> Result<Invitation, StackError> {
        let route = spec.route;
        let sip_error = |what: &str, e: rsipstack::sip::Error| StackError::Sip(format!("{what}: {e}"));
        let mut extra = spec.headers;
        if self.outbound_proxy.is_some() {
            extra.retain(|(name, _)| !name.to_ascii_lowercase().starts_with(PROXY_HEADER_PREFIX));
            extra.splice(0..0, proxy_headers(route));
        }
        let mut headers: Vec<Header> = extra.into_iter().map(|(name, value)| Header::Other(name, value)).collect();
        headers.push(Header::ContentType("application/sdp".to_string().into()));
        let (states_tx, states) = self.dialogs.new_dialog_state_channel();
        let option = InviteOption {
            caller_display_name: spec.display_name,
            caller: rsipstack::sip::Uri::try_from(spec.from.as_str()).map_err(|e| sip_error("bad From URI", e))?,
            callee: rsipstack::sip::Uri::try_from(spec.target.as_str()).map_err(|e| sip_error("bad Request-URI", e))?,
            destination: Some(sip_addr(&self.next_hop(route))),
            content_type: Some("application/sdp".into()),
            offer: Some(spec.sdp.into_bytes()),
            contact: self.contact_uri(route.transport),
            credential: route.username.as_ref().map(|username| rsipstack::dialog::authenticate::Credential {
                username: username.clone(),
                password: route.password.clone().unwrap_or_default(),
                realm: None,
                auth_username: None,
            }),
            headers: Some(headers),
            call_id: Some(spec.call_id),
            ..Default::default()
        };
        let (dialog, outcome) = self.dialogs.do_invite_async(option, states_tx)?;
        Ok(Invitation { dialog, states, outcome })
    }

    pub fn contact_uri(&self, transport: SipTransport) -> rsipstack::sip::Uri {
        let suffix = if transport == SipTransport::Tcp { ";transport=tcp" } else { "" };
        rsipstack::sip::Uri::try_from(format!("sip:outdial@{}{suffix}", self.public).as_str()).expect("our own Contact parses")
    }

    /// BYE (CANCEL while ringing) for every call of this instance still up.
    pub async fn hang_up_all(&self) {
        let dialogs: Vec<_> = self.dialogs.all_dialog_ids().iter().filter_map(|id| self.dialogs.get_dialog_with(id)).collect();
        let hangups = dialogs.into_iter().map(|dialog| async move {
            if let rsipstack::dialog::dialog::Dialog::Invite(invite) = dialog {
                let _ = invite.hangup().await;
            }
        });
        futures_util::future::join_all(hangups).await;
    }

    /// Forgets a dialog that ended (the stack keeps confirmed dialogs until told).
    pub fn forget(&self, id: &DialogId) {
        self.dialogs.remove_dialog(id);
    }

    /// Ends a dialog another instance set up, from the state it stored: BYE with the next CSeq.
    pub async fn bye_recorded(&self, record: &DialogRecord) -> Result<(), StackError> {
        let snapshot = record.to_snapshot()?;
        let id = snapshot.id.clone();
        let (states_tx, _states) = self.dialogs.new_dialog_state_channel();
        self.dialogs.restore_from_snapshot(snapshot, states_tx)?;
        let result = match self.dialogs.get_dialog(&id) {
            Some(rsipstack::dialog::dialog::Dialog::Invite(dialog)) => dialog.bye().await.map_err(StackError::from),
            _ => Err(StackError::Sip("the restored dialog is not an INVITE dialog".into())),
        };
        self.dialogs.remove_dialog(&id);
        result
    }

    /// Cancels an INVITE another instance sent, from the request it stored (same Via branch,
    /// CSeq number and tags, as RFC 3261 §9.1 requires). The 487 goes to that instance's
    /// address; the CANCEL's own 200 comes here.
    pub async fn cancel_recorded(&self, record: &InviteRecord) -> Result<u16, StackError> {
        let mut request = record.request()?;
        request.headers.retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_) | Header::Other(..)));
        let seq = request.cseq_header().map_err(|e| StackError::Sip(e.to_string()))?.seq().map_err(|e| StackError::Sip(e.to_string()))?;
        request.method = Method::Cancel;
        request
            .cseq_header_mut()
            .map_err(|e| StackError::Sip(e.to_string()))?
            .mut_seq(seq)
            .and_then(|c| c.mut_method(Method::Cancel))
            .map_err(|e| StackError::Sip(e.to_string()))?;
        request.body = vec![];
        request.headers.push(Header::ContentLength(0u32.into()));
        let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, request, self.endpoint.inner.clone(), None);
        tx.destination = Some(sip_addr(&record.destination));
        tx.send().await?;
        let wait = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(message) = tx.receive().await {
                if let rsipstack::sip::SipMessage::Response(response) = message {
                    if response.status_code.kind() != rsipstack::sip::StatusCodeKind::Provisional {
                        return Some(response.status_code.code());
                    }
                }
            }
            None
        });
        Ok(wait.await.ok().flatten().unwrap_or(408))
    }
}

/// What the outbound proxy needs to hold a trunk's limits for the cluster (deploy/kamailio):
/// the trunk's id (its pipe and dialog profile) and its cps and max_channels when it has them.
fn proxy_headers(route: &TrunkRoute) -> Vec<(String, String)> {
    if route.trunk_id.is_nil() {
        return vec![];
    }
    let mut headers = vec![("X-Outdial-Trunk-Id".to_string(), route.trunk_id.to_string())];
    if let Some(cps) = route.cps {
        headers.push(("X-Outdial-Trunk-Cps".into(), cps.to_string()));
    }
    if let Some(channels) = route.max_channels {
        headers.push(("X-Outdial-Trunk-Channels".into(), channels.to_string()));
    }
    headers
}

pub fn sip_addr(destination: &Destination) -> SipAddr {
    let transport = match destination.transport {
        SipTransport::Udp => rsipstack::sip::Transport::Udp,
        SipTransport::Tcp => rsipstack::sip::Transport::Tcp,
    };
    let host_port = format!("{}:{}", bracket(&destination.host), destination.port);
    let host_with_port = rsipstack::sip::HostWithPort::try_from(host_port.as_str())
        .unwrap_or_else(|_| rsipstack::sip::HostWithPort::from(SocketAddr::from(([127, 0, 0, 1], destination.port))));
    SipAddr { r#type: Some(transport), addr: host_with_port }
}

/// An IPv6 literal in a URI or host:port goes in brackets.
pub fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Requests that belong to none of our calls: in-dialog ones go to their dialog; OPTIONS (a
/// trunk's or a proxy's keep-alive probe) is answered 200; anything else is refused with the
/// code RFC 3261 gives it. A malformed message never reaches here: the stack answers 400.
async fn answer_incoming(dialogs: Arc<DialogLayer>, mut incoming: rsipstack::transaction::TransactionReceiver, invites: tokio::sync::mpsc::UnboundedSender<Transaction>) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut dialog) = dialogs.match_dialog(&tx) {
            tokio::spawn(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    tracing::debug!(error = %e, "in-dialog request failed");
                }
            });
            continue;
        }
        let in_dialog = tx.original.to_header().ok().and_then(|to| to.tag().ok().flatten()).is_some();
        let reply = match tx.original.method {
            Method::Ack => continue,
            Method::Options => {
                let allow = Header::Allow("INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE".to_string().into());
                let accept = Header::Accept("application/sdp".to_string().into());
                tokio::spawn(async move {
                    let _ = tx.reply_with(StatusCode::OK, vec![allow, accept], None).await;
                });
                continue;
            }
            _ if in_dialog => StatusCode::CallTransactionDoesNotExist,
            Method::Bye | Method::Cancel => StatusCode::CallTransactionDoesNotExist,
            // A new call: the carrier offers it to the engine.
            Method::Invite => match invites.send(tx) {
                Ok(()) => continue,
                Err(refused) => {
                    let mut tx = refused.0;
                    tokio::spawn(async move {
                        let _ = tx.reply(StatusCode::ServiceUnavailable).await;
                    });
                    continue;
                }
            },
            _ => StatusCode::MethodNotAllowed,
        };
        tokio::spawn(async move {
            let _ = tx.reply(reply).await;
        });
    }
}

impl DialogRecord {
    fn to_snapshot(&self) -> Result<DialogSnapshot, StackError> {
        let bad = |what: &str, e: rsipstack::sip::Error| StackError::Sip(format!("stored dialog: bad {what}: {e}"));
        let uri = |s: &str, what: &str| rsipstack::sip::Uri::try_from(s).map_err(|e| bad(what, e));
        let route_set = self
            .route_set
            .iter()
            .map(|r| rsipstack::sip::Route::from(r.clone()))
            .collect::<Vec<_>>();
        Ok(DialogSnapshot {
            state: DialogSnapshotState::Confirmed,
            role: if self.server { TransactionRole::Server } else { TransactionRole::Client },
            id: DialogId { call_id: self.call_id.clone(), local_tag: self.local_tag.clone(), remote_tag: self.remote_tag.clone() },
            from: rsipstack::sip::From::from(self.from.clone()).typed().map_err(|e| bad("From", e))?,
            to: rsipstack::sip::To::from(self.to.clone()).typed().map_err(|e| bad("To", e))?,
            local_cseq: self.local_cseq,
            remote_cseq: self.remote_cseq,
            local_contact: self.local_contact.as_deref().map(|c| uri(c, "Contact")).transpose()?,
            remote_uri: uri(&self.remote_uri, "remote target")?,
            remote_contact: None,
            route_set,
            supports_100rel: false,
            session_id: None,
        })
    }

    pub fn from_snapshot(snapshot: &DialogSnapshot, destination: Destination) -> DialogRecord {
        DialogRecord {
            call_id: snapshot.id.call_id.clone(),
            local_tag: snapshot.id.local_tag.clone(),
            remote_tag: snapshot.id.remote_tag.clone(),
            from: snapshot.from.to_string(),
            to: snapshot.to.to_string(),
            local_cseq: snapshot.local_cseq,
            remote_cseq: snapshot.remote_cseq,
            local_contact: snapshot.local_contact.as_ref().map(|u| u.to_string()),
            remote_uri: snapshot.remote_uri.to_string(),
            route_set: snapshot.route_set.iter().map(|r| r.to_string()).collect(),
            destination,
            server: false,
        }
    }
}

impl InviteRecord {
    pub fn of(request: &rsipstack::sip::Request, destination: Destination) -> InviteRecord {
        let mut headers_only = request.clone();
        headers_only.body = vec![];
        InviteRecord { request: headers_only.to_string(), destination }
    }

    fn request(&self) -> Result<rsipstack::sip::Request, StackError> {
        match rsipstack::sip::SipMessage::try_from(self.request.as_str()) {
            Ok(rsipstack::sip::SipMessage::Request(r)) => Ok(r),
            Ok(_) => Err(StackError::Sip("stored INVITE is a response".into())),
            Err(e) => Err(StackError::Sip(format!("stored INVITE does not parse: {e}"))),
        }
    }
}
