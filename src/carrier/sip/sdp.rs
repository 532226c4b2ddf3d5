//! The session description of a leg's audio: our offer (G.711 µ-law and A-law, RFC 4733
//! telephone-events, 20 ms packets) and what the far end's answer chose. Built and parsed with
//! the `sdp` crate (webrtc-rs; plain RFC 4566, no WebRTC assumptions).

use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};
use std::net::{IpAddr, SocketAddr};

/// RTP payload type of RFC 4733 telephone-events in our offer.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// A G.711 codec the answer may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    #[serde(rename = "PCMU")]
    Pcmu,
    #[serde(rename = "PCMA")]
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }
}

/// What an answer (or an offer from the far end) says about its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where the far end wants our RTP.
    pub address: SocketAddr,
    /// The first G.711 codec it lists.
    pub codec: Codec,
    /// Its payload type for telephone-events, when it takes them.
    pub telephone_event: Option<u8>,
    /// a=sendonly / a=inactive or a 0.0.0.0 address: the far end put us on hold.
    pub on_hold: bool,
}

/// Our description: `address` is where our RTP socket listens, as the far end must reach it.
pub fn offer(address: SocketAddr, session_id: u64, version: u64) -> String {
    describe(address, session_id, version, &[Codec::Pcmu, Codec::Pcma], Some(TELEPHONE_EVENT_PT), "sendrecv")
}

/// Our answer to an offer the far end sent (a re-INVITE): the codec already in use, the
/// direction mirrored (RFC 3264 §6.1: sendonly is answered recvonly, inactive inactive).
pub fn answer(address: SocketAddr, session_id: u64, version: u64, codec: Codec, telephone_event: Option<u8>, far_direction: &str) -> String {
    let direction = match far_direction {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    };
    describe(address, session_id, version, &[codec], telephone_event, direction)
}

fn describe(address: SocketAddr, session_id: u64, version: u64, codecs: &[Codec], telephone_event: Option<u8>, direction: &str) -> String {
    let address_type = if address.is_ipv4() { "IP4" } else { "IP6" };
    let mut formats: Vec<String> = codecs.iter().map(|c| c.payload_type().to_string()).collect();
    let mut attributes: Vec<Attribute> =
        codecs.iter().map(|c| Attribute::new("rtpmap".into(), Some(format!("{} {}/8000", c.payload_type(), c.name())))).collect();
    if let Some(pt) = telephone_event {
        formats.push(pt.to_string());
        attributes.push(Attribute::new("rtpmap".into(), Some(format!("{pt} telephone-event/8000"))));
        attributes.push(Attribute::new("fmtp".into(), Some(format!("{pt} 0-16"))));
    }
    attributes.push(Attribute::new("ptime".into(), Some("20".into())));
    attributes.push(Attribute::new(direction.into(), None));
    let description = SessionDescription {
        origin: Origin {
            username: "outdial".into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: address_type.into(),
            unicast_address: address.ip().to_string(),
        },
        session_name: "outdial".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: address_type.into(),
            address: Some(Address { address: address.ip().to_string(), ttl: None, range: None }),
        }),
        time_descriptions: vec![TimeDescription { timing: Timing { start_time: 0, stop_time: 0 }, repeat_times: vec![] }],
        media_descriptions: vec![MediaDescription {
            media_name: MediaName {
                media: "audio".into(),
                port: RangedPort { value: address.port() as isize, range: None },
                protos: vec!["RTP".into(), "AVP".into()],
                formats,
            },
            attributes,
            ..Default::default()
        }],
        ..Default::default()
    };
    description.marshal()
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SdpError {
    #[error("the SDP does not parse: {0}")]
    Syntax(String),
    #[error("the SDP has no audio stream")]
    NoAudio,
    #[error("the SDP has no connection address")]
    NoAddress,
    #[error("the SDP offers neither PCMU nor PCMA")]
    NoCommonCodec,
}

/// Reads the far end's description of its audio.
pub fn parse(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    let mut reader = std::io::Cursor::new(body);
    let description = SessionDescription::unmarshal(&mut reader).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let audio = description
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value > 0)
        .ok_or(SdpError::NoAudio)?;
    let connection = audio
        .connection_information
        .as_ref()
        .or(description.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or(SdpError::NoAddress)?;
    let ip: IpAddr = connection.address.parse().map_err(|_| SdpError::NoAddress)?;
    let port = u16::try_from(audio.media_name.port.value).map_err(|_| SdpError::NoAudio)?;
    let codec = audio
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find_map(Codec::from_payload_type)
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event = audio.attributes.iter().filter(|a| a.key == "rtpmap").find_map(|a| {
        let value = a.value.as_deref()?;
        let (pt, encoding) = value.split_once(' ')?;
        encoding.to_ascii_lowercase().starts_with("telephone-event/8000").then(|| pt.parse().ok()).flatten()
    });
    let direction = direction_of(audio, &description);
    Ok(RemoteMedia {
        address: SocketAddr::new(ip, port),
        codec,
        telephone_event,
        on_hold: ip.is_unspecified() || direction == "sendonly" || direction == "inactive",
    })
}

/// The stream's direction attribute (media level, else session level, else sendrecv).
pub fn direction(body: &[u8]) -> String {
    let mut reader = std::io::Cursor::new(body);
    let Ok(description) = SessionDescription::unmarshal(&mut reader) else { return "sendrecv".into() };
    match description.media_descriptions.iter().find(|m| m.media_name.media == "audio") {
        Some(audio) => direction_of(audio, &description).to_string(),
        None => "sendrecv".into(),
    }
}

fn direction_of<'a>(audio: &'a MediaDescription, session: &'a SessionDescription) -> &'static str {
    const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let find = |attributes: &[Attribute]| DIRECTIONS.into_iter().find(|d| attributes.iter().any(|a| a.key == *d));
    find(&audio.attributes).or_else(|| find(&session.attributes)).unwrap_or("sendrecv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_both_g711_codecs_and_telephone_events() {
        let sdp = offer("127.0.0.1:20000".parse().unwrap(), 1, 1);
        assert!(sdp.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000"), "{sdp}");
        assert!(sdp.contains("a=ptime:20"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
        let parsed = parse(sdp.as_bytes()).unwrap();
        assert_eq!(parsed.codec, Codec::Pcmu);
        assert_eq!(parsed.telephone_event, Some(101));
        assert_eq!(parsed.address, "127.0.0.1:20000".parse().unwrap());
    }

    #[test]
    fn answer_choosing_pcma_is_read() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.codec, Codec::Pcma);
        assert_eq!(parsed.telephone_event, Some(96));
        assert_eq!(parsed.address, "10.0.0.5:4000".parse().unwrap());
        assert!(!parsed.on_hold);
    }

    #[test]
    fn hold_and_bad_answers() {
        let hold = "v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        assert!(parse(hold.as_bytes()).unwrap().on_hold);
        assert_eq!(direction(hold.as_bytes()), "sendonly");
        let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
        assert_eq!(parse(g729.as_bytes()), Err(SdpError::NoCommonCodec));
        assert!(matches!(parse(b"garbage"), Err(SdpError::Syntax(_))));
    }
}
