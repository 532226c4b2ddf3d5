//! Audio only (DESIGN § Telephony): clips, decoding, text-to-speech; no SIP, no SQL, no HTTP.
pub mod cache;
pub mod clip;
pub mod decode;
pub mod tts;
