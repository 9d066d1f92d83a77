//! TODO
pub mod smtp;
