//! Shared typed values of refundd: the vocabularies of POLICY.md, the ledger
//! facts, the facts extracted from one email, and the `Decision` the policy
//! engine returns.
//!
//! Every enum here serializes to exactly the snake_case strings POLICY.md
//! lists (they are contracts: JSON output, metrics, templates and tests use
//! them). Nothing here does I/O.

mod decision;
mod ledger;
mod message;
mod vocab;

pub use decision::{Action, CreditReason, Decision, ReplyFacts, ReplyKind, TraceStep};
pub use ledger::{
    Chargeback, ChargebackStatus, Generation, GenerationStatus, LedgerFacts, Order, OrderLookup,
    PendingRefund, Refund, Wallet, WalletCredit, WalletFacts, WalletStatus,
};
pub use message::{
    AuthResult, AuthSource, AutoKind, DkimCheck, Evidence, Language, MessageFacts, OrderRef,
    SenderAuth, Verification,
};
pub(crate) use vocab::vocabulary;
pub use vocab::{Category, Clause, Flag, Outcome, UnknownName};
