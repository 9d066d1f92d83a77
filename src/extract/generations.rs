//! Generation references: ids matched by the configured
//! `generation_id_pattern` and result links matched by the configured
//! `result_link_patterns` (each with a named group `id`), in order of
//! appearance without repeats. A result link also counts as evidence that
//! the result is linked (P3, P5).

use regex::Regex;

use super::ExtractError;

/// Finds generation ids and result links; built once from configuration.
#[derive(Debug, Clone)]
pub struct GenerationFinder {
    id: Regex,
    links: Vec<Regex>,
}

impl GenerationFinder {
    /// Compiles the configured patterns; every link pattern needs `(?P<id>…)`.
    pub fn new(id_pattern: &str, link_patterns: &[String]) -> Result<Self, ExtractError> {
        let id = Regex::new(id_pattern).map_err(|source| ExtractError::ConfigPattern {
            setting: "generation_id_pattern",
            pattern: id_pattern.to_owned(),
            source,
        })?;
        let links = link_patterns
            .iter()
            .map(|p| compile_link(p))
            .collect::<Result<_, _>>()?;
        Ok(GenerationFinder { id, links })
    }

    /// Generation ids named in `texts` (directly or through a result link).
    pub fn ids<'t>(&self, texts: impl IntoIterator<Item = &'t str>) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        for text in texts {
            let mut hits: Vec<(usize, &str)> = self
                .id
                .find_iter(text)
                .map(|m| (m.start(), m.as_str()))
                .collect();
            for link in &self.links {
                hits.extend(
                    link.captures_iter(text)
                        .filter_map(|c| c.name("id"))
                        .map(|m| (m.start(), m.as_str())),
                );
            }
            hits.sort_by_key(|(start, _)| *start);
            for (_, id) in hits {
                if !found.iter().any(|f| f == id) {
                    found.push(id.to_owned());
                }
            }
        }
        found
    }

    /// Whether any of `texts` holds a result link.
    pub fn has_result_link<'t>(&self, mut texts: impl Iterator<Item = &'t str>) -> bool {
        texts.any(|t| self.links.iter().any(|l| l.is_match(t)))
    }
}

fn compile_link(pattern: &str) -> Result<Regex, ExtractError> {
    let regex = Regex::new(pattern).map_err(|source| ExtractError::ConfigPattern {
        setting: "result_link_patterns",
        pattern: pattern.to_owned(),
        source,
    })?;
    if !regex.capture_names().flatten().any(|n| n == "id") {
        return Err(ExtractError::MissingIdGroup {
            pattern: pattern.to_owned(),
        });
    }
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::config::ExtractConfig;

    fn finder() -> GenerationFinder {
        let config = ExtractConfig::default();
        GenerationFinder::new(&config.generation_id_pattern, &config.result_link_patterns).unwrap()
    }

    #[test]
    fn ids_and_result_links_are_found_in_order() {
        let cases: Vec<(&str, Vec<&str>, bool)> = vec![
            ("the avatar gen_8f3k2 is broken", vec!["gen_8f3k2"], false),
            (
                "see https://anumi.app/r/gen_77 and gen_12",
                vec!["gen_77", "gen_12"],
                true,
            ),
            (
                "https://www.anumi.io/results/abc-DEF_1 then gen_x1",
                vec!["abc-DEF_1", "gen_x1"],
                true,
            ),
            (
                "gen_1 gen_1 https://anumi.app/avatars/gen_1",
                vec!["gen_1"],
                true,
            ),
            ("https://example.com/r/gen_9", vec!["gen_9"], false),
            ("regenerate generation gen_", vec![], false),
            ("nothing here", vec![], false),
        ];
        let finder = finder();
        for (text, ids, linked) in cases {
            assert_eq!(finder.ids([text]), ids, "{text}");
            assert_eq!(finder.has_result_link([text].into_iter()), linked, "{text}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_setting_named() {
        let err = GenerationFinder::new("gen_(", &[]).unwrap_err();
        assert!(err.to_string().contains("generation_id_pattern"), "{err}");
        let err = GenerationFinder::new("gen_", &["https://x/(?P<gen>\\w+)".into()]).unwrap_err();
        assert!(matches!(err, ExtractError::MissingIdGroup { .. }), "{err}");
        let err = GenerationFinder::new("gen_", &["https://x/(".into()]).unwrap_err();
        assert!(err.to_string().contains("result_link_patterns"), "{err}");
    }
}
