//! DTMF as RFC 4733 telephone-events, both ways.
//!
//! Sending: each digit is a 100 ms event: one packet per 20 ms tick, all with the event's
//! start timestamp, `duration` growing by 160, marker on the first; then the end packet three
//! times with distinct sequence numbers (baresip's jitter buffer drops repeated ones), one per
//! tick; then 40 ms of audio before the next digit (100 ms from tone end to tone start). `p` is a 500 ms pause (Vonage's `PUT /dtmf`). Audio
//! frames pause while an event is sent (the tick sends the event packet instead).
//!
//! Receiving: one report per event (keyed by its timestamp), when its end packet arrives; an
//! event whose end packets are all lost is reported when the next one starts or after
//! `END_TIMEOUT` without packets.

use audio_codec::telephone_event::{digit_to_event, encode_event_payload, event_to_digit, parse_telephone_event};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Clip, FRAME_SAMPLES};

/// Tone length of a sent digit, in 8 kHz samples (100 ms).
pub const TONE_SAMPLES: u32 = 800;
/// Times the end packet is sent.
const END_PACKETS: u32 = 3;
/// Ticks of audio after the end packets before the next digit (with the 60 ms of end packets,
/// 100 ms between tones).
const GAP_TICKS: u32 = 2;
/// `p`: 500 ms.
const PAUSE_TICKS: u32 = 25;
/// The volume field: -10 dBm0, what most phones send.
const VOLUME: u8 = 10;
/// An event with no packet for this long has ended even if no end packet came.
pub const END_TIMEOUT: Duration = Duration::from_millis(250);

/// Vonage's digits plus RFC 4733's A-D; `p` pauses.
pub fn valid_digit(c: char) -> bool {
    c == 'p' || c == 'P' || digit_to_event(c).is_some()
}

/// In-band DTMF (dual tones, 100 ms each with 100 ms between, `p` 500 ms of silence) for a
/// far end that negotiated no telephone-event.
pub fn tones(digits: &str) -> Clip {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    let tone = (TONE_SAMPLES) as usize;
    let mut samples = Vec::new();
    for c in digits.chars().map(|c| c.to_ascii_uppercase()) {
        let position = KEYS.iter().enumerate().find_map(|(r, keys)| keys.find(c).map(|col| (r, col)));
        let Some((row, column)) = position else {
            samples.resize(samples.len() + PAUSE_TICKS as usize * FRAME_SAMPLES, 0);
            continue;
        };
        let (low, high) = (ROWS[row], COLUMNS[column]);
        let rate = super::SAMPLE_RATE as f32;
        samples.extend((0..tone).map(|i| {
            let t = i as f32 / rate;
            let v = (2.0 * std::f32::consts::PI * low * t).sin() + (2.0 * std::f32::consts::PI * high * t).sin();
            (v * 0.25 * i16::MAX as f32) as i16
        }));
        samples.resize(samples.len() + tone, 0);
    }
    Clip::new(samples)
}

/// One telephone-event packet to send this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    /// The event's start: the RTP timestamp of every packet of the event.
    pub timestamp: u32,
    pub marker: bool,
}

#[derive(Debug)]
enum Step {
    Tone { event: u8, start: u32 },
    End { event: u8, start: u32, sent: u32 },
    /// Audio ticks left before the next digit.
    Wait(u32),
}

/// The digits queued on a leg and the one being sent.
#[derive(Default)]
pub(crate) struct DtmfSender {
    queue: VecDeque<char>,
    step: Option<Step>,
}

impl DtmfSender {
    pub fn push(&mut self, digits: &str) {
        self.queue.extend(digits.chars());
    }

    pub fn is_idle(&self) -> bool {
        self.step.is_none() && self.queue.is_empty()
    }

    /// The event packet for the tick whose audio timestamp is `now`, or None to send audio.
    pub fn next(&mut self, now: u32) -> Option<EventPacket> {
        loop {
            match self.step.take() {
                None => {
                    let c = self.queue.pop_front()?;
                    self.step = Some(match digit_to_event(c) {
                        Some(event) => Step::Tone { event, start: now },
                        None => Step::Wait(PAUSE_TICKS),
                    });
                }
                Some(Step::Tone { event, start }) => {
                    // Duration from the timestamps, so ticks skipped under load still count.
                    let duration = now.wrapping_sub(start) + FRAME_SAMPLES as u32;
                    let end = duration > TONE_SAMPLES;
                    self.step = Some(if end { Step::End { event, start, sent: 1 } } else { Step::Tone { event, start } });
                    return Some(EventPacket {
                        payload: encode_event_payload(event, end, VOLUME, duration.min(TONE_SAMPLES) as u16),
                        timestamp: start,
                        marker: now == start,
                    });
                }
                Some(Step::End { event, start, sent }) => {
                    if sent < END_PACKETS {
                        self.step = Some(Step::End { event, start, sent: sent + 1 });
                        return Some(EventPacket {
                            payload: encode_event_payload(event, true, VOLUME, TONE_SAMPLES as u16),
                            timestamp: start,
                            marker: false,
                        });
                    }
                    self.step = Some(Step::Wait(GAP_TICKS));
                }
                Some(Step::Wait(0)) => {}
                Some(Step::Wait(ticks)) => {
                    self.step = Some(Step::Wait(ticks - 1));
                    return None;
                }
            }
        }
    }
}

