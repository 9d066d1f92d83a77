//! Polar: a typed HTTP client for the parts of Polar's API refundd uses, and
//! Standard Webhooks verification for Polar's webhooks.
//!
//! Takes: a base URL, an organization access token and the request values.
//! Gives: typed orders, customers, refunds and disputes ([`model`]), typed
//! errors ([`PolarError`]) and verified webhook events ([`webhook`]).
//! Never: decides whether to refund, retries a refund POST blindly, or logs
//! the token. Fails with [`PolarError`]; `is_transient()` says when a retry
//! can help, and [`PolarError::Unclear`] says "look the refund up before
//! posting again".

pub mod client;
pub mod error;
pub mod model;
pub mod webhook;

#[cfg(test)]
mod tests;

pub use client::{Backoff, PolarClient, PolarClientConfig};
pub use error::PolarError;
pub use model::{
    CreateRefund, Customer, Dispute, DisputeQuery, DisputeStatus, MetadataValue, Order,
    OrderCustomer, OrderStatus, Page, Pagination, Refund, RefundReason, RefundStatus,
};

/// Installs rustls' `ring` crypto provider as the process default.
///
/// reqwest is built with `rustls-no-provider`, so a provider must be
/// installed before the first client is built. Calling this more than once is
/// harmless: a provider already installed is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
