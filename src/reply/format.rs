//! How facts read in a reply: money in major units with its ISO code, dates
//! in the customer's language, and plain-text paragraphs as HTML.
//!
//! Takes minor units, times (in the zone they are to be read in) and
//! rendered plain text; gives strings. Pure, never fails: an unknown
//! currency is shown with two decimals.

use chrono::{DateTime, Datelike, TimeZone};

use crate::domain::Language;

/// Currencies whose minor unit is the major unit (no decimals), as Polar
/// (on Stripe) counts them.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Currencies with three decimals.
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// Minor units as `"9.00 EUR"`, `"1200 JPY"`, `"1.500 KWD"`: a point as the
/// decimal separator and the ISO code after, which reads the same in every
/// language we answer in. The code is upper-cased and stripped of anything
/// but letters.
pub fn format_money(minor: i64, currency: &str) -> String {
    let code: String = currency
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let decimals: u32 = if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    };
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs} {code}");
    }
    let unit = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$} {code}",
        abs / unit,
        abs % unit,
        width = decimals as usize
    )
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];
const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const MONTHS_ES: [&str; 12] = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
];
const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const WEEKDAYS_DE: [&str; 7] = [
    "Montag",
    "Dienstag",
    "Mittwoch",
    "Donnerstag",
    "Freitag",
    "Samstag",
    "Sonntag",
];
const WEEKDAYS_FR: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];
const WEEKDAYS_ES: [&str; 7] = [
    "lunes",
    "martes",
    "miércoles",
    "jueves",
    "viernes",
    "sábado",
    "domingo",
];