/// A received digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: char,
    pub duration_ms: u32,
}

struct Ongoing {
    timestamp: u32,
    event: u8,
    duration: u16,
    last_packet: Instant,
}

#[derive(Default)]
pub(crate) struct DtmfReceiver {
    ongoing: Option<Ongoing>,
    /// Timestamps of the last events reported, so their repeated end packets are ignored.
    reported: VecDeque<u32>,
}

impl DtmfReceiver {
    /// Handles one telephone-event payload; pushes the digits it completes onto `out`.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8], now: Instant, out: &mut Vec<ReceivedDigit>) {
        let Some(event) = parse_telephone_event(payload) else { return };
        if event.event > 15 || self.reported.contains(&timestamp) {
            return;
        }
        match &mut self.ongoing {
            Some(ongoing) if ongoing.timestamp == timestamp => {
                ongoing.duration = ongoing.duration.max(event.duration);
                ongoing.last_packet = now;
            }
            _ => {
                self.flush(out);
                self.ongoing =
                    Some(Ongoing { timestamp, event: event.event, duration: event.duration, last_packet: now });
            }
        }
        if event.end {
            self.flush(out);
        }
    }

    /// Reports an event whose end packets never came.
    pub fn on_tick(&mut self, now: Instant, out: &mut Vec<ReceivedDigit>) {
        if self.ongoing.as_ref().is_some_and(|o| now.duration_since(o.last_packet) >= END_TIMEOUT) {
            self.flush(out);
        }
    }

    fn flush(&mut self, out: &mut Vec<ReceivedDigit>) {
        let Some(ongoing) = self.ongoing.take() else { return };
        if self.reported.len() == 8 {
            self.reported.pop_front();
        }
        self.reported.push_back(ongoing.timestamp);
        out.push(ReceivedDigit { digit: event_to_digit(ongoing.event), duration_ms: ongoing.duration as u32 / 8 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_codec::telephone_event::DtmfEvent;

    fn run(sender: &mut DtmfSender, ticks: u32) -> Vec<Option<EventPacket>> {
        (0..ticks).map(|t| sender.next(1000 + t * 160)).collect()
    }

    #[test]
    fn a_digit_is_five_growing_packets_three_ends_then_audio() {
        let mut sender = DtmfSender::default();
        sender.push("5p#");
        let packets = run(&mut sender, 10 + 25 + 10 + 1);
        let events: Vec<DtmfEvent> =
            packets[..8].iter().map(|p| parse_telephone_event(&p.unwrap().payload).unwrap()).collect();
        let durations: Vec<u16> = events.iter().map(|e| e.duration).collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800, 800]);
        assert_eq!(events.iter().map(|e| e.end).collect::<Vec<_>>(), [false, false, false, false, false, true, true, true]);
        assert!(packets[..8].iter().all(|p| p.unwrap().timestamp == 1000 && p.unwrap().event_is(5)));
        assert!(packets[0].unwrap().marker && !packets[1].unwrap().marker);
        assert_eq!(packets[8..10], [None, None]);
        // `p`: 25 audio ticks, then '#'.
        assert!(packets[10..35].iter().all(Option::is_none));
        let pound = packets[35].unwrap();
        assert!(pound.marker && pound.event_is(11) && pound.timestamp == 1000 + 35 * 160);
        assert!(packets[36..43].iter().all(Option::is_some) && packets[43..45].iter().all(Option::is_none));
        assert!(packets[45].is_none() && sender.is_idle());
    }

    impl EventPacket {
        fn event_is(&self, event: u8) -> bool {
            self.payload[0] == event
        }
    }

    #[test]
    fn each_event_is_reported_once_with_its_duration() {
        let mut receiver = DtmfReceiver::default();
        let mut out = Vec::new();
        let now = Instant::now();
        for d in [160u16, 320, 480] {
            receiver.on_packet(8000, &encode_event_payload(1, false, 10, d), now, &mut out);
        }
        assert!(out.is_empty());
        for _ in 0..3 {
            receiver.on_packet(8000, &encode_event_payload(1, true, 10, 800), now, &mut out);
        }
        assert_eq!(out, vec![ReceivedDigit { digit: '1', duration_ms: 100 }]);
        // '#' loses its end packets: reported when '2' starts; '2' by the timeout.
        receiver.on_packet(16000, &encode_event_payload(11, false, 10, 640), now, &mut out);
        receiver.on_packet(24000, &encode_event_payload(2, false, 10, 160), now, &mut out);
        assert_eq!(out[1], ReceivedDigit { digit: '#', duration_ms: 80 });
        receiver.on_tick(now + Duration::from_millis(100), &mut out);
        assert_eq!(out.len(), 2);
        receiver.on_tick(now + END_TIMEOUT, &mut out);
        assert_eq!(out[2], ReceivedDigit { digit: '2', duration_ms: 20 });
    }
}
