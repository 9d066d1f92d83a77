//! Folder names as the operator writes them and as the server wants them.
//! Takes a configured name (UTF-8, `/` between levels) and the hierarchy
//! delimiter the server reports (`LIST "" ""`, RFC 3501 §6.3.8); gives the
//! name to send, in modified UTF-7 (RFC 3501 §5.1.3). Pure, cannot fail.
//!
//! So `processed_folder = "Erledigt/Rückerstattungen"` works on a server
//! whose delimiter is `.` (Cyrus, Courier: `Erledigt.R&APw-ckerstattungen`)
//! as on one with `/` (Dovecot, Gmail, Microsoft 365).

/// The name to send for `configured`, on a server whose hierarchy
/// delimiter is `delimiter` (`None`: a flat server, names unchanged).
pub fn server_name(configured: &str, delimiter: Option<char>) -> String {
    let with_delimiter = match delimiter {
        Some(d) if d != '/' => configured.replace('/', &d.to_string()),
        _ => configured.to_owned(),
    };
    encode_utf7(&with_delimiter)
}

/// Modified UTF-7 (RFC 3501 §5.1.3): printable ASCII stands for itself
/// (`&` as `&-`); any other run of characters is UTF-16BE in base64 with
/// `,` for `/`, no padding, between `&` and `-`.
pub fn encode_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush_run(&mut out, &mut run);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let sextets = [
            b[0] >> 2,
            (b[0] & 3) << 4 | b[1] >> 4,
            (b[1] & 15) << 2 | b[2] >> 6,
            b[2] & 63,
        ];
        // 1 byte gives 2 characters, 2 give 3, 3 give 4 (no padding).
        for &s in &sextets[..chunk.len() + 1] {
            out.push(BASE64[usize::from(s)] as char);
        }
    }
    out.push('-');
    run.clear();
}

/// The UTF-8 text of a modified UTF-7 name, for messages to the operator;
/// a malformed name is returned as it came.
pub fn decode_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            return name.to_owned();
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut bytes = Vec::new();
            for c in encoded.bytes() {
                let Some(v) = BASE64.iter().position(|&b| b == c) else {
                    return name.to_owned();
                };
                bits = bits << 6 | v as u32;
                nbits += 6;
                if nbits >= 8 {
                    nbits -= 8;
                    bytes.push((bits >> nbits) as u8);
                }
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            match String::from_utf16(&units) {
                Ok(text) => out.push_str(&text),
                Err(_) => return name.to_owned(),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_rfc_3501_shows() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Processed", "Processed"),
            ("Tom & Jerry", "Tom &- Jerry"),
            // RFC 3501 §5.1.3's own example.
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Café", "Caf&AOk-"),
            ("Rückerstattungen", "R&APw-ckerstattungen"),
            ("📬", "&2D3c7A-"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode_utf7(utf8), utf7, "{utf8}");
            assert_eq!(decode_utf7(utf7), utf8, "{utf7}");
        }
    }

    #[test]
    fn the_configured_slash_becomes_the_servers_delimiter() {
        let cases = [
            (
                "Erledigt/Rückerstattungen",
                Some('.'),
                "Erledigt.R&APw-ckerstattungen",
            ),
            ("Archive/Processed", Some('/'), "Archive/Processed"),
            ("INBOX.Processed", Some('.'), "INBOX.Processed"),
            ("Archive/Processed", Some('\\'), "Archive\\Processed"),
            ("Archive/Processed", None, "Archive/Processed"),
        ];
        for (configured, delimiter, expected) in cases {
            assert_eq!(server_name(configured, delimiter), expected, "{configured}");
        }
    }
}