/// A date as the language writes it: `3 June 2026`, `3. Juni 2026`,
/// `3 juin 2026`, `3 de junio de 2026`; with `weekday`, prefixed by the
/// day's name (`Wednesday, 3 June 2026`, `mercredi 3 juin 2026`,
/// `miércoles 3 de junio de 2026`). The day is the one of `at`'s own zone:
/// convert to the zone the customer is told times in first
/// (`at.with_timezone(&zone)`), or 23:30 UTC reads as the wrong day in
/// Berlin.
pub fn format_date<Z: TimeZone>(at: DateTime<Z>, language: Language, weekday: bool) -> String {
    let (months, days) = match language {
        Language::En => (&MONTHS_EN, &WEEKDAYS_EN),
        Language::De => (&MONTHS_DE, &WEEKDAYS_DE),
        Language::Fr => (&MONTHS_FR, &WEEKDAYS_FR),
        Language::Es => (&MONTHS_ES, &WEEKDAYS_ES),
    };
    let day = at.day();
    let month = months[at.month0() as usize];
    let year = at.year();
    let date = match language {
        Language::En | Language::Fr => format!("{day} {month} {year}"),
        Language::De => format!("{day}. {month} {year}"),
        Language::Es => format!("{day} de {month} de {year}"),
    };
    if !weekday {
        return date;
    }
    let name = days[at.weekday().num_days_from_monday() as usize];
    match language {
        Language::Fr | Language::Es => format!("{name} {date}"),
        Language::En | Language::De => format!("{name}, {date}"),
    }
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// Plain text as HTML: blocks separated by blank lines become `<p>`, runs of
/// lines starting with `- ` become `<ul>` lists. Lines of a paragraph are
/// joined by a space (templates may wrap their source) or, with
/// `keep_lines`, by `<br>` (a reviewer's note keeps its line breaks).
/// Everything is escaped: the result is safe to embed.
pub(crate) fn paragraphs_html(text: &str, keep_lines: bool) -> String {
    let text = text.replace("\r\n", "\n");
    let mut html = String::new();
    for block in text.split("\n\n") {
        let mut lines: Vec<&str> = block.lines().map(str::trim).collect();
        lines.retain(|line| !line.is_empty());
        let mut paragraph: Vec<&str> = Vec::new();
        let mut items: Vec<&str> = Vec::new();
        for line in lines {
            if let Some(item) = line.strip_prefix("- ") {
                flush_paragraph(&mut html, &mut paragraph, keep_lines);
                items.push(item.trim());
            } else {
                flush_list(&mut html, &mut items);
                paragraph.push(line);
            }
        }
        flush_paragraph(&mut html, &mut paragraph, keep_lines);
        flush_list(&mut html, &mut items);
    }
    html
}

fn flush_paragraph(html: &mut String, lines: &mut Vec<&str>, keep_lines: bool) {
    if lines.is_empty() {
        return;
    }
    let joiner = if keep_lines { "<br>\n" } else { " " };
    let escaped: Vec<String> = lines.iter().map(|line| escape_html(line)).collect();
    html.push_str("<p>");
    html.push_str(&escaped.join(joiner));
    html.push_str("</p>\n");
    lines.clear();
}

fn flush_list(html: &mut String, items: &mut Vec<&str>) {
    if items.is_empty() {
        return;
    }
    html.push_str("<ul>\n");
    for item in items.iter() {
        html.push_str("<li>");
        html.push_str(&escape_html(item));
        html.push_str("</li>\n");
    }
    html.push_str("</ul>\n");
    items.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn money_is_shown_in_major_units_with_the_currency_code() {
        let cases = [
            (900, "EUR", "9.00 EUR"),
            (905, "eur", "9.05 EUR"),
            (5, "USD", "0.05 USD"),
            (0, "GBP", "0.00 GBP"),
            (123456, "USD", "1234.56 USD"),
            (1200, "JPY", "1200 JPY"),
            (1500, "KRW", "1500 KRW"),
            (1500, "KWD", "1.500 KWD"),
            (-250, "EUR", "-2.50 EUR"),
        ];
        for (minor, currency, expected) in cases {
            assert_eq!(
                format_money(minor, currency),
                expected,
                "{minor} {currency}"
            );
        }
    }

    #[test]
    fn dates_read_as_each_language_writes_them() {
        let at = Utc.with_ymd_and_hms(2026, 6, 3, 23, 59, 0).unwrap();
        let cases = [
            (Language::En, false, "3 June 2026"),
            (Language::De, false, "3. Juni 2026"),
            (Language::Fr, false, "3 juin 2026"),
            (Language::Es, false, "3 de junio de 2026"),
            (Language::En, true, "Wednesday, 3 June 2026"),
            (Language::De, true, "Mittwoch, 3. Juni 2026"),
            (Language::Fr, true, "mercredi 3 juin 2026"),
            (Language::Es, true, "miércoles 3 de junio de 2026"),
        ];
        for (language, weekday, expected) in cases {
            assert_eq!(format_date(at, language, weekday), expected);
        }
    }

    #[test]
    fn a_date_is_the_day_of_the_zone_it_is_read_in() {
        let at = Utc.with_ymd_and_hms(2026, 6, 3, 22, 30, 0).unwrap();
        let berlin = at.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(format_date(at, Language::De, false), "3. Juni 2026");
        assert_eq!(
            format_date(berlin, Language::De, true),
            "Donnerstag, 4. Juni 2026"
        );
    }

    #[test]
    fn text_becomes_escaped_paragraphs_and_lists() {
        let html = paragraphs_html(
            "Hello <b>\nworld & co\n\nPlease send:\n- the order ID\n- the image\n",
            false,
        );
        assert_eq!(
            html,
            "<p>Hello &lt;b&gt; world &amp; co</p>\n<p>Please send:</p>\n\
             <ul>\n<li>the order ID</li>\n<li>the image</li>\n</ul>\n"
        );
    }

    #[test]
    fn a_note_keeps_its_line_breaks() {
        assert_eq!(
            paragraphs_html("line one\r\nline \"two\"", true),
            "<p>line one<br>\nline &quot;two&quot;</p>\n"
        );
    }
}
