//! Extraction: order references, category + flags, evidence, language, sender auth.

pub mod config;
