//! Folding text for matching: the same customer words match whatever the
//! client did to them. Intent rules and stopword lists are matched on
//! folded text, and rule patterns are folded the same way, so rule authors
//! write natural spellings (`Rückerstattung`, `réponse`, `devolución`).
//!
//! - Letters are lowercased; German umlauts become `ae`/`oe`/`ue` and `ß`
//!   `ss` (what Germans type without umlaut keys), other Latin accents
//!   are dropped (`é` -> `e`, `ñ` -> `n`), `œ`/`æ` become `oe`/`ae`.
//! - Typographic apostrophes and quotes become `'` and `"`, dashes `-`.
//! - Every run of whitespace (line breaks, tabs, NBSP) becomes one space;
//!   zero-width characters vanish.
//!
//! Other characters (emoji, CJK, Cyrillic) are kept as they are.

/// `text` folded for matching (see the module doc).
pub fn fold_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        push_folded(&mut out, c, true);
    }
    out
}

/// A rule pattern folded like text, but only outside ASCII: regex syntax
/// (`\W`, `\S`, `\B`) is ASCII and keeps its case and meaning.
pub fn fold_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if c.is_ascii() {
            out.push(c);
        } else if !is_invisible(c) {
            push_folded(&mut out, c, false);
        }
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}'
    )
}

fn push_folded(out: &mut String, c: char, lowercase_ascii: bool) {
    if c.is_ascii() {
        out.push(if lowercase_ascii {
            c.to_ascii_lowercase()
        } else {
            c
        });
        return;
    }
    for lower in c.to_lowercase() {
        match fold_char(lower) {
            Some(folded) => out.push_str(folded),
            None => out.push(lower),
        }
    }
}

fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'ä' => "ae",
        'ö' => "oe",
        'ü' => "ue",
        'ß' => "ss",
        'à' | 'á' | 'â' | 'ã' | 'å' | 'ā' => "a",
        'æ' => "ae",
        'ç' | 'č' | 'ć' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'ñ' | 'ń' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'ō' => "o",
        'œ' => "oe",
        'ù' | 'ú' | 'û' | 'ū' | 'ů' => "u",
        'ý' | 'ÿ' => "y",
        'š' | 'ś' => "s",
        'ž' | 'ź' | 'ż' => "z",
        '’' | '‘' | '‛' | 'ʼ' | '´' | '`' | '′' => "'",
        '“' | '”' | '„' | '«' | '»' | '″' => "\"",
        '–' | '—' | '‐' | '‑' | '−' => "-",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_folds_to_plain_lowercase_with_single_spaces() {
        let cases = [
            ("Rückerstattung für Grüße", "rueckerstattung fuer gruesse"),
            ("RÉPONSE  automatique\r\n", "reponse automatique"),
            ("Devolución, señor", "devolucion, senor"),
            ("I don’t\u{a0}like it", "i don't like it"),
            ("« œuvre » — fin", "\" oeuvre \" - fin"),
            ("  lead\tand\n\ntrail  ", "lead and trail"),
            ("zero\u{200b}width", "zerowidth"),
            ("ÄÖÜ", "aeoeue"),
            ("emoji 😀 stays", "emoji 😀 stays"),
        ];
        for (text, folded) in cases {
            assert_eq!(fold_text(text), folded, "{text}");
        }
    }

    #[test]
    fn patterns_fold_letters_but_keep_regex_syntax() {
        assert_eq!(
            fold_pattern(r"Rückerstattung\W+\S"),
            r"Rückerstattung\W+\S".replace('ü', "ue")
        );
        assert_eq!(fold_pattern("échoué"), "echoue");
        assert_eq!(fold_pattern("ne m’aime"), "ne m'aime");
    }
}
