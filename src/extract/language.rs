//! The language to answer in: en, de, fr or es, by counting common
//! function words (stopwords) in the customer's folded fresh text.
//!
//! A language other than English wins only with at least
//! [`MIN_STOPWORDS`] hits and strictly more hits than English; otherwise
//! the answer is English (the fallback when unsure). Ties among de, fr and
//! es go to the one listed first (de, fr, es). Words shared by several
//! languages (`la`, `de`, `que`) are left out of the lists on purpose.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::domain::Language;

/// Fewest stopword hits for a non-English language to win.
pub const MIN_STOPWORDS: usize = 2;

/// Stopwords, folded (see `fold`): lowercase, umlauts as `ae`/`oe`/`ue`,
/// no accents.
const EN: &[&str] = &[
    "the", "and", "i", "you", "my", "is", "it", "to", "of", "for", "this", "that", "was", "with",
    "have", "please", "would", "me", "on", "but", "are", "your", "can", "thanks", "thank", "hi",
    "hello", "dear", "not", "an", "what", "just", "like", "did", "does", "got", "want", "be",
];
const DE: &[&str] = &[
    "und", "ich", "die", "der", "das", "nicht", "ist", "mit", "ein", "eine", "einen", "mein",
    "meine", "meinen", "bitte", "fuer", "auf", "es", "sie", "zu", "den", "dem", "habe", "hallo",
    "danke", "wurde", "mir", "mich", "wie", "aber", "auch", "noch", "kein", "keine", "von",
    "vielen", "gruesse", "gruss", "sehr", "geehrte", "geehrter", "ihr", "ihre", "wir", "hat",
];
const FR: &[&str] = &[
    "le",
    "les",
    "et",
    "je",
    "un",
    "une",
    "des",
    "du",
    "est",
    "pas",
    "pour",
    "mon",
    "ma",
    "mes",
    "avec",
    "vous",
    "bonjour",
    "merci",
    "ce",
    "qui",
    "dans",
    "sur",
    "ai",
    "suis",
    "ne",
    "cordialement",
    "votre",
    "vos",
    "au",
    "aux",
    "mais",
    "j'ai",
    "c'est",
    "n'est",
    "il",
    "elle",
    "madame",
    "monsieur",
];
const ES: &[&str] = &[
    "el",
    "los",
    "las",
    "y",
    "mi",
    "mis",
    "por",
    "con",
    "una",
    "es",
    "hola",
    "gracias",
    "pero",
    "para",
    "muy",
    "lo",
    "se",
    "quiero",
    "su",
    "del",
    "al",
    "esta",
    "estoy",
    "saludos",
    "como",
    "yo",
    "fue",
    "ha",
    "he",
    "tengo",
    "puedo",
    "favor",
    "usted",
    "estimados",
    "buenos",
    "dias",
];

/// Each stopword with the languages (bit 0 en, 1 de, 2 fr, 3 es) it counts for.
static STOPWORDS: LazyLock<HashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for (bit, list) in [EN, DE, FR, ES].into_iter().enumerate() {
        for word in list {
            *map.entry(*word).or_insert(0) |= 1 << bit;
        }
    }
    map
});

/// The language of `folded` text (already folded by `fold_text`).
pub fn detect(folded: &str) -> Language {
    let mut counts = [0usize; 4];
    let words = folded
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty());
    for word in words {
        let Some(bits) = STOPWORDS.get(word) else {
            continue;
        };
        for (bit, count) in counts.iter_mut().enumerate() {
            if bits & (1 << bit) != 0 {
                *count += 1;
            }
        }
    }
    let [en, de, fr, es] = counts;
    let (best, hits) = [(Language::De, de), (Language::Fr, fr), (Language::Es, es)]
        .into_iter()
        .fold(
            (Language::En, 0),
            |best, (lang, n)| if n > best.1 { (lang, n) } else { best },
        );
    if hits >= MIN_STOPWORDS && hits > en {
        best
    } else {
        Language::En
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::fold::fold_text;

    #[test]
    fn the_language_is_the_one_with_most_stopwords() {
        let cases = [
            (
                "Hello, I would like a refund for my order please.",
                Language::En,
            ),
            (
                "Hallo, ich möchte bitte eine Rückerstattung für meine Bestellung.",
                Language::De,
            ),
            (
                "Bonjour, je voudrais être remboursé pour ma commande, merci.",
                Language::Fr,
            ),
            (
                "Hola, quiero un reembolso por favor, gracias.",
                Language::Es,
            ),
            (
                "Sehr geehrte Damen und Herren, das Bild ist verzerrt.",
                Language::De,
            ),
            (
                "El avatar no se parece a mí y el estilo es equivocado.",
                Language::Es,
            ),
            ("Le résultat ne me ressemble pas du tout.", Language::Fr),
            ("ANUMI-ABCDEFGH-0001", Language::En),
            ("", Language::En),
            ("Danke", Language::En),
            (
                "Hi, ich bin Ann. The image is broken and I want it fixed.",
                Language::En,
            ),
        ];
        for (text, lang) in cases {
            assert_eq!(detect(&fold_text(text)), lang, "{text}");
        }
    }
}
