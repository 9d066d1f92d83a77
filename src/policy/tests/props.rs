//! Properties over generated facts.
