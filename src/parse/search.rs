//! What the search index knows of a message: the words of its sender (name
//! and address), subject and decoded body, folded so that a reviewer finds
//! `remboursé` by typing `rembourse` and `Müller` by typing `muller`.
//!
//! Takes raw bytes (or a reviewer's search terms); gives [`SearchWords`]
//! (the message's distinct words) and [`search_terms`] (the terms' words).
//! Both sides go through the one [`words`] function, so the index and a
//! query always agree on what a word is, whichever database holds the
//! index. The index never sees raw MIME: transfer encodings (base64,
//! quoted-printable), RFC 2047 words and charsets are decoded by
//! [`parse`](super::parse) first, and HTML-only mail is turned into text.
//!
//! A word is a run of letters and digits (Unicode), lowercased, with
//! combining marks removed after canonical decomposition (NFD). Words
//! longer than [`MAX_WORD_CHARS`] (base64 left in a body, long links) are
//! dropped. The index keeps each distinct word once and no order: it can
//! find a message, not rebuild its text. PURE; never fails (bytes that are
//! not mail are indexed as lossy text, so that they can still be found).

use std::collections::BTreeSet;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{MAX_TEXT_BYTES, parse};

/// Longest word indexed or searched for, in characters.
pub const MAX_WORD_CHARS: usize = 64;
/// Most words of a search that count (the rest are ignored).
pub const MAX_SEARCH_WORDS: usize = 8;

/// The distinct words of one message, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchWords(pub Vec<String>);

impl SearchWords {
    /// The words separated by spaces: the document both databases index.
    pub fn document(&self) -> String {
        self.0.join(" ")
    }

    /// Whether there is nothing to index.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The words of a stored message: sender (display name, address and the
/// address's parts), subject, and the decoded plain text (or the text of
/// the HTML part when there is no plain one).
pub fn message_words(raw: &[u8]) -> SearchWords {
    let mut set = BTreeSet::new();
    match parse(raw) {
        Ok(mail) => {
            if let Some(from) = &mail.from {
                collect(from.name.as_deref().unwrap_or_default(), &mut set);
                collect(&from.address, &mut set);
            }
            collect(&mail.subject, &mut set);
            collect(&mail.text, &mut set);
        }
        Err(_) => {
            let cut = &raw[..raw.len().min(MAX_TEXT_BYTES)];
            collect(&String::from_utf8_lossy(cut), &mut set);
        }
    }
    SearchWords(set.into_iter().collect())
}

/// The words of what a reviewer typed, in order, without repeats, at most
/// [`MAX_SEARCH_WORDS`].
pub fn search_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words(text) {
        if !out.contains(&word) {
            out.push(word);
        }
        if out.len() == MAX_SEARCH_WORDS {
            break;
        }
    }
    out
}

fn collect(text: &str, into: &mut BTreeSet<String>) {
    into.extend(words(text));
}

/// The words of `text`, folded (see the module docs).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .filter_map(|w| {
            let folded: String = w
                .nfd()
                .filter(|c| !is_combining_mark(*c))
                .flat_map(char::to_lowercase)
                .collect();
            let chars = folded.chars().count();
            (chars > 0 && chars <= MAX_WORD_CHARS).then_some(folded)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_letters_and_digits_lowercased_without_accents() {
        let got: Vec<String> =
            words("Rückerstattung für ANUMI-AB12-0001, s'il vous plaît: remboursé!").collect();
        assert_eq!(
            got,
            [
                "ruckerstattung",
                "fur",
                "anumi",
                "ab12",
                "0001",
                "s",
                "il",
                "vous",
                "plait",
                "rembourse"
            ]
        );
    }

    #[test]
    fn overlong_words_are_not_indexed() {
        let long = "A".repeat(MAX_WORD_CHARS + 1);
        assert_eq!(words(&format!("ok {long} fine")).count(), 2);
    }

    #[test]
    fn a_base64_body_is_indexed_as_its_decoded_words_and_the_sender_by_its_parts() {
        // "Ich möchte eine Rückerstattung." in base64, from a named sender.
        let raw = b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j.mueller@example.de>\r\n\
Subject: =?utf-8?q?Erstattung_f=C3=BCr_meine_Bestellung?=\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
SWNoIG3DtmNodGUgZWluZSBSw7xja2Vyc3RhdHR1bmcu\r\n";
        let got = message_words(raw);
        for want in [
            "jurgen",
            "muller",
            "j",
            "mueller",
            "example",
            "de",
            "erstattung",
            "bestellung",
            "mochte",
            "ruckerstattung",
        ] {
            assert!(got.0.iter().any(|w| w == want), "{want} in {:?}", got.0);
        }
        assert!(
            !got.0.iter().any(|w| w.starts_with("swnoig")),
            "{:?}",
            got.0
        );
    }

    #[test]
    fn search_terms_are_folded_deduplicated_and_capped() {
        assert_eq!(search_terms("Müller muller  R-12"), ["muller", "r", "12"]);
        assert_eq!(search_terms("a b c d e f g h i j").len(), MAX_SEARCH_WORDS);
        assert!(search_terms("%%% ---").is_empty());
    }

    #[test]
    fn bytes_that_are_not_mail_are_still_searchable() {
        assert_eq!(
            message_words(b"just some words").0,
            ["just", "some", "words"]
        );
    }
}
