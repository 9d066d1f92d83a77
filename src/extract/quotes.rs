//! The customer's new words: a message's text without quoted history,
//! attribution lines, forwarded or Outlook-style original messages, and
//! signatures. Intent and language are read from this only, so words in
//! our own earlier reply (quoted back to us) never drive a decision.
//!
//! Removed, line by line:
//! - quoted lines (`> …`, any depth; also HTML blockquotes, which
//!   `parse` renders as `> ` lines);
//! - attribution lines, also when wrapped onto a second line:
//!   `On … wrote:`, `Am … schrieb …:`, `Le … a écrit :`, `El … escribió:`;
//! - mobile signatures (`Sent from my iPhone`, `Von meinem … gesendet`,
//!   `Envoyé de mon …`, `Enviado desde mi …`, `Get Outlook for …`).
//!
//! Cut, with everything after them:
//! - `-----Original Message-----` and its de/fr/es forms, and forwarded
//!   message markers;
//! - an Outlook header block: a `From:`/`Von:`/`De :` line followed within
//!   four lines by `Sent:`/`Date:`/`Gesendet:`/`Datum:`/`Envoyé :`/
//!   `Enviado:`/`Fecha:` (or both on one line), and the `____` rule above it;
//! - the signature separator `-- ` (RFC 3676 §4.3), also without the space.

use std::sync::LazyLock;

use regex::Regex;

/// How many lines after a `From:` line an Outlook `Sent:` line may be.
const HEADER_BLOCK_REACH: usize = 4;

/// Longest line considered as an attribution (longer ones are prose).
const MAX_ATTRIBUTION_LEN: usize = 400;

static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:on\s.+\swrote|am\s.+\sschrieb.*|.+\sschrieb\s+am\s.+|le\s.+\sa\s+[ée]crit|el\s.+\sescribi[óo]|.+\s(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]))\s*:\s*$",
    )
    .expect("the attribution pattern is valid")
});

static ATTRIBUTION_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:on|am|le|el)\s").expect("the attribution start pattern is valid")
});

static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:-{2,}|_{2,})?\s*(?:original message|ursprüngliche nachricht|originalnachricht|message d'origine|message original|mensaje original|forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|begin forwarded message|anfang der weitergeleiteten nachricht)\s*:?\s*(?:-{2,}|_{2,})?\s*$",
    )
    .expect("the original message pattern is valid")
});

static HEADER_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*\*?(?:from|von|de|da)\s*\*?\s*:").expect("the from pattern is valid")
});

static HEADER_SENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*\*?(?:sent|date|gesendet|datum|envoy[ée]|enviado|fecha|inviato)\s*\*?\s*:")
        .expect("the sent pattern is valid")
});

static HEADER_ONE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?(?:from|von|de)\s*\*?\s*:.*\s\*?(?:sent|gesendet|envoy[ée]|enviado)\s*\*?\s*:",
    )
    .expect("the one-line header pattern is valid")
});

static RULE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*_{10,}\s*$").expect("the rule pattern is valid"));

static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:sent from my\s|von meinem\s.*gesendet|envoy[ée] de mon\s|enviado desde mi\s|get outlook for\s|sent from outlook|gesendet von outlook)",
    )
    .expect("the mobile signature pattern is valid")
});

/// The customer's new words in `text` (see the module doc).
pub fn fresh_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // Quoted lines are the bulk of long mails: skip them before any regex.
        if is_quoted(line) {
            i += 1;
            continue;
        }
        if starts_history(&lines, i) {
            break;
        }
        if let Some(skip) = attribution_len(&lines, i) {
            i += skip;
            continue;
        }
        if !MOBILE_SIGNATURE.is_match(line) {
            kept.push(line.trim_end());
        }
        i += 1;
    }
    join_paragraphs(&kept)
}

/// Whether `line` is quoted history.
fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Whether history (original message, Outlook header block, signature)
/// starts at line `i`: everything from here on is not the customer's.
fn starts_history(lines: &[&str], i: usize) -> bool {
    let line = lines[i];
    if line.trim_end() == "--" {
        return true;
    }
    // Every marker below has a `:`, `-` or `_`; most prose lines are spared.
    if !line.contains([':', '-', '_']) {
        return false;
    }
    if ORIGINAL_MESSAGE.is_match(line) {
        return true;
    }
    if RULE_LINE.is_match(line) {
        return lines
            .get(i + 1)
            .is_some_and(|next| HEADER_FROM.is_match(next));
    }
    HEADER_ONE_LINE.is_match(line) || (HEADER_FROM.is_match(line) && sent_line_follows(lines, i))
}

