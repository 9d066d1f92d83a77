//! Builders for facts, so each table row reads like the case it describes.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeSet;

use crate::domain::{
    Action, AutoKind, Category, Chargeback, ChargebackStatus, Clause, CreditReason, Decision,
    Evidence, Flag, Generation, GenerationStatus, Language, LedgerFacts, MessageFacts, Order,
    OrderLookup, Outcome, PendingRefund, Refund, ReplyKind, SenderAuth, Wallet, WalletCredit,
    WalletFacts, WalletStatus,
};
use crate::policy::{PolicyConfig, decide};

/// The wallet every case's sender owns unless told otherwise.
pub const WALLET: &str = "w_1";

/// An instant, RFC 3339.
pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

/// The purchase time of the first order in most rows.
pub fn bought() -> DateTime<Utc> {
    t("2026-06-01T10:00:00Z")
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

pub fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

/// `bought() + span`.
pub fn at(span: TimeDelta) -> DateTime<Utc> {
    bought() + span
}

/// An invoice number like Polar prints, derived from the order id.
pub fn invoice(order_id: &str) -> String {
    format!("ANUMI-{}-0001", order_id.to_uppercase())
}

/// One case: the email, the sender's wallet, the cited orders and the times.
#[derive(Debug, Clone)]
pub struct Case {
    pub msg: MessageFacts,
    pub wallet: Option<WalletFacts>,
    pub cited: Vec<OrderLookup>,
    pub received_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub config: PolicyConfig,
}

/// A verified email of `category` from the owner of an active, empty
/// wallet, received a day after `bought()` and processed an hour later.
pub fn case(category: Category) -> Case {
    let received_at = at(days(1));
    Case {
        msg: MessageFacts {
            message_id: Some("m1@example.com".into()),
            from: "ann@example.com".into(),
            from_name: Some("Ann".into()),
            subject: "refund".into(),
            received_at,
            language: Language::En,
            order_refs: Vec::new(),
            generation_refs: Vec::new(),
            evidence: Evidence::default(),
            category,
            flags: BTreeSet::new(),
            auth: SenderAuth {
                dmarc_pass: true,
                authserv_id: Some("mx.anumi.example".into()),
                dmarc_result: Some("pass".into()),
                used: Some(crate::domain::AuthSource::TrustedHeader),
                header: Some(crate::domain::AuthSource::TrustedHeader),
                header_dmarc: Some("pass".into()),
                ..SenderAuth::default()
            },
            auto: None,
        },
        wallet: Some(WalletFacts {
            wallet: Wallet {
                id: WALLET.into(),
                email: "ann@example.com".into(),
                status: WalletStatus::Active,
                created_at: t("2026-01-01T00:00:00Z"),
            },
            orders: Vec::new(),
            generations: Vec::new(),
            credits: Vec::new(),
            refunds: Vec::new(),
            chargebacks: Vec::new(),
            pending_refunds: Vec::new(),
        }),
        cited: Vec::new(),
        received_at,
        now: received_at + TimeDelta::hours(1),
        config: PolicyConfig::default(),
    }
}

impl Case {
    fn w(&mut self) -> &mut WalletFacts {
        self.wallet.as_mut().expect("the case has a wallet")
    }

    /// The sender's address matches no wallet.
    pub fn no_wallet(mut self) -> Self {
        self.wallet = None;
        self
    }

    pub fn status(mut self, status: WalletStatus) -> Self {
        self.w().wallet.status = status;
        self
    }

    /// An EUR order of the wallet with an invoice number.
    pub fn order(self, id: &str, credits: i64, amount: i64, bought_at: DateTime<Utc>) -> Self {
        self.order_in(id, credits, amount, "EUR", bought_at)
    }

    pub fn order_in(
        mut self,
        id: &str,
        credits: i64,
        amount: i64,
        currency: &str,
        bought_at: DateTime<Utc>,
    ) -> Self {
        self.w().orders.push(Order {
            id: id.into(),
            wallet_id: WALLET.into(),
            product: format!("Pack {credits}"),
            credits,
            amount,
            tax_amount: Some(amount / 5),
            currency: currency.into(),
            invoice_number: Some(invoice(id)),
            receipt_number: Some(format!("RCPT-{}-0001", id.to_uppercase())),
            created_at: bought_at,
        });
        self
    }

    /// Drops the invoice number (and with `receipt`, the receipt number) of an order.
    pub fn without_invoice(mut self, id: &str, receipt: bool) -> Self {
        let order = self
            .w()
            .orders
            .iter_mut()
            .find(|o| o.id == id)
            .expect("order");
        order.invoice_number = None;
        if receipt {
            order.receipt_number = None;
        }
        self
    }

    pub fn generation(
        mut self,
        id: &str,
        order: Option<&str>,
        credits: i64,
        status: GenerationStatus,
        refunded: bool,
        created_at: DateTime<Utc>,
    ) -> Self {
        self.w().generations.push(Generation {
            id: id.into(),
            wallet_id: WALLET.into(),
            order_id: order.map(Into::into),
            credits,
            status,
            style: Some("ghibli".into()),
            refunded,
            refunded_at: None,
            created_at,
        });
        self
    }

    /// A successful generation paid by `order`.
    pub fn used(self, id: &str, order: &str, credits: i64, created_at: DateTime<Utc>) -> Self {
        self.generation(
            id,
            Some(order),
            credits,
            GenerationStatus::Succeeded,
            false,
            created_at,
        )
    }

    pub fn failed(self, id: &str, credits: i64, refunded: bool, created_at: DateTime<Utc>) -> Self {
        self.generation(
            id,
            None,
            credits,
            GenerationStatus::Failed,
            refunded,
            created_at,
        )
    }

    /// The ledger says when generation `id`'s credits came back.
    pub fn refunded_at(mut self, id: &str, at: DateTime<Utc>) -> Self {
        let generation = self
            .w()
            .generations
            .iter_mut()
            .find(|g| g.id == id)
            .expect("generation");
        generation.refunded_at = Some(at);
        self
    }

    pub fn credit(
        mut self,
        id: &str,
        credits: i64,
        reason: CreditReason,
        generation: Option<&str>,
        created_at: DateTime<Utc>,
    ) -> Self {
        self.w().credits.push(WalletCredit {
            id: id.into(),
            wallet_id: WALLET.into(),
            credits,
            reason,
            generation_id: generation.map(Into::into),
            created_at,
        });
        self
    }

    pub fn refund(mut self, id: &str, order: &str, amount: i64, created_at: DateTime<Utc>) -> Self {
        self.w().refunds.push(Refund {
            id: id.into(),
            order_id: order.into(),
            amount,
            created_at,
        });
        self
    }

    /// A cash refund another case approved that the ledger does not show yet.
    pub fn pending_refund(
        mut self,
        case: i64,
        order: &str,
        amount: i64,
        approved_at: DateTime<Utc>,
    ) -> Self {
        self.w().pending_refunds.push(PendingRefund {
            case,
            order_id: order.into(),
            amount,
            approved_at,
        });
        self
    }

    pub fn chargeback(mut self, id: &str, order: &str, status: ChargebackStatus) -> Self {
        self.w().chargebacks.push(Chargeback {
            id: id.into(),
            order_id: order.into(),
            status,
            created_at: bought(),
        });
        self
    }

    /// The email cites one of the sender's orders by its invoice number.
    pub fn cites(mut self, order_id: &str) -> Self {
        self.cited.push(OrderLookup::Own {
            reference: invoice(order_id),
            order_id: order_id.into(),
        });
        self
    }

    pub fn cites_unknown(mut self, reference: &str) -> Self {
        self.cited.push(OrderLookup::Unknown {
            reference: reference.into(),
        });
        self
    }

    pub fn cites_other_wallets(mut self, reference: &str) -> Self {
        self.cited.push(OrderLookup::OtherWallet {
            reference: reference.into(),
        });
        self
    }

    /// Received at `when`, processed an hour later.
    pub fn received(mut self, when: DateTime<Utc>) -> Self {
        self.received_at = when;
        self.msg.received_at = when;
        self.now = when + TimeDelta::hours(1);
        self
    }

    pub fn processed(mut self, when: DateTime<Utc>) -> Self {
        self.now = when;
        self
    }

    /// The text carries this flag (`chargeback`, `statutory_rights`).
    pub fn says(mut self, flag: Flag) -> Self {
        self.msg.flags.insert(flag);
        self
    }

    pub fn names_generation(mut self, id: &str) -> Self {
        self.msg.generation_refs.push(id.into());
        self
    }

    /// The result is attached.
    pub fn attached(mut self) -> Self {
        self.msg.evidence.image_attachment = true;
        self
    }

    /// The result is linked.
    pub fn linked(mut self) -> Self {
        self.msg.evidence.result_link = true;
        self
    }

    /// No DMARC pass from a trusted authserv-id.
    pub fn unverified(mut self) -> Self {
        self.msg.auth = SenderAuth {
            dmarc_pass: false,
            authserv_id: Some("mx.anumi.example".into()),
            dmarc_result: Some("fail".into()),
            header: Some(crate::domain::AuthSource::TrustedHeader),
            header_dmarc: Some("fail".into()),
            ..SenderAuth::default()
        };
        self
    }

    pub fn auto(mut self, kind: AutoKind) -> Self {
        self.msg.auto = Some(kind);
        self
    }

    pub fn config(mut self, change: impl FnOnce(&mut PolicyConfig)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn ledger(&self) -> LedgerFacts {
        LedgerFacts {
            sender_wallet: self.wallet.clone(),
            cited_orders: self.cited.clone(),
        }
    }

    pub fn decide(&self) -> Decision {
        decide(
            &self.msg,
            &self.ledger(),
            &self.config,
            self.received_at,
            self.now,
        )
    }
}

/// What a row must decide.
#[derive(Debug, Clone)]
pub struct Expect {
    pub outcome: Outcome,
    pub reply: ReplyKind,
    pub clauses: Vec<Clause>,
    pub flags: Vec<Flag>,
    pub actions: Vec<Action>,
}

pub fn expect(outcome: Outcome, reply: ReplyKind, clauses: &[Clause]) -> Expect {
    Expect {
        outcome,
        reply,
        clauses: clauses.to_vec(),
        flags: Vec::new(),
        actions: Vec::new(),
    }
}

/// A `review` acknowledged to the customer.
pub fn review(clauses: &[Clause]) -> Expect {
    expect(Outcome::Review, ReplyKind::ReviewAcknowledged, clauses)
}

impl Expect {
    pub fn flags(mut self, flags: &[Flag]) -> Self {
        self.flags = flags.to_vec();
        self
    }

    pub fn action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }
}

/// A cash refund in EUR.
pub fn cash(order_id: &str, amount: i64) -> Action {
    Action::CashRefund {
        order_id: order_id.into(),
        amount,
        currency: "EUR".into(),
    }
}

/// A wallet credit to the case's wallet.
pub fn credit(credits: i64, reason: CreditReason, generation: &str) -> Action {
    Action::WalletCredit {
        wallet_id: WALLET.into(),
        credits,
        reason,
        generation_id: Some(generation.into()),
    }
}

/// Asserts every part of the expectation, naming the row on failure.
pub fn check(row: &str, d: &Decision, e: &Expect) {
    let context = || format!("row `{row}`; trace: {:#?}", d.trace);
    assert_eq!(d.outcome, e.outcome, "outcome, {}", context());
    assert_eq!(d.reply, e.reply, "reply, {}", context());
    assert_eq!(d.clauses(), e.clauses, "clauses, {}", context());
    let flags: BTreeSet<Flag> = e.flags.iter().copied().collect();
    assert_eq!(d.flags, flags, "flags, {}", context());
    assert_eq!(d.actions, e.actions, "actions, {}", context());
    assert!(
        !d.trace.is_empty() && d.trace.iter().all(|s| !s.finding.is_empty()),
        "every decision explains itself, {}",
        context()
    );
}

/// Runs a table.
pub fn run(table: Vec<(&str, Case, Expect)>) {
    assert!(!table.is_empty(), "a table with no rows proves nothing");
    for (row, case, expected) in table {
        check(row, &case.decide(), &expected);
    }
}
