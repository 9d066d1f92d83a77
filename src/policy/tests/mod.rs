//! The policy engine against POLICY.md: one table per clause family, each
//! row a case built from readable facts and the decision it must give, then
//! properties that must hold for any facts.

mod build;
mod precedence;
mod props;
mod rows;
