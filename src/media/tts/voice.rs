//! A TTS voice from Vonage's `language` and `style`.
//!
//! Every language Vonage lists maps to an espeak-ng voice, the nearest one where espeak-ng has
//! no exact match (en-AU/en-IN/en-ZA speak British English, fr-CA French, cmn-TW Mandarin,
//! fil-PH American English). `style` picks an espeak-ng variant (timbre); `premium` has no
//! meaning here and is ignored. CJK voices (ja-JP, cmn-*, yue-CN) are of poor quality in
//! espeak-ng: `ja` reads kanji as "Chinese letter". Use the HTTP engine for better voices.

/// Vonage language code → espeak-ng voice. Within a language the first row is the one a bare
/// primary subtag (`en`, `es`) or an unknown region (`en-NZ`, `de-AT`) falls back to.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "ar"),
    ("bn-IN", "bn"),
    ("ca-ES", "ca"),
    ("cmn-CN", "cmn"),
    ("cmn-TW", "cmn"),
    ("cs-CZ", "cs"),
    ("cy-GB", "cy"),
    ("da-DK", "da"),
    ("de-DE", "de"),
    ("el-GR", "el"),
    ("en-US", "en-us"),
    ("en-GB", "en-gb"),
    ("en-GB-WLS", "en-gb-x-gbcwmd"),
    ("en-AU", "en-gb"),
    ("en-IN", "en-gb"),
    ("en-ZA", "en-gb"),
    ("es-ES", "es"),
    ("es-MX", "es-419"),
    ("es-US", "es-419"),
    ("eu-ES", "eu"),
    ("fi-FI", "fi"),
    ("fil-PH", "en-us"),
    ("fr-FR", "fr-fr"),
    ("fr-CA", "fr-fr"),
    ("he-IL", "he"),
    ("hi-IN", "hi"),
    ("hu-HU", "hu"),
    ("id-ID", "id"),
    ("is-IS", "is"),
    ("it-IT", "it"),
    ("ja-JP", "ja"),
    ("ko-KR", "ko"),
    ("ml-IN", "ml"),
    ("nb-NO", "nb"),
    ("nl-NL", "nl"),
    ("no-NO", "nb"),
    ("pl-PL", "pl"),
    ("pt-PT", "pt"),
    ("pt-BR", "pt-br"),
    ("ro-RO", "ro"),
    ("ru-RU", "ru"),
    ("sk-SK", "sk"),
    ("sv-SE", "sv"),
    ("ta-IN", "ta"),
    ("te-IN", "te"),
    ("th-TH", "th"),
    ("tr-TR", "tr"),
    ("uk-UA", "uk"),
    ("vi-VN", "vi"),
    ("yue-CN", "yue"),
];

/// espeak-ng variants by `style % 6`; style 0 is the plain voice.
const VARIANTS: [&str; 6] = ["", "+f3", "+m3", "+f2", "+m7", "+f4"];

/// Vonage's default language.
pub const DEFAULT_LANGUAGE: &str = "en-US";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voice {
    /// The Vonage code: the table's spelling when known ("en-us" → "en-US"), else as given.
    pub language: String,
    pub style: u32,
    /// The espeak-ng voice, e.g. "en-us".
    pub espeak_voice: &'static str,
    /// The espeak-ng variant for `style`, e.g. "+f3"; "" for the plain voice.
    pub espeak_variant: &'static str,
    /// Set when the language is not one of Vonage's: which voice speaks instead (for a log line).
    pub note: Option<String>,
}

impl Voice {
    /// The voice for a `talk`'s `language` (None: en-US) and `style` (None: 0). Unknown
    /// languages are not refused: a known region of the same language speaks, else en-US.
    pub fn new(language: Option<&str>, style: Option<u32>) -> Voice {
        let style = style.unwrap_or(0);
        let espeak_variant = VARIANTS[(style % VARIANTS.len() as u32) as usize];
        let requested = language.map(str::trim).filter(|l| !l.is_empty()).unwrap_or(DEFAULT_LANGUAGE);
        if let Some((code, espeak)) = LANGUAGES.iter().find(|(code, _)| code.eq_ignore_ascii_case(requested)) {
            return Voice { language: code.to_string(), style, espeak_voice: espeak, espeak_variant, note: None };
        }
        let primary = requested.split(['-', '_']).next().unwrap_or(requested);
        let same_language =
            LANGUAGES.iter().find(|(code, _)| code.split('-').next().is_some_and(|p| p.eq_ignore_ascii_case(primary)));
        let (fallback, espeak) = same_language.copied().unwrap_or((DEFAULT_LANGUAGE, "en-us"));
        Voice {
            language: requested.to_string(),
            style,
            espeak_voice: espeak,
            espeak_variant,
            note: Some(format!("language {requested} is not one Vonage lists; speaking it as {fallback}")),
        }
    }

    /// The `-v` argument of espeak-ng, e.g. "en-us+f3".
    pub fn espeak_name(&self) -> String {
        format!("{}{}", self.espeak_voice, self.espeak_variant)
    }
}

impl Default for Voice {
    fn default() -> Voice {
        Voice::new(None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_unknown_and_styled_languages() {
        let v = Voice::new(Some("en-us"), Some(1));
        assert_eq!((v.language.as_str(), v.espeak_name().as_str(), v.note.is_none()), ("en-US", "en-us+f3", true));
        let v = Voice::new(Some("de-AT"), None);
        assert_eq!((v.language.as_str(), v.espeak_voice), ("de-AT", "de"));
        assert!(v.note.as_deref().unwrap().contains("de-DE"));
        let v = Voice::new(Some("xx-YY"), Some(6));
        assert_eq!((v.espeak_voice, v.espeak_variant), ("en-us", ""));
        assert!(v.note.is_some());
        assert_eq!(Voice::new(Some("en"), None).espeak_voice, "en-us");
        assert_eq!(Voice::default().language, "en-US");
    }
}