fn sent_line_follows(lines: &[&str], i: usize) -> bool {
    lines
        .iter()
        .skip(i + 1)
        .take(HEADER_BLOCK_REACH)
        .any(|l| HEADER_SENT.is_match(l))
}

/// How many lines an attribution at line `i` spans (1 or 2), if any.
fn attribution_len(lines: &[&str], i: usize) -> Option<usize> {
    let line = lines[i];
    let ends_with_colon = line.trim_end().ends_with(':');
    if ends_with_colon && line.len() <= MAX_ATTRIBUTION_LEN && ATTRIBUTION.is_match(line) {
        return Some(1);
    }
    if ends_with_colon
        || !lines
            .get(i + 1)
            .is_some_and(|n| n.trim_end().ends_with(':'))
    {
        return None;
    }
    let next = lines.get(i + 1)?;
    if !ATTRIBUTION_START.is_match(line) || line.len() + next.len() > MAX_ATTRIBUTION_LEN {
        return None;
    }
    let joined = format!("{} {}", line.trim_end(), next.trim_start());
    ATTRIBUTION.is_match(&joined).then_some(2)
}

/// Lines joined, blank runs collapsed to one blank line, trimmed.
fn join_paragraphs(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in lines {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_history_and_signatures_are_removed() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "plain text is kept",
                "Hello\nI want a refund.",
                "Hello\nI want a refund.",
            ),
            (
                "quoted lines go",
                "Refund please\n> We cannot refund\n>> chargeback\nThanks",
                "Refund please\nThanks",
            ),
            (
                "gmail attribution goes",
                "Here it is\n\nOn Mon, 1 Jun 2026 at 10:00, Anumi <refunds@anumi.app> wrote:\n> old",
                "Here it is",
            ),
            (
                "wrapped gmail attribution goes",
                "New\nOn Mon, Jun 1, 2026 at 10:00 AM Anumi Refunds <\nrefunds@anumi.app> wrote:\n> old",
                "New",
            ),
            (
                "german attribution goes",
                "Neu\nAm 01.06.2026 um 10:00 schrieb Anumi <refunds@anumi.app>:\n> alt",
                "Neu",
            ),
            (
                "french attribution goes",
                "Nouveau\nLe lun. 1 juin 2026 à 10:00, Anumi <refunds@anumi.app> a écrit :\n> ancien",
                "Nouveau",
            ),
            (
                "spanish attribution goes",
                "Nuevo\nEl lun, 1 jun 2026 a las 10:00, Anumi (<refunds@anumi.app>) escribió:\n> viejo",
                "Nuevo",
            ),
            (
                "outlook original message cuts the rest",
                "Top\n-----Original Message-----\nFrom: x\nplease refund",
                "Top",
            ),
            (
                "german original message cuts the rest",
                "Oben\n-----Ursprüngliche Nachricht-----\nVon: x",
                "Oben",
            ),
            (
                "outlook header block cuts the rest",
                "My words\n\n________________________________\nFrom: Anumi Refunds <refunds@anumi.app>\nSent: Monday, June 1, 2026 10:00\nTo: me\nSubject: Re\n\nWe cannot refund chargeback",
                "My words",
            ),
            (
                "french outlook header block cuts the rest",
                "Mes mots\nDe : Anumi <refunds@anumi.app>\nEnvoyé : lundi 1 juin 2026\nÀ : moi\nremboursement",
                "Mes mots",
            ),
            (
                "one-line outlook header cuts the rest",
                "Mine\nFrom: Anumi Sent: Monday To: me Subject: x\nold",
                "Mine",
            ),
            (
                "forwarded receipts are not the customer's words",
                "See below\n---------- Forwarded message ---------\nFrom: Polar\nrefund policy",
                "See below",
            ),
            (
                "signature separator cuts the rest",
                "Refund\n-- \nAnn\nChargeback Corp",
                "Refund",
            ),
            (
                "mobile signatures go",
                "Refund\n\nSent from my iPhone",
                "Refund",
            ),
            (
                "german mobile signature goes",
                "Geld zurück\nVon meinem iPhone gesendet",
                "Geld zurück",
            ),
            (
                "inline replies keep every new paragraph",
                "> Which order?\nANUMI-0001\n\n> Which style?\nGhibli",
                "ANUMI-0001\n\nGhibli",
            ),
            (
                "a from line in prose is kept",
                "From: my side, the image failed.\nThanks",
                "From: my side, the image failed.\nThanks",
            ),
            ("blank runs collapse", "a\n\n\n\nb", "a\n\nb"),
        ];
        for (name, text, fresh) in cases {
            assert_eq!(fresh_text(text), *fresh, "{name}");
        }
    }
}
