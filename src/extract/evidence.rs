//! Evidence for a courtesy request (P3, P5): is the result attached (an
//! image attachment: `image/*`, or an image file extension since clients
//! send photos as `application/octet-stream`) or linked (a result link in
//! the customer's own words; see `generations`)?
//!
//! An inline image (e.g. a signature logo) counts as attached: the MIME
//! structure cannot tell a pasted screenshot from a logo, and the reviewer
//! console shows both.

use crate::domain::Evidence;
use crate::parse::Attachment;

/// The evidence carried by `attachments` and a found result link.
pub fn evidence(attachments: &[Attachment], result_link: bool) -> Evidence {
    Evidence {
        image_attachment: attachments.iter().any(|a| a.is_image() && a.size > 0),
        result_link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(name: Option<&str>, content_type: &str, size: usize) -> Attachment {
        Attachment {
            name: name.map(str::to_owned),
            content_type: content_type.into(),
            size,
        }
    }

    #[test]
    fn images_count_as_attached_results_and_other_files_do_not() {
        let cases = [
            (vec![], false),
            (vec![attachment(Some("a.png"), "image/png", 2048)], true),
            (vec![attachment(None, "image/jpeg", 10)], true),
            (
                vec![attachment(
                    Some("IMG_1.HEIC"),
                    "application/octet-stream",
                    10,
                )],
                true,
            ),
            (
                vec![attachment(Some("receipt.pdf"), "application/pdf", 10)],
                false,
            ),
            (vec![attachment(Some("empty.png"), "image/png", 0)], false),
        ];
        for (attachments, expected) in cases {
            assert_eq!(
                evidence(&attachments, false).image_attachment,
                expected,
                "{attachments:?}"
            );
            assert!(evidence(&attachments, true).present());
        }
    }
}
